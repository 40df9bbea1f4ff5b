// Shared checks of non-finite updates for the single-process tests
// (tests/test_nonfinite.cpp) and the MPI ones (tests/mpi/): a run in which
// the update of one step overflows, made deterministic on every CPU by the
// COPSE_TEST_FAULT=overflow hook (a finite gradient entry of 3e38, see
// models/transport.h), against reference runs of the same options.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "models/checkpoint.h"

namespace copse::testing {

struct RunResult {
  int status = -1;  // exit status; -1 if killed by a signal
  std::string err;
};
// Runs `copse ARGS` with the environment assignments `env` in front.
using Launch = std::function<RunResult(const std::string& args, const std::string& env)>;

// (optimizer, learning rate) for which the overflow hook makes the update
// non-finite: SGD's parameter (lr * 3e38 overflows for lr >= 2), Adagrad's
// and Adam's state (the squared gradient overflows for any lr).
struct OptimizerCase {
  const char* name;
  const char* lr;
};
inline const OptimizerCase kOptimizerCases[] = {
    {"sgd", "10"}, {"adagrad", "0.05"}, {"adam", "0.01"}};

inline bool all_finite(const models::TrainState& st) {
  for (float v : st.params)
    if (!std::isfinite(v)) return false;
  for (const auto& slot : st.opt_state)
    for (float v : slot)
      if (!std::isfinite(v)) return false;
  return true;
}

// Everything of the training state but the wall time.
inline void expect_same_state(const models::TrainState& a, const models::TrainState& b,
                              const std::string& what) {
  EXPECT_EQ(a.epoch, b.epoch) << what;
  EXPECT_EQ(a.next, b.next) << what;
  EXPECT_EQ(a.step, b.step) << what;
  EXPECT_EQ(a.optimizer_steps, b.optimizer_steps) << what;
  EXPECT_EQ(a.order, b.order) << what;
  EXPECT_EQ(a.rng, b.rng) << what;
  EXPECT_EQ(a.loss_sum, b.loss_sum) << what;
  EXPECT_EQ(a.labelled, b.labelled) << what;
  EXPECT_TRUE(a.params == b.params) << what << ": parameters differ";
  EXPECT_TRUE(a.opt_state == b.opt_state) << what << ": optimizer state differs";
}

inline models::TrainState checkpoint_of(const std::filesystem::path& out) {
  return models::load_checkpoint((out / "checkpoint.safetensors").string());
}

// The overflow hook's gradient reaches the update of step 3 through worker
// `worker`. Without --skip-nonfinite the run stops with exit 2 and the error
// naming the step, its batch and the parameter; its checkpoint is the state
// after step 2 (all finite), the same as that of a run killed before step 3.
// `flags`: the run's options (with --checkpoint-every 1 and without --out).
inline void check_nonfinite_stop(const Launch& launch, const std::string& flags, int worker,
                                 const std::filesystem::path& dir) {
  const auto killed = dir / "killed", stopped = dir / "stopped";
  RunResult k = launch(flags + " --out " + killed.string(), "COPSE_TEST_FAULT=kill:0:3");
  ASSERT_NE(k.status, 0) << k.err;
  RunResult r = launch(flags + " --out " + stopped.string(),
                       fmt::format("COPSE_TEST_FAULT=overflow:{}:3", worker));
  EXPECT_EQ(r.status, 2) << r.err;
  const std::string want =
      "copse: error: step 3 (epoch 1, batch of trees 50..74 in this epoch's order): non-finite "
      "parameters after the update (";
  EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("training stopped, last checkpoint: " +
                       (stopped / "checkpoint.safetensors").string()),
            std::string::npos)
      << r.err;
  const models::TrainState st = checkpoint_of(stopped);
  EXPECT_EQ(st.step, 2);
  EXPECT_TRUE(all_finite(st)) << "a non-finite value reached the checkpoint";
  expect_same_state(st, checkpoint_of(killed), "stopped vs killed before step 3");
  EXPECT_FALSE(std::filesystem::exists(stopped / "model.safetensors"));
}

// With --skip-nonfinite the step is undone exactly: the run ends as one whose
// data order omitted that batch (the omit hook), and counts one skip.
inline void check_nonfinite_skip(const Launch& launch, const std::string& flags, int worker,
                                 const std::filesystem::path& dir) {
  const auto skipped = dir / "skipped", omitted = dir / "omitted", plain = dir / "plain";
  const std::string f = flags + " --skip-nonfinite";
  RunResult r = launch(f + " --out " + skipped.string(),
                       fmt::format("COPSE_TEST_FAULT=overflow:{}:3", worker));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("copse: warning: step 3 (epoch 1, batch of trees 50..74 in this epoch's "
                       "order): non-finite parameters after the update ("),
            std::string::npos)
      << r.err;
  RunResult o = launch(f + " --out " + omitted.string(), "COPSE_TEST_FAULT=omit:0:3");
  ASSERT_EQ(o.status, 0) << o.err;
  RunResult p = launch(f + " --out " + plain.string(), "");
  ASSERT_EQ(p.status, 0) << p.err;
  const models::TrainState s = checkpoint_of(skipped), om = checkpoint_of(omitted);
  EXPECT_TRUE(all_finite(s));
  EXPECT_EQ(s.skipped, 1);
  EXPECT_EQ(om.skipped, 0);
  expect_same_state(s, om, "skipped vs omitted batch");
  // The omitted batch mattered: a run that trained on it ends elsewhere.
  EXPECT_FALSE(checkpoint_of(plain).params == om.params);
  std::ifstream m(skipped / "metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(m, line));
  EXPECT_NE(line.find("\"skipped_batches\":1"), std::string::npos) << line;
}

}  // namespace copse::testing
