// The strided path (vertex::Step::strided_view): which gathers of the zoo's
// cells the compiler lets consumers read in place, that the executor takes
// the path (its statistics) exactly on the levels whose children form a run,
// and that outputs and all gradients equal those of the gather path.
// (Both paths against the per-vertex reference: the suites of
// test_cells_reference.cpp and test_reference_equivalence.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "models/cells.h"
#include "models/tree_lstm.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_harness.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::ExecStats;
using scheduler::Graph;

constexpr int kVocab = 23;

// The states read through strided gathers, one entry per gather step.
std::multiset<std::string> strided_states(const vertex::ExecPlan& plan) {
  std::multiset<std::string> states;
  for (const auto& s : plan.steps)
    if (s.strided_view) states.insert(plan.fn.nodes[s.node].name);
  return states;
}

TEST(StridedViews, PlanMarksTheGathersWhoseConsumersCanReadInPlace) {
  using S = std::multiset<std::string>;
  const std::map<std::string, S> want = {
      {"tree-lstm", {"c", "c"}},  // h_l, h_r sit side by side in U's operand: copied
      {"child-sum-lstm", {"c", "h", "h"}},
      {"tree-gru", {"h"}},  // the mean; h_1, h_2 are U's operand block
      {"tree-fc", {"h"}},
      {"lstm", {"c", "h"}},
      {"gru", {"h"}},
      {"lstm2", {"c1", "c2", "h1", "h2"}},
      {"dag-gated", {"h"}},
  };
  for (const auto& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const vertex::VertexFunction fn = models::make_cell(name, 6, 4);
    EXPECT_EQ(strided_states(vertex::compile(fn)), want.at(name));
    vertex::CompileOptions off;
    off.strided_views = false;
    EXPECT_TRUE(strided_states(vertex::compile(fn, off)).empty());
    vertex::CompileOptions unfused;
    unfused.fuse = false;
    EXPECT_EQ(strided_states(vertex::compile(fn, unfused)), want.at(name));
  }
}

// A gather that is also pushed (read after the level loop over all rows)
// keeps its copy; the same function without that push views it.
TEST(StridedViews, PushedGatherIsNotViewed) {
  auto make = [](bool push_prev) {
    vertex::VertexBuilder v("pushes_its_gather", 1);
    v.state("h", 3);
    auto hp = v.gather(0, "h");
    auto h = tanh(v.linear({v.pull("x", 2), hp}, 3, "W"));
    v.scatter("h", h);
    v.push("h", h);
    if (push_prev) v.push("prev", hp);
    return v.build();
  };
  EXPECT_TRUE(strided_states(vertex::compile(make(true))).empty());
  EXPECT_EQ(strided_states(vertex::compile(make(false))), std::multiset<std::string>{"h"});
}

Model cell(const std::string& name, int hidden = 4) {
  return make_model(name, models::make_cell(name, 5, hidden), "word", kVocab, 5, {"h"});
}

std::vector<Graph> chains(std::uint32_t seed, const std::vector<int>& lengths) {
  return random_chains(seed, lengths, kVocab);
}

// Lengths 1..50 in a random order.
std::vector<int> mixed_lengths(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> lengths{1, 50};
  for (int i = 0; i < 18; ++i) lengths.push_back(std::uniform_int_distribution<int>(1, 50)(rng));
  std::shuffle(lengths.begin(), lengths.end(), rng);
  return lengths;
}

struct Paths {
  ExecStats on, off;
};

