// Zero views (scheduler::ExecOptions::zero_views): a gather or GEMM output
// that is all zeros on a level and read there only by fused programs is not
// filled; the programs read a broadcast zero row. The results must be the
// same bits as with the fills (the arena is poisoned with NaN, so a reader
// that needed the zeros would see NaN), and the path must be taken exactly
// where the rule says.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "models/cells.h"
#include "scheduler/executor.h"
#include "tests/random_graphs.h"
#include "tests/reference_harness.h"

namespace copse::reftest {
namespace {

using scheduler::ExecStats;
using scheduler::Graph;

constexpr int kWords = 11;

struct OnOff {
  ExecStats on, off;
};

template <typename T>
OnOff expect_same_bits(const std::string& name, const std::vector<Graph>& graphs,
                       std::uint32_t seed) {
  const Model m = make_model(name, models::make_cell(name, 5, 4), "word", kWords, 5, {"h"});
  const Flat r = loss_weights(m, graphs, seed);
  RunConfig on, off;
  off.zero_views = false;
  RefParams p1, p2;
  OnOff s;
  const Result a = run_runtime<T>(m, graphs, on, r, seed, &p1, &s.on);
  const Result b = run_runtime<T>(m, graphs, off, r, seed, &p2, &s.off);
  EXPECT_EQ(a.out, b.out) << name;
  EXPECT_EQ(a.grad, b.grad) << name;
  EXPECT_EQ(s.off.zero_views, 0) << name;
  EXPECT_EQ(s.on.fill_calls + s.on.zero_views, s.off.fill_calls) << name;
  return s;
}

// Binary trees without unary vertices: only the leaf level has zeros, where
// the Tree-LSTM's four gathers (h_l, h_r, c_l, c_r) and its U GEMM output
// are zero and read only by the fused program (the GEMM itself is skipped
// there and its weight gradient spans the levels above): five fills left out.
TEST(ZeroViews, TreeLstmLeafLevelReadsZeroRows) {
  std::mt19937 rng(81);
  std::vector<Graph> graphs;
  for (int i = 0; i < 5; ++i)
    graphs.push_back(random_binary_tree(3 + 3 * i, rng, kWords, false, /*p_unary=*/0.0));
  const OnOff f = expect_same_bits<float>("tree-lstm", graphs, 81);
  const OnOff d = expect_same_bits<double>("tree-lstm", graphs, 82);
  EXPECT_EQ(f.on.zero_views, 5);
  EXPECT_EQ(d.on.zero_views, 5);
}

// With unary vertices, levels above the leaves can have slot 1 absent
// everywhere while slot 0 is present: h_r is zero there but the GEMM over
// [h_l | h_r] runs and reads it, so it must be filled; c_r is read only by
// the fused program and is not. Every cell, on its kind of graph, gives the
// same bits both ways.
TEST(ZeroViews, EveryCellGivesTheSameBitsWithAndWithoutFills) {
  std::mt19937 rng(83);
  std::vector<Graph> trees, nary, chains;
  for (int i = 0; i < 6; ++i) trees.push_back(random_binary_tree(2 + 2 * i, rng, kWords, i % 2, 0.4));
  for (int i = 0; i < 4; ++i) nary.push_back(random_nary_tree(12, 4, rng, kWords));
  for (int i = 0; i < 2; ++i) nary.push_back(random_dag(12, 3, rng, kWords));
  chains = random_chains(84, {1, 3, 7, 2}, kWords);
  long views = 0;
  for (const std::string& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const int slots = models::make_cell(name, 5, 4).child_slots;
    const auto& graphs = slots == 1 ? chains : slots == 2 ? trees : nary;
    views += expect_same_bits<float>(name, graphs, 85).on.zero_views;
    expect_same_bits<double>(name, graphs, 86);
  }
  EXPECT_GT(views, 0);
}

}  // namespace
}  // namespace copse::reftest
