// The copse command line, run as a user would: exit codes, located errors,
// nothing written on early failure, end-to-end training, eval == train metrics.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models/ptb_reader.h"
#include "models/synthetic_treebank.h"

namespace fs = std::filesystem;

namespace {

struct RunResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run_copse(const std::string& args, const fs::path& dir) {
  fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  std::string cmd = std::string(COPSE_BINARY_DIR) + "/copse " + args + " > " + out.string() +
                    " 2> " + err.string();
  int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("copse_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
            "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A data dir with valid dev/test and the given train text.
  fs::path data_with_train(const std::string& train_text) {
    fs::path d = dir_ / "data";
    fs::create_directories(d);
    std::ofstream(d / "train.txt") << train_text;
    std::ofstream(d / "dev.txt") << "(3 (2 a) (4 b))\n";
    std::ofstream(d / "test.txt") << "(1 (0 c) (2 a))\n";
    return d;
  }

  fs::path dir_;
};

TEST_F(Cli, MalformedTreesGiveLocatedErrorsAndWriteNothing) {
  struct Case {
    std::string train, where, what;
  };
  const Case cases[] = {
      {"(3 (2 a) (4 b))\n(3 (2 a) (4 b)\n", "train.txt:2:15:", "missing"},  // unbalanced
      {"(3 (2 a) (4 b)))\n", "train.txt:1:16:", ""},                         // extra ')'
      {"(3 (2 a) (9 b))\n", "train.txt:1:11:", "range"},                      // label out of range
      {"(3 (x a) (4 b))\n", "train.txt:1:5:", ""},                            // non-integer label
      {"(3 (2 a) (4 b))\n\n(3 (2 a) (4 b))\n", "train.txt:2:1:", "empty"},   // empty line
      {"", "train.txt", "empty"},                                             // empty file
  };
  for (const auto& c : cases) {
    fs::path data = data_with_train(c.train);
    fs::path out = dir_ / "out";
    RunResult r = run_copse("train --data " + data.string() + " --epochs 1 --out " + out.string(), dir_);
    EXPECT_EQ(r.status, 2) << c.train;
    EXPECT_EQ(r.err.rfind("copse: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.where), std::string::npos) << "expected " << c.where << " in " << r.err;
    EXPECT_NE(r.err.find(c.what), std::string::npos) << "expected " << c.what << " in " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "a failed run wrote " << out;
  }
}

TEST_F(Cli, UnreadablePathsAndBadEmbeddingsAreErrors) {
  fs::path out = dir_ / "out";
  RunResult r = run_copse("train --data " + (dir_ / "nope").string() + " --out " + out.string(), dir_);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));

  fs::path data = data_with_train("(3 (2 a) (4 b))\n");
  std::ofstream(dir_ / "glove.txt") << "a 0.1 0.2 0.3 0.4\nb 0.1 0.2 0.3\n";
  r = run_copse("train --data " + data.string() + " --embed 4 --hidden 4 --embeddings " +
                    (dir_ / "glove.txt").string() + " --out " + out.string(),
                dir_);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("glove.txt:2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("expected 4 values, found 3"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));

  r = run_copse("eval --model " + (dir_ / "missing.safetensors").string() + " --data " +
                    (data / "dev.txt").string(),
                dir_);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("missing.safetensors"), std::string::npos) << r.err;

  r = run_copse("train --optimizer rmsprop --out " + out.string(), dir_);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("rmsprop"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

// Trains on the built-in synthetic treebank (small sizes to stay quick), then
// checks the learning, the metrics file, and that `copse eval` of the saved
// model on the test split reproduces the test accuracy of the best epoch.
TEST_F(Cli, TrainsSyntheticTreebankAndEvalAgrees) {
  fs::path out = dir_ / "out";
  RunResult r = run_copse("train --epochs 4 --embed 48 --hidden 48 --batch 25 --optimizer adagrad "
                          "--lr 0.05 --seed 3 --out " + out.string(),
                          dir_);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream metrics(out / "metrics.jsonl");
  std::string line;
  int epochs = 0;
  double best_dev = -1, best_test = 0;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    ++epochs;
    EXPECT_EQ(j["epoch"].get<int>(), epochs);
    for (const char* k : {"train_loss", "train_trees_per_s", "dev_fine", "dev_binary", "test_fine",
                          "test_binary", "wall_s"})
      ASSERT_TRUE(j.contains(k)) << k;
    if (j["dev_fine"].get<double>() > best_dev) {
      best_dev = j["dev_fine"].get<double>();
      best_test = j["test_fine"].get<double>();
    }
  }
  ASSERT_EQ(epochs, 4);
  EXPECT_GE(best_test, 0.80) << "synthetic treebank not learnt";
  ASSERT_TRUE(fs::exists(out / "model.safetensors"));

  auto splits = copse::models::make_synthetic_splits(3);
  copse::models::write_ptb_file((dir_ / "test.txt").string(), splits.test);
  r = run_copse("eval --model " + (out / "model.safetensors").string() + " --data " +
                    (dir_ / "test.txt").string(),
                dir_);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["trees"].get<long>(), static_cast<long>(splits.test.size()));
  EXPECT_DOUBLE_EQ(j["fine"].get<double>(), best_test);
}

}  // namespace
