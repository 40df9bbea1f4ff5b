// The thread SSP path of copse::Trainer (run_async through the sharded
// SspServer) against one worker's bulk-synchronous steps: with batches of
// one tree the second worker's share is empty, so under SGD worker 0 walks
// the single-worker trajectory exactly, but only if every clock pulled the
// rows its next batch reads (its replica never applies its own updates).
// With L2 decay the same holds to first order: each clock is two pushes,
// each an optimizer step on the shards, and the dense parameters take half
// the decay at each (without that they decay twice per clock).
// The pulls also move far less than the whole table per clock.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "models/graphs.h"
#include "models/model.h"
#include "models/trainer.h"
#include "tests/random_graphs.h"

namespace copse {
namespace {

std::vector<Graph> labelled_trees(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<Graph> gs;
  for (int i = 0; i < n; ++i) {
    Graph g = reftest::random_binary_tree(2 + i % 4, rng, vocab, true);
    for (int v = 0; v < g.num_vertices(); ++v) g.label[v] = (v + i) % 2;
    gs.push_back(g);
  }
  return gs;
}

ModelConfig config(int vocab) {
  ModelConfig cfg;
  cfg.vocab = vocab, cfg.embed = 8, cfg.hidden = 8, cfg.head = Head::softmax(2);
  cfg.embed_init = 0.5f;
  return cfg;
}

class TrainerSspL2 : public ::testing::TestWithParam<float> {};

TEST_P(TrainerSspL2, EmptySharesLeaveTheOneWorkerTrajectoryAndPullsAreTheBatchRows) {
  const float l2 = GetParam();
  const int vocab = 30;
  const auto trees = labelled_trees(24, vocab, 5);
  std::vector<std::vector<const Graph*>> batches;
  for (const auto& g : trees) batches.push_back({&g});
  Model one("tree-lstm", config(vocab)), two("tree-lstm", config(vocab));
  TrainerOptions o1{optimizer("sgd", 0.3f, l2)}, o2 = o1;
  o2.workers = 2, o2.staleness = 0;
  Trainer t1(one, o1), t2(two, o2);
  ASSERT_TRUE(t2.ssp());
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (const auto& b : batches) ASSERT_TRUE(t1.step(b).taken);
    const AsyncResult a = t2.run_async(batches);
    EXPECT_EQ(a.skipped, 0);
  }
  const auto x = one.params().get_flat_host(-1), y = two.params().get_flat_host(-1);
  ASSERT_EQ(x.size(), y.size());
  double moved = 0;
  const auto init = Model("tree-lstm", config(vocab)).params().get_flat_host(-1);
  // l2 > 0: two half-decays per clock are (1 - a/2)^2 = 1 - a + a^2/4, one
  // BSP step 1 - a (a = lr * l2 = 0.006): a second-order difference.
  const double tol = l2 > 0 ? 1e-3 : 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(x[i], y[i], tol) << i;
    moved = std::max(moved, std::abs(double(x[i]) - init[i]));
  }
  EXPECT_GT(moved, 1e-3);  // training did move the parameters
  const SyncReport rep = t2.take_sync_report();
  EXPECT_EQ(rep.violations, 0);
  EXPECT_EQ(rep.clocks, 2L * 2 * static_cast<long>(batches.size()));
  ASSERT_FALSE(rep.staleness_histogram.empty());
  EXPECT_LE(rep.staleness_histogram.rbegin()->first, 0);
}

INSTANTIATE_TEST_SUITE_P(L2, TrainerSspL2, ::testing::Values(0.f, 0.02f));

TEST(TrainerSsp, ClocksPullTheDenseParametersAndTheNextBatchRowsOnly) {
  const int vocab = 4000;
  const auto trees = labelled_trees(40, vocab, 9);
  std::vector<std::vector<const Graph*>> batches;
  for (size_t i = 0; i < trees.size(); i += 4)
    batches.push_back({&trees[i], &trees[i + 1], &trees[i + 2], &trees[i + 3]});
  Model m("tree-lstm", config(vocab));
  TrainerOptions o{optimizer("adagrad", 0.05f)};
  o.workers = 2, o.staleness = 1;
  Trainer t(m, o);
  t.run_async(batches);
  const SyncReport rep = t.take_sync_report();
  const auto& ps = m.params();
  const int table = ps.find("embed");
  ASSERT_GE(table, 0);
  const double table_bytes = double(ps.numel(table)) * sizeof(float);
  const double dense_bytes = double(ps.dense_elements()) * sizeof(float);
  const double reads = double(rep.clocks);
  // The read before batch i (i >= 1) lists the words of the worker's share:
  // over both workers, at most one row per vertex of the batch; the last
  // read of the call lists none.
  double rows = 0;
  for (size_t i = 1; i < batches.size(); ++i)
    for (const Graph* g : batches[i]) rows += g->num_vertices();
  const double bound = reads * dense_bytes + rows * (8 * sizeof(float) + 4);
  EXPECT_LT(double(rep.pulled_bytes), bound);
  EXPECT_LT(double(rep.pulled_bytes), 0.1 * reads * (dense_bytes + table_bytes));
  EXPECT_EQ(rep.violations, 0);
}

}  // namespace
}  // namespace copse
