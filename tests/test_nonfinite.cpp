// A non-finite update is never written (issue: non-finite updates): for SGD,
// Adagrad and Adam, with one worker and two threads, an update that
// overflows stops the run with the last good checkpoint intact, or is undone
// exactly with --skip-nonfinite; a run that cannot recover stops as diverged
// after --max-skipped batches in a row. The overflow comes from the
// COPSE_TEST_FAULT hook, so no test depends on the CPU's rounding.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "memory/safetensors.h"
#include "tests/nonfinite_checks.h"

namespace fs = std::filesystem;
using copse::testing::RunResult;

namespace {

const std::string kCopse = std::string(COPSE_BINARY_DIR) + "/copse";

RunResult run_copse(const std::string& args, const std::string& env, const fs::path& dir) {
  fs::path e = dir / "stderr.txt";
  const std::string cmd = fmt::format("{} {} {} > /dev/null 2> {}", env.empty() ? "" : "env " + env,
                                      kCopse, args, e.string());
  int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream in(e);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  return r;
}

class NonFinite : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           fmt::format("copse_nonfinite_{}_{}",
                       ::testing::UnitTest::GetInstance()->current_test_info()->name(), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  copse::testing::Launch launch() {
    return [this](const std::string& args, const std::string& env) {
      return run_copse(args, env, dir_);
    };
  }
  static std::string flags(const copse::testing::OptimizerCase& c, int workers) {
    return fmt::format(
        "train --epochs 1 --embed 8 --hidden 8 --batch 25 --seed 5 --threads 1 --clip 0 --quiet "
        "--checkpoint-every 1 --optimizer {} --lr {} --workers {}",
        c.name, c.lr, workers);
  }
  fs::path sub(const std::string& name) {
    fs::path p = dir_ / name;
    fs::create_directories(p);
    return p;
  }
  fs::path dir_;
};

TEST_F(NonFinite, OverflowingUpdateStopsAndKeepsTheLastGoodCheckpoint) {
  for (const auto& c : copse::testing::kOptimizerCases)
    for (int workers : {1, 2}) {
      SCOPED_TRACE(fmt::format("{}, {} worker(s)", c.name, workers));
      copse::testing::check_nonfinite_stop(launch(), flags(c, workers), workers - 1,
                                           sub(fmt::format("{}{}", c.name, workers)));
    }
}

TEST_F(NonFinite, OverflowingUpdateIsSkippedExactly) {
  for (const auto& c : copse::testing::kOptimizerCases)
    for (int workers : {1, 2}) {
      SCOPED_TRACE(fmt::format("{}, {} worker(s)", c.name, workers));
      copse::testing::check_nonfinite_skip(launch(), flags(c, workers), workers - 1,
                                           sub(fmt::format("{}{}", c.name, workers)));
    }
}

// SSP (2 workers, staleness 1): the master never applies an update that
// overflows. Without --skip-nonfinite every worker stops, naming the worker
// and its clock, and the checkpoint of epoch 1 stays as it was; with it the
// push is skipped and counted.
TEST_F(NonFinite, SspServerStopsOrSkipsAnOverflowingPush) {
  for (const auto& c : copse::testing::kOptimizerCases) {
    SCOPED_TRACE(c.name);
    const std::string f = fmt::format(
        "train --epochs 2 --embed 8 --hidden 8 --batch 25 --seed 5 --threads 1 --clip 0 --quiet "
        "--optimizer {} --lr {} --workers 2 --staleness 1",
        c.name, c.lr);
    const fs::path stop = dir_ / c.name / "stop", skip = dir_ / c.name / "skip";
    // The synthetic treebank's 4,000 trees make 160 clocks an epoch.
    RunResult r = run_copse(f + " --out " + stop.string(), "COPSE_TEST_FAULT=overflow:1:170", dir_);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("SSP: worker 1 at clock 170: non-finite parameters after the update ("),
              std::string::npos)
        << r.err;
    const auto st = copse::testing::checkpoint_of(stop);
    EXPECT_EQ(st.epoch, 2);
    EXPECT_EQ(st.next, 0);
    EXPECT_TRUE(copse::testing::all_finite(st));
    r = run_copse(f + " --skip-nonfinite --out " + skip.string(),
                  "COPSE_TEST_FAULT=overflow:1:170", dir_);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("epoch 2: 1 push skipped"), std::string::npos) << r.err;
    const auto sk = copse::testing::checkpoint_of(skip);
    EXPECT_EQ(sk.skipped, 1);
    EXPECT_TRUE(copse::testing::all_finite(sk));
  }
}

// Every update from step 2 on overflows: the run skips --max-skipped batches
// in a row, warning only a few times, then stops as diverged; nothing it
// wrote holds a non-finite value.
TEST_F(NonFinite, RunThatCannotRecoverStopsAsDiverged) {
  const fs::path out = dir_ / "out";
  RunResult r = run_copse(
      flags({"adam", "0.01"}, 1) + " --skip-nonfinite --max-skipped 7 --out " + out.string(),
      "COPSE_TEST_FAULT=overflow-always:0:2", dir_);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("copse: error: training diverged: 7 batches in a row were skipped"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("last good checkpoint: " + (out / "checkpoint.safetensors").string()),
            std::string::npos)
      << r.err;
  int warnings = 0;
  for (size_t at = r.err.find("copse: warning:"); at != std::string::npos;
       at = r.err.find("copse: warning:", at + 1))
    ++warnings;
  EXPECT_LE(warnings, 3) << r.err;
  EXPECT_GE(warnings, 1) << r.err;
  const auto st = copse::testing::checkpoint_of(out);
  EXPECT_EQ(st.step, 1);
  EXPECT_TRUE(copse::testing::all_finite(st));
}

// Without the hook: a learning rate of 1e30 (SGD, Adam) makes training fail
// one way or another (non-finite loss, gradient or update: which one comes
// first depends on the CPU's kernels), but no non-finite value is written.
TEST_F(NonFinite, HugeLearningRateNeverPersistsNonFiniteValues) {
  for (const char* opt : {"sgd", "adam"})
    for (bool skip : {false, true}) {
      SCOPED_TRACE(fmt::format("{}{}", opt, skip ? ", skip" : ""));
      const fs::path out = dir_ / fmt::format("{}{}", opt, skip);
      RunResult r =
          run_copse(fmt::format("train --epochs 1 --embed 8 --hidden 8 --optimizer {} --lr 1e30 "
                                "--checkpoint-every 1 --quiet {} --out {}",
                                opt, skip ? "--skip-nonfinite" : "", out.string()),
                    "", dir_);
      if (!skip) {
        EXPECT_EQ(r.status, 2) << r.err;
      }
      if (r.status != 0) {
        EXPECT_NE(r.err.find("non-finite"), std::string::npos) << r.err;
      }
      if (fs::exists(out / "checkpoint.safetensors")) {
        EXPECT_TRUE(copse::testing::all_finite(copse::testing::checkpoint_of(out)));
      }
      if (fs::exists(out / "model.safetensors")) {
        for (const auto& t : copse::memory::load_safetensors((out / "model.safetensors").string()))
          for (float v : t.data) ASSERT_TRUE(std::isfinite(v)) << t.name;
      }
    }
}

}  // namespace
