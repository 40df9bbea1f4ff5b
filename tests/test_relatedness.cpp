// `copse train --task relatedness` and `copse eval` on pairs of dependency
// trees in the SICK layout (a fixture made here: tests/sick_fixture.h): the
// metrics of every epoch, eval agreeing with the best epoch's test figures,
// the located errors for malformed files (nothing written), and the
// correlation measures against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "models/train_task.h"
#include "tests/sick_fixture.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Relatedness : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("copse_rel_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  int run(const std::string& args, std::string* out = nullptr, std::string* err = nullptr) {
    const fs::path o = dir_ / "stdout.txt", e = dir_ / "stderr.txt";
    const std::string cmd = std::string(COPSE_BINARY_DIR) + "/copse " + args + " > " + o.string() +
                            " 2> " + e.string();
    const int rc = std::system(cmd.c_str());
    if (out) *out = slurp(o);
    if (err) *err = slurp(e);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  fs::path dir_;
};

TEST_F(Relatedness, TrainsOnPairsAndEvalAgreesWithTheBestEpoch) {
  const fs::path data = dir_ / "sick", out = dir_ / "out";
  copse::testing::write_sick_fixture(data, 400, 100, 150);
  std::string err;
  ASSERT_EQ(run("train --task relatedness --model child-sum-lstm --data " + data.string() +
                    " --epochs 6 --embed 24 --hidden 24 --seed 2 --quiet --out " + out.string(),
                nullptr, &err),
            0)
      << err;
  std::ifstream metrics(out / "metrics.jsonl");
  std::string line;
  int epochs = 0;
  double best_dev = -2, best_r = 0, best_rho = 0, best_mse = 0;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["epoch"].get<int>(), ++epochs);
    for (const char* k : {"train_loss", "train_pairs_per_s", "dev_pearson", "dev_spearman",
                          "dev_mse", "test_pearson", "test_spearman", "test_mse"})
      ASSERT_TRUE(j.contains(k)) << k;
    if (j["dev_pearson"].get<double>() > best_dev) {
      best_dev = j["dev_pearson"].get<double>();
      best_r = j["test_pearson"].get<double>();
      best_rho = j["test_spearman"].get<double>();
      best_mse = j["test_mse"].get<double>();
    }
  }
  ASSERT_EQ(epochs, 6);
  // The score is the share of words b keeps from a: learnt, not guessed.
  EXPECT_GT(best_r, 0.8);
  std::string json;
  ASSERT_EQ(run("eval --model " + (out / "model.safetensors").string() + " --data " +
                    (data / "test").string(),
                &json, &err),
            0)
      << err;
  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["pairs"].get<long>(), 150);
  EXPECT_DOUBLE_EQ(j["pearson"].get<double>(), best_r);
  EXPECT_DOUBLE_EQ(j["spearman"].get<double>(), best_rho);
  EXPECT_DOUBLE_EQ(j["mse"].get<double>(), best_mse);
}

TEST_F(Relatedness, MalformedFilesGiveLocatedErrorsAndWriteNothing) {
  const fs::path data = dir_ / "sick", out = dir_ / "out";
  copse::testing::write_sick_fixture(data, 20, 5, 5);
  const std::string args = "train --task relatedness --model child-sum-lstm --epochs 1 --data " +
                           data.string() + " --out " + out.string();
  auto replace_line = [&](const fs::path& f, int line_no, const std::string& text) {
    std::istringstream in(slurp(f));
    std::string l, all;
    for (int n = 1; std::getline(in, l); ++n) all += (n == line_no ? text : l) + "\n";
    std::ofstream(f) << all;
  };
  const std::string parents = slurp(data / "dev" / "b.parents");
  replace_line(data / "dev" / "b.parents", 3, "0 0 1");  // two roots
  std::string err;
  EXPECT_EQ(run(args, nullptr, &err), 2);
  EXPECT_NE(err.find("copse: error: " + (data / "dev" / "b.parents").string() + ":3:"),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(out));
  std::ofstream(data / "dev" / "b.parents") << parents;

  replace_line(data / "train" / "sim.txt", 4, "5.5");
  EXPECT_EQ(run(args, nullptr, &err), 2);
  EXPECT_NE(err.find((data / "train" / "sim.txt").string() +
                     ":4: the score '5.5' is not a number in [1, 5]"),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(out));
  replace_line(data / "train" / "sim.txt", 4, "3");

  EXPECT_EQ(run(args + " --staleness 1 --workers 2", nullptr, &err), 2);
  EXPECT_NE(err.find("--task relatedness is bulk-synchronous"), std::string::npos) << err;
  EXPECT_EQ(run("train --task relatedness --out " + out.string(), nullptr, &err), 2);
  EXPECT_NE(err.find("--task relatedness needs --data DIR"), std::string::npos) << err;
  EXPECT_EQ(run("train --task similarity --out " + out.string(), nullptr, &err), 2);
  EXPECT_NE(err.find("unknown task 'similarity'"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
  // With the files repaired the same run goes through.
  EXPECT_EQ(run(args + " --quiet", nullptr, &err), 0) << err;
}

TEST(RelatednessMeasures, PearsonAndSpearmanByHand) {
  using copse::models::pearson;
  using copse::models::spearman;
  // x = 1..4, y = 2x + 1: r = 1; y reversed: r = -1.
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {3, 5, 7, 9}), 1.0, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {9, 7, 5, 3}), -1.0, 1e-12);
  // x = (1, 2, 3), y = (1, 3, 2): cov 0.5 / (var 1 * var 1) -> r = 0.5.
  EXPECT_NEAR(pearson({1, 2, 3}, {1, 3, 2}), 0.5, 1e-12);
  // Monotone but not linear: rho = 1, r < 1.
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {1, 10, 100, 1000}), 1.0, 1e-12);
  EXPECT_LT(pearson({1, 2, 3, 4}, {1, 10, 100, 1000}), 0.95);
  // Ties share the mean rank: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3):
  // r of those = 0.8660254 (sqrt(3)/2).
  EXPECT_NEAR(spearman({5, 5, 7}, {1, 2, 3}), std::sqrt(3.0) / 2, 1e-12);
}

}  // namespace