// Runs m with strided views and with gather copies (same parameters, same
// loss weights) in T and expects equal outputs and gradients.
template <typename T>
Paths expect_paths_equal(const Model& m, const std::vector<Graph>& graphs, std::uint64_t seed,
                         bool one_vertex_per_level = false) {
  const double rtol = sizeof(T) == 4 ? 1e-6 : 1e-13;
  const Flat r = loss_weights(m, graphs, static_cast<std::uint32_t>(seed));
  RunConfig with{true, one_vertex_per_level, true}, without{true, one_vertex_per_level, false};
  Paths p;
  RefParams params_on, params_off;
  const Result on = run_runtime<T>(m, graphs, with, r, seed, &params_on, &p.on);
  const Result off = run_runtime<T>(m, graphs, without, r, seed, &params_off, &p.off);
  Check c;
  c.expect_nonzero = false;
  for (const auto& [name, w] : off.out) compare(on.out.at(name), w, rtol, "output " + name, c);
  for (const auto& [name, w] : off.grad) compare(on.grad.at(name), w, rtol, "grad " + name, c);
  EXPECT_TRUE(c.ok) << m.name << (sizeof(T) == 4 ? " (float)" : " (double)")
                    << ": strided views differ from gather copies:\n"
                    << c.failures;
  return p;
}

int num_strided_gathers(const Model& m) {
  return static_cast<int>(strided_states(vertex::compile(m.fn)).size());
}

// GEMM parts whose operand is a strided gather (their weight gradient reads it).
int num_viewed_gemm_parts(const Model& m) {
  const vertex::ExecPlan plan = vertex::compile(m.fn);
  int parts = 0;
  for (const auto& s : plan.steps) {
    if (s.kind != vertex::StepKind::MatMul || s.part_inputs.size() != 1) continue;
    for (const auto& g : plan.steps) parts += g.strided_view && g.node == s.part_inputs[0];
  }
  return parts;
}

int height(const std::vector<Graph>& graphs) {
  return static_cast<int>(scheduler::make_batch(graphs, {1, false}).num_levels);
}

// Sequences of lengths 1..50: after level-major renumbering every level above
// the leaves reads its children as one run, so every strided gather is a
// view there (forward and backward) and never a copy. The lazy weight
// gradient then reads the children's rows in spans that break where a
// sequence ends: with a small hidden size one GEMM per span, with a larger
// one (more weight-gradient columns to pass over per span) one gather of the
// viewed rows instead.
TEST(StridedViews, SequenceCellsOnMixedLengthsTakeThePathOnEveryLevel) {
  const std::vector<int> lengths = mixed_lengths(52);
  const auto graphs = chains(51, lengths);
  const int L = height(graphs);
  ASSERT_EQ(L, 50);
  // A span breaks before level l (2 <= l < L) when a sequence of length l
  // ends on level l-1, so level l has fewer rows than level l-1.
  std::set<int> ends;
  for (int n : lengths)
    if (n >= 2 && n < L) ends.insert(n);
  const int breaks = static_cast<int>(ends.size());
  ASSERT_GE(breaks, 5);
  for (int hidden : {4, 40}) {
    for (const std::string name : {"lstm", "gru", "lstm2"}) {
      SCOPED_TRACE(name + " hidden " + std::to_string(hidden));
      const Model m = cell(name, hidden);
      const int V = num_strided_gathers(m), P = num_viewed_gemm_parts(m);
      ASSERT_GE(P, 1);
      const Paths f = expect_paths_equal<float>(m, graphs, 61);
      const Paths d = expect_paths_equal<double>(m, graphs, 62);
      for (const Paths& p : {f, d}) {
        EXPECT_EQ(p.on.strided_views, V * (L - 1));
        EXPECT_EQ(p.on.strided_grads, V * (L - 1));
        EXPECT_EQ(p.off.strided_views, 0);
        EXPECT_EQ(p.off.strided_grads, 0);
        EXPECT_EQ(p.off.view_rematerialized, 0);
        // Forward: V gathers per level above the leaves, backward V scatters.
        EXPECT_EQ(p.off.gather_calls - p.on.gather_calls,
                  2 * V * (L - 1) - p.on.view_rematerialized);
        if (hidden == 4) {
          EXPECT_EQ(p.on.view_rematerialized, 0);
          EXPECT_EQ(p.on.gemm_calls - p.off.gemm_calls, P * breaks);
        } else {
          EXPECT_EQ(p.on.view_rematerialized, P);
          EXPECT_EQ(p.on.gemm_calls, p.off.gemm_calls);
        }
      }
    }
  }
}

