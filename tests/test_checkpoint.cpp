// Crash-safe training: SIGKILL at random moments then --resume ends with
// bit-identical parameters; corrupt or truncated checkpoints are refused; a
// full disk keeps the previous checkpoint (non-finite values: test_nonfinite.cpp).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "models/checkpoint.h"
#include "tests/sick_fixture.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kCopse = std::string(COPSE_BINARY_DIR) + "/copse";

// Runs copse with `args` through the shell; returns the exit status, stderr in *err.
int run(const std::string& args, const fs::path& dir, std::string* err = nullptr,
        const std::string& prefix = "") {
  fs::path e = dir / "stderr.txt";
  std::string cmd = prefix + kCopse + " " + args + " > /dev/null 2> " + e.string();
  int rc = std::system(cmd.c_str());
  if (err) *err = slurp(e);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Starts copse, kills it with SIGKILL after `ms` milliseconds (if still running).
void run_and_kill(const std::vector<std::string>& args, int ms) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(kCopse.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execv(kCopse.c_str(), argv.data());
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

std::vector<float> final_params(const fs::path& out) {
  return copse::models::load_checkpoint((out / "checkpoint.safetensors").string()).params;
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("copse_ckpt_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

const std::vector<std::string> kTrain = {"train",  "--epochs", "3",      "--embed", "16",
                                         "--hidden", "16",     "--batch", "25",    "--seed",
                                         "9",      "--threads", "1",     "--checkpoint-every",
                                         "13",     "--quiet"};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += a + " ";
  return s;
}

// Kills runs with `extra` flags at random moments (up to three times each,
// resuming in between) and checks the final and best parameters against an
// uninterrupted run, bit for bit.
void check_kill_and_resume(const fs::path& dir, const std::vector<std::string>& extra,
                           unsigned seed) {
  std::vector<std::string> train = kTrain;
  train.insert(train.end(), extra.begin(), extra.end());
  fs::path ref = dir / "ref";
  ASSERT_EQ(run(join(train) + "--out " + ref.string(), dir), 0);
  const std::string ref_model = slurp(ref / "model.safetensors");
  const std::vector<float> ref_params = final_params(ref);
  ASSERT_FALSE(ref_model.empty());

  std::mt19937 rng(seed);
  for (int trial = 0; trial < 3; ++trial) {
    fs::path out = dir / ("run" + std::to_string(trial));
    auto args = train;
    args.push_back("--out");
    args.push_back(out.string());
    int kills = 0;
    for (int k = 0; k < 3; ++k) {
      int ms = std::uniform_int_distribution<int>(50, 900)(rng);
      if (fs::exists(out / "checkpoint.safetensors"))
        run_and_kill({"train", "--resume", out.string(), "--quiet"}, ms);
      else
        run_and_kill(args, ms);
      ++kills;
    }
    std::string err;
    int rc = fs::exists(out / "checkpoint.safetensors")
                 ? run("train --resume " + out.string() + " --quiet", dir, &err)
                 : run(join(args), dir, &err);
    ASSERT_EQ(rc, 0) << err;
    EXPECT_TRUE(slurp(out / "model.safetensors") == ref_model)
        << "trial " << trial << " after " << kills << " kills: best model differs";
    std::vector<float> p = final_params(out);
    ASSERT_EQ(p.size(), ref_params.size());
    EXPECT_EQ(0, std::memcmp(p.data(), ref_params.data(), p.size() * sizeof(float)))
        << "trial " << trial << ": final parameters differ";
  }
}

TEST_F(Checkpoint, KilledRunsResumeToBitIdenticalParameters) {
  check_kill_and_resume(dir_, {}, 20261121);
}

// The same with two data-parallel workers under BSP.
TEST_F(Checkpoint, KilledBspRunsResumeToBitIdenticalParameters) {
  check_kill_and_resume(dir_, {"--workers", "2"}, 4242);
}

TEST_F(Checkpoint, KilledRelatednessRunsResumeToBitIdenticalParameters) {
  const fs::path data = dir_ / "sick";
  copse::testing::write_sick_fixture(data, 600, 60, 60);
  check_kill_and_resume(dir_, {"--task", "relatedness", "--model", "child-sum-lstm", "--data",
                               data.string()},
                        777);
}

// SSP with --checkpoint-every: the epoch runs in segments, and each
// checkpoint is the state at a clock every shard has reached. Two workers at
// staleness 0 with batches of one tree (the second worker's share empty) walk
// the one-worker BSP trajectory under SGD; a run killed mid-epoch (worker 0,
// clock 420 of 2 x 300) resumes from its checkpoint at step 400 and ends
// with the BSP run's parameters.
TEST_F(Checkpoint, SspMidEpochCheckpointsResumeToBspParameters) {
  const fs::path data = dir_ / "synth";
  ASSERT_EQ(run("synth --out " + data.string() + " --train 300 --dev 20 --test 20 --seed 3", dir_),
            0);
  const std::string base = "train --data " + data.string() +
                           " --epochs 2 --embed 8 --hidden 8 --batch 1 --optimizer sgd --lr 0.05 "
                           "--l2 0 --seed 5 --threads 1 --checkpoint-every 100 --quiet ";
  std::string err;
  const fs::path ref = dir_ / "bsp", out = dir_ / "ssp";
  ASSERT_EQ(run(base + "--workers 1 --out " + ref.string(), dir_, &err), 0) << err;
  EXPECT_NE(run(base + "--workers 2 --staleness 0 --out " + out.string(), dir_, &err,
                "COPSE_TEST_FAULT=kill:0:420 "),
            0);
  ASSERT_NE(err.find("test fault: worker 0"), std::string::npos) << err;
  const auto mid = copse::models::load_checkpoint((out / "checkpoint.safetensors").string());
  EXPECT_EQ(mid.epoch, 2);
  EXPECT_EQ(mid.step, 400);
  EXPECT_EQ(mid.next, 100);
  ASSERT_EQ(run("train --resume " + out.string() + " --quiet", dir_, &err), 0) << err;
  const std::vector<float> x = final_params(ref), y = final_params(out);
  ASSERT_EQ(x.size(), y.size());
  const std::vector<float> first = mid.params;
  double moved = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(x[i], y[i], 1e-6) << i;
    moved = std::max(moved, std::abs(double(y[i]) - first[i]));
  }
  EXPECT_GT(moved, 1e-3);  // the resumed part trained
  std::ifstream metrics(out / "metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(metrics, l);) lines += !l.empty();
  EXPECT_EQ(lines, 2);
}

TEST_F(Checkpoint, CorruptOrTruncatedCheckpointIsRefused) {
  fs::path out = dir_ / "out";
  auto args = kTrain;
  args[2] = "1";  // one epoch
  ASSERT_EQ(run(join(args) + "--out " + out.string(), dir_), 0);
  fs::path ck = out / "checkpoint.safetensors";
  const std::string good = slurp(ck);
  ASSERT_GT(good.size(), 1000u);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 4; ++trial) {
    std::string bad = good;
    if (trial == 0) {
      bad.resize(bad.size() / 2);  // truncated
    } else {
      size_t at = std::uniform_int_distribution<size_t>(8, bad.size() - 1)(rng);
      if (trial == 1) at = bad.size() - 3;  // in the parameter bytes
      bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    }
    std::ofstream(ck, std::ios::binary | std::ios::trunc) << bad;
    std::string err;
    EXPECT_EQ(run("train --resume " + out.string(), dir_, &err), 2) << "trial " << trial;
    EXPECT_EQ(err.rfind("copse: error: " + ck.string() + ": ", 0), 0u) << err;
  }
}

// A run stopped mid-training is resumed under a file-size limit below the
// checkpoint's size (`ulimit -f`, as a full disk): the next checkpoint cannot
// be written, the run ends with exit 2 and an error, and the previous
// checkpoint is byte-identical, with no temporary file left behind.
TEST_F(Checkpoint, FullDiskKeepsThePreviousCheckpoint) {
  fs::path out = dir_ / "out";
  auto args = kTrain;
  args.push_back("--out");
  args.push_back(out.string());
  for (int ms = 150; !fs::exists(out / "checkpoint.safetensors") && ms < 10000; ms *= 2)
    run_and_kill(args, ms);
  ASSERT_TRUE(fs::exists(out / "checkpoint.safetensors"));
  const std::string before = slurp(out / "checkpoint.safetensors");
  ASSERT_GT(before.size(), 8 * 1024u);
  std::string err;
  int limit_kb = static_cast<int>(before.size() / 1024 / 2);
  int rc = run("train --resume " + out.string(), dir_, &err,
               "ulimit -f " + std::to_string(limit_kb) + "; ");
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(err.rfind("copse: error: ", 0), 0u) << err;
  EXPECT_TRUE(slurp(out / "checkpoint.safetensors") == before) << "previous checkpoint changed";
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << "temporary left behind: " << e.path();
}

// Out of host memory (an address-space limit below what the parameters and
// optimizer state need): a clear error, exit 2, no crash, nothing written.
TEST_F(Checkpoint, OutOfMemoryIsAClearError) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: no `ulimit -v` test";
#endif
  std::string err;
  // 4 GB of address space: room for the CUDA libraries a CUDA build maps at
  // start-up, not for the ~6 GB of weights of a 10,000-wide Tree-LSTM.
  int rc = run("train --epochs 1 --embed 10000 --hidden 10000 --quiet --out " +
                   (dir_ / "oom").string(),
               dir_, &err, "ulimit -v 4000000; ");
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(err.rfind("copse: error: ", 0), 0u) << err;
  EXPECT_NE(err.find("out of memory"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir_ / "oom")) << "a run that failed before training wrote its output";
}

}  // namespace
