// `copse train --transport mpi --staleness S` under mpirun on loopback (3
// ranks, more than the cores): it trains to about BSP's accuracy, the
// metrics carry the bound as the shards measured it, a rank that stops or
// dies ends the job in bounded time naming it, and bad SSP options are
// one-line errors (exit 2, nothing written), the staleness checked across
// ranks at start-up.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"

namespace fs = std::filesystem;

namespace {

const std::string kCopse = std::string(COPSE_BINARY_DIR) + "/copse";
const std::string kEnv =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 ";
const std::string kBase =
    "train --batch 32 --optimizer adagrad --seed 1 --epochs 2 --embed 16 --hidden 16 --threads 1 "
    "--quiet";
const std::string kRun = kBase + " --transport mpi";

struct Result {
  int status = -1;
  double seconds = 0;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result shell(const std::string& cmd, const fs::path& dir) {
  const fs::path e = dir / "stderr.txt";
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system((cmd + " > /dev/null 2> " + e.string()).c_str());
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.err = slurp(e);
  return r;
}

std::string stdout_of(const std::string& cmd) {
  std::string text;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
    ::pclose(p);
  }
  return text;
}

std::string mpirun(int ranks, const std::string& env = "") {
  return fmt::format("{} {} {} --oversubscribe --bind-to none {} {} {}", kEnv, env, COPSE_MPIEXEC,
                     COPSE_MPIEXEC_NUMPROC_FLAG, ranks, kCopse);
}

nlohmann::json last_metrics(const std::string& out) {
  std::ifstream in(out + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

class MpiSspTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / fmt::format("copse_mpi_ssp_train_{}", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(MpiSspTrain, TrainsNearBspAndReportsTheMeasuredBound) {
  Result bsp = shell(mpirun(3) + " " + kRun + " --out " + out("bsp"), dir_);
  ASSERT_EQ(bsp.status, 0) << bsp.err;
  for (int s : {0, 2}) {
    const std::string o = out(fmt::format("ssp{}", s));
    Result r = shell(fmt::format("{} {} --staleness {} --out {}", mpirun(3), kRun, s, o), dir_);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto m = last_metrics(o), b = last_metrics(out("bsp"));
    EXPECT_GE(m["test_fine"].get<double>(), b["test_fine"].get<double>() - 0.08) << "s=" << s;
    EXPECT_EQ(m["staleness"].get<int>(), s);
    EXPECT_EQ(m["ssp_violations"].get<long>(), 0);
    EXPECT_LE(m["ssp_max_lead"].get<long>(), s);
    long reads = 0;
    for (auto& [d, n] : m["ssp_staleness_histogram"].items()) {
      EXPECT_LE(std::stol(d), s);
      reads += n.get<long>();
    }
    EXPECT_EQ(reads, 3 * 2 * m["steps"].get<long>());  // every clock of every rank, 2 epochs
    ASSERT_EQ(m["ssp_wait_s"].size(), 3u);
    EXPECT_GT(m["ssp_bytes_pushed_per_clock"].get<double>(), 0);
    EXPECT_GT(m["ssp_bytes_pulled_per_clock"].get<double>(), 0);
    // The ranks share the evaluation (each its part of the test trees, the
    // counts summed): the best-dev epoch's test accuracy is what `copse
    // eval` gives the saved model on the same trees (the default data is
    // `copse synth --seed 1`), to a tree of rounding.
    const std::string synth = out("default_data");
    if (!fs::exists(synth)) {
      ASSERT_EQ(shell(kCopse + " synth --seed 1 --out " + synth, dir_).status, 0);
    }
    const nlohmann::json ev = nlohmann::json::parse(
        stdout_of(kCopse + " eval --model " + o + "/model.safetensors --data " + synth + "/test.txt"));
    nlohmann::json best;
    std::ifstream lines(o + "/metrics.jsonl");
    for (std::string l; std::getline(lines, l);) {
      const auto j = nlohmann::json::parse(l);
      if (best.is_null() || j["dev_fine"].get<double>() > best["dev_fine"].get<double>()) best = j;
    }
    const double trees = ev["trees"].get<double>();
    ASSERT_GT(trees, 0);
    EXPECT_NEAR(best["test_fine"].get<double>(), ev["fine"].get<double>(), 1.01 / trees) << "s=" << s;
  }
}

// Rank 1 stops answering at clock 5: the others fail within the timeout
// naming it. Rank 2 dies in epoch 2: the job ends, the checkpoint of epoch 1
// (a state every shard reached) stays and resumes under mpirun.
TEST_F(MpiSspTrain, SilentOrDeadRankEndsTheJobInBoundedTime) {
  Result hung = shell(fmt::format("{} {} --staleness 1 --sync-timeout 2 --out {}",
                                  mpirun(3, "COPSE_TEST_FAULT=hang:1:5"), kRun, out("hung")),
                      dir_);
  EXPECT_NE(hung.status, 0);
  EXPECT_LT(hung.seconds, 60.0);
  EXPECT_NE(hung.err.find("copse: error: rank "), std::string::npos) << hung.err;
  EXPECT_NE(hung.err.find("rank(s) 1"), std::string::npos) << hung.err;
  Result killed = shell(fmt::format("{} {} --staleness 1 --sync-timeout 5 --out {}",
                                    mpirun(3, "COPSE_TEST_FAULT=kill:2:150"), kRun, out("killed")),
                        dir_);
  EXPECT_NE(killed.status, 0);
  EXPECT_LT(killed.seconds, 60.0);
  EXPECT_NE(killed.err.find("test fault: worker 2, step 150: kill"), std::string::npos)
      << killed.err;
  const auto first = last_metrics(out("killed"));
  EXPECT_EQ(first["epoch"].get<int>(), 1);
  const long per_epoch = first["steps"].get<long>();
  ASSERT_LT(per_epoch, 150);
  EXPECT_EQ(copse::models::load_checkpoint(out("killed") + "/checkpoint.safetensors").step,
            per_epoch);
  Result resumed = shell(mpirun(3) + " train --quiet --transport mpi --resume " + out("killed"), dir_);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const auto last = last_metrics(out("killed"));
  EXPECT_EQ(last["epoch"].get<int>(), 2);
  EXPECT_EQ(last["staleness"].get<int>(), 1);
  EXPECT_EQ(last["ssp_violations"].get<long>(), 0);
}

// --checkpoint-every under MPI SSP: each checkpoint is taken after every
// rank's pushes up to its clock reached every shard and the shards were
// collected. Three ranks at staleness 0 with batches of one tree (two empty
// shares per clock) walk the one-rank trajectory under SGD; a job whose rank
// 0 dies at clock 200 (of 2 x 150) resumes from step 160 under mpirun and
// ends with the one-rank run's parameters.
TEST_F(MpiSspTrain, MidEpochCheckpointsResumeToTheOneRankParameters) {
  const std::string data = out("synth");
  ASSERT_EQ(shell(kCopse + " synth --out " + data + " --train 150 --dev 20 --test 20 --seed 4", dir_)
                .status,
            0);
  const std::string run = " train --data " + data +
                          " --batch 1 --optimizer sgd --lr 0.05 --l2 0 --seed 2 --epochs 2 --embed 8 "
                          "--hidden 8 --threads 1 --quiet --transport mpi --checkpoint-every 40";
  Result one = shell(mpirun(1) + run + " --out " + out("one"), dir_);
  ASSERT_EQ(one.status, 0) << one.err;
  Result killed =
      shell(mpirun(3, "COPSE_TEST_FAULT=kill:0:200") + run + " --staleness 0 --sync-timeout 5 --out " +
                out("ssp"),
            dir_);
  EXPECT_NE(killed.status, 0);
  EXPECT_NE(killed.err.find("test fault: worker 0"), std::string::npos) << killed.err;
  const auto mid = copse::models::load_checkpoint(out("ssp") + "/checkpoint.safetensors");
  EXPECT_EQ(mid.epoch, 2);
  EXPECT_EQ(mid.step, 160);
  EXPECT_EQ(mid.next, 10);
  Result resumed = shell(mpirun(3) + " train --quiet --transport mpi --resume " + out("ssp"), dir_);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const auto x = copse::models::load_checkpoint(out("one") + "/checkpoint.safetensors").params;
  const auto y = copse::models::load_checkpoint(out("ssp") + "/checkpoint.safetensors").params;
  ASSERT_EQ(x.size(), y.size());
  double moved = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(x[i], y[i], 1e-6) << i;
    moved = std::max(moved, std::abs(double(y[i]) - mid.params[i]));
  }
  EXPECT_GT(moved, 1e-3);  // the resumed part trained
}

TEST_F(MpiSspTrain, BadStalenessIsAOneLineErrorAndWritesNothing) {
  // One line of copse's (mpirun adds its own report of the exit).
  auto one_line = [](const std::string& err) {
    std::istringstream in(err);
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("copse") != std::string::npos;
    return n == 1 && err.find("copse: error: ") != std::string::npos;
  };
  Result neg = shell(fmt::format("{} {} --staleness -2 --out {}", mpirun(1), kRun, out("neg")), dir_);
  EXPECT_EQ(neg.status, 2);
  EXPECT_NE(neg.err.find("copse: error: --staleness must be >= 0"), std::string::npos) << neg.err;
  EXPECT_TRUE(one_line(neg.err)) << neg.err;
  Result nccl = shell(fmt::format("{} {} --staleness 1 --out {} --transport nccl", mpirun(1), kBase,
                                  out("nccl")),
                      dir_);
  EXPECT_EQ(nccl.status, 2);
  EXPECT_TRUE(one_line(nccl.err)) << nccl.err;
  EXPECT_NE(nccl.err.find("nccl is bulk-synchronous"), std::string::npos) << nccl.err;
  // Two ranks with different bounds (an MPMD launch).
  Result differ = shell(fmt::format("{} {} --oversubscribe --bind-to none {} 1 {} {} --staleness 1 "
                                    "--out {} : {} 1 {} {} --staleness 2 --out {}",
                                    kEnv, COPSE_MPIEXEC, COPSE_MPIEXEC_NUMPROC_FLAG, kCopse, kRun,
                                    out("differ"), COPSE_MPIEXEC_NUMPROC_FLAG, kCopse, kRun,
                                    out("differ")),
                        dir_);
  EXPECT_EQ(differ.status, 2);
  EXPECT_NE(differ.err.find("copse: error: --staleness differs across ranks"), std::string::npos)
      << differ.err;
  // More shards (ranks) than an embedding table has rows: a vocabulary of 3.
  const fs::path tiny = dir_ / "tiny";
  fs::create_directories(tiny);
  for (const char* f : {"train.txt", "dev.txt", "test.txt"}) std::ofstream(tiny / f) << "(2 a)\n(3 b)\n";
  Result rows = shell(fmt::format("{} train --data {} --embed 4 --hidden 4 --epochs 1 --transport mpi "
                                  "--staleness 1 --quiet --out {}",
                                  mpirun(4), tiny.string(), out("rows")),
                      dir_);
  EXPECT_EQ(rows.status, 2);
  EXPECT_NE(rows.err.find("copse: error: SSP: 4 shards but embedding table 'embed' has only 3 rows"),
            std::string::npos)
      << rows.err;
  for (const char* d : {"neg", "nccl", "differ", "rows"}) EXPECT_FALSE(fs::exists(out(d))) << d;
}

}  // namespace