// Equal lengths: the views of consecutive levels are adjacent, so the lazy
// weight gradient reads the children's rows as one span (no gather at all).
TEST(StridedViews, EqualLengthChainsNeedNoGatherAtAll) {
  const auto graphs = chains(53, std::vector<int>(6, 17));
  for (const std::string name : {"lstm", "gru", "lstm2"}) {
    SCOPED_TRACE(name);
    const Model m = cell(name);
    const Paths p = expect_paths_equal<double>(m, graphs, 63);
    EXPECT_EQ(p.on.strided_views, num_strided_gathers(m) * 16);
    EXPECT_EQ(p.on.view_rematerialized, 0);
    // The pull, forward and backward; on the distinct-input path (taken:
    // kVocab is small) also the input GEMM's output gather and the scatter
    // of its gradient per id. No state is gathered.
    const long dedup_calls = p.on.dedup_rows > 0 ? 2 : 0;
    EXPECT_EQ(p.on.gather_calls, 2 + dedup_calls) << "only the pull, forward and backward";
  }
}

// Batching off: every level is one vertex, so every gather of a vertex with a
// child is a view.
TEST(StridedViews, OneVertexPerLevelViewsEveryChild) {
  const auto graphs = chains(54, {9, 3, 1});
  const Model m = cell("lstm");
  const Paths p = expect_paths_equal<double>(m, graphs, 64, /*one_vertex_per_level=*/true);
  EXPECT_EQ(p.on.strided_views, 2 * (8 + 2));
}

// Perfect binary trees numbered layer by layer: the tree-LSTM's c gathers are
// views of stride 2, the child-sum cell's edges one run of stride 1.
TEST(StridedViews, PerfectBinaryTreesUseStride2AndEdgeRuns) {
  Graph t;
  std::mt19937 rng(55);
  std::vector<int> layer;
  for (int i = 0; i < 16; ++i) layer.push_back(t.add_vertex({}, random_input(rng, kVocab, 0)));
  while (layer.size() > 1) {
    std::vector<int> next;
    for (size_t i = 0; i < layer.size(); i += 2)
      next.push_back(t.add_vertex({layer[i], layer[i + 1]}, random_input(rng, kVocab, 0.5)));
    layer = next;
  }
  const std::vector<Graph> graphs{t};
  for (const std::string name : {"tree-lstm", "child-sum-lstm", "tree-fc", "dag-gated"}) {
    SCOPED_TRACE(name);
    const Model m = cell(name);
    const Paths f = expect_paths_equal<float>(m, graphs, 65);
    const Paths d = expect_paths_equal<double>(m, graphs, 66);
    EXPECT_EQ(f.on.strided_views, num_strided_gathers(m) * 4);
    EXPECT_EQ(d.on.strided_views, num_strided_gathers(m) * 4);
  }
}

// Trees and DAGs in general: whatever the path takes, the results are those
// of the gather path (and, in the reference suites, of the reference).
TEST(StridedViews, TreesAndDagsEqualTheGatherPath) {
  std::mt19937 rng(56);
  std::vector<Graph> trees, dags;
  for (int leaves : {1, 2, 5, 9, 20, 33})
    trees.push_back(random_binary_tree(leaves, rng, kVocab, false));
  for (int n : {3, 12, 40}) {
    dags.push_back(random_dag(n, 3, rng, kVocab));
    dags.push_back(random_nary_tree(n, 4, rng, kVocab));
  }
  for (const auto& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const Model m = cell(name);
    if (m.fn.child_slots >= 2 || name == "lstm" || name == "gru" || name == "lstm2") {
      expect_paths_equal<float>(m, trees, 67);
      expect_paths_equal<double>(m, trees, 68);
    } else {
      expect_paths_equal<float>(m, dags, 69);
      expect_paths_equal<double>(m, dags, 70);
    }
  }
}

}  // namespace
}  // namespace copse::reftest
