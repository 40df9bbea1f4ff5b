// The distinct-input path (scheduler::ExecOptions::dedup_pulls): the input
// GEMMs of a batch run once per distinct input id and their results are
// gathered into the vertex rows. It must equal the per-row path on every cell
// of the zoo (float and double), be taken exactly by its documented rule,
// count what it did, and travel in the batch index upload of a backend
// without host-visible memory.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_harness.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::ExecStats;
using scheduler::Graph;

constexpr int kFewWords = 7;  // a small vocabulary: ids repeat a lot

// Graphs of the kind each cell reads: chains for one child slot, binary
// trees for two, n-ary trees and DAGs for the edge cells (no slots).
std::vector<Graph> graphs_for(const vertex::VertexFunction& fn, std::uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<Graph> gs;
  if (fn.child_slots == 1) return random_chains(seed, {1, 4, 9, 13, 2}, vocab);
  if (fn.child_slots == 2) {
    for (int i = 0; i < 6; ++i)
      gs.push_back(random_binary_tree(2 + 2 * i, rng, vocab, /*words_everywhere=*/i % 2 == 1));
    return gs;
  }
  for (int i = 0; i < 3; ++i) gs.push_back(random_nary_tree(11, 4, rng, vocab));
  for (int i = 0; i < 3; ++i) gs.push_back(random_dag(11, 3, rng, vocab));
  gs.push_back(single_vertex(3 % vocab));
  return gs;
}

// Rows that read the table, and distinct ids among them, counted here from
// the graphs (not from the executor).
std::pair<long, long> pulled_and_distinct(const std::vector<Graph>& graphs) {
  long pulled = 0;
  std::set<int> ids;
  for (const Graph& g : graphs)
    for (int id : g.input)
      if (id >= 0) ++pulled, ids.insert(id);
  return {pulled, static_cast<long>(ids.size())};
}

Model zoo_model(const std::string& name, int vocab) {
  return make_model(name, models::make_cell(name, 5, 4), "word", vocab, 5, {"h"});
}

template <typename T>
void expect_same_as_per_row(const std::string& name, std::uint32_t seed) {
  const double rtol = sizeof(T) == 4 ? 2e-6 : 1e-12;
  const Model m = zoo_model(name, kFewWords);
  const std::vector<Graph> graphs = graphs_for(m.fn, seed, kFewWords);
  const Flat r = loss_weights(m, graphs, seed);
  RunConfig on, off;
  off.dedup_pulls = false;
  RefParams p_on, p_off;
  ExecStats s_on, s_off;
  const Result a = run_runtime<T>(m, graphs, on, r, seed, &p_on, &s_on);
  const Result b = run_runtime<T>(m, graphs, off, r, seed, &p_off, &s_off);
  Check c;
  c.expect_nonzero = false;
  for (const auto& [out, w] : b.out) compare(a.out.at(out), w, rtol, "output " + out, c);
  for (const auto& [param, w] : b.grad) compare(a.grad.at(param), w, rtol, "grad " + param, c);
  EXPECT_TRUE(c.ok) << name << (sizeof(T) == 4 ? " (float)" : " (double)")
                    << ": distinct-input path differs from the per-row path:\n"
                    << c.failures;
  const auto [pulled, distinct] = pulled_and_distinct(graphs);
  ASSERT_LE(distinct * 10, pulled * 9) << "the fixture must repeat ids";
  EXPECT_EQ(s_on.dedup_rows, pulled) << name;
  EXPECT_EQ(s_on.dedup_ids, distinct) << name;
  EXPECT_EQ(s_off.dedup_rows, 0) << name;
  EXPECT_LT(s_on.gemm_flops, s_off.gemm_flops) << name << ": the input GEMMs ran per row";
}

// Every cell of the zoo reads its word only through input GEMMs, so every
// cell takes the path, and gives the per-row results.
TEST(DedupPulls, EveryCellEqualsThePerRowPath) {
  for (const std::string& name : models::cell_names()) {
    SCOPED_TRACE(name);
    expect_same_as_per_row<double>(name, 71);
    expect_same_as_per_row<float>(name, 72);
  }
}

// The rule: taken when the distinct ids are at most 90% of the pulled rows.
TEST(DedupPulls, TakenWhenAtMostNinetyPercentOfRowsAreDistinct) {
  const Model m = zoo_model("lstm", 20);
  auto stats_for = [&](const std::vector<int>& inputs) {
    const std::vector<Graph> graphs{scheduler::make_chain(static_cast<int>(inputs.size()), inputs)};
    RefParams p;
    ExecStats s;
    run_runtime<double>(m, graphs, RunConfig{}, loss_weights(m, graphs, 5), 5, &p, &s);
    return s;
  };
  // 10 rows, 9 distinct ids: taken.
  const ExecStats nine = stats_for({0, 1, 2, 3, 4, 5, 6, 7, 8, 0});
  EXPECT_EQ(nine.dedup_rows, 10);
  EXPECT_EQ(nine.dedup_ids, 9);
  // 10 rows, 10 distinct: not taken. Rows without input do not count.
  EXPECT_EQ(stats_for({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).dedup_rows, 0);
  EXPECT_EQ(stats_for({0, 1, -1, 3, 4, 5, 6, 7, 8, 9}).dedup_rows, 0);
  EXPECT_EQ(stats_for({-1, -1, -1}).dedup_rows, 0);
}

// Not taken on distinct ids: then both settings run the same code, bit for bit.
TEST(DedupPulls, DistinctIdsRunThePerRowPath) {
  const Model m = zoo_model("tree-lstm", 400);
  std::mt19937 rng(9);
  std::vector<Graph> graphs;
  int next = 0;
  for (int i = 0; i < 5; ++i) {
    Graph g = random_binary_tree(6, rng, 400, true);
    for (int& id : g.input) id = next++;  // every id once
    graphs.push_back(g);
  }
  const Flat r = loss_weights(m, graphs, 9);
  RunConfig off;
  off.dedup_pulls = false;
  RefParams p1, p2;
  ExecStats s;
  const Result a = run_runtime<float>(m, graphs, RunConfig{}, r, 9, &p1, &s);
  const Result b = run_runtime<float>(m, graphs, off, r, 9, &p2);
  EXPECT_EQ(s.dedup_rows, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.grad, b.grad);
}

// A CPU backend that claims its memory is not host-visible, so the executor
// packs and uploads the batch's index arrays as it does for CUDA.
class UploadingCpuBackend : public ops::CpuBackend<float> {
 public:
  UploadingCpuBackend() : ops::CpuBackend<float>(1) {}
  bool host_accessible() const override { return false; }
};

struct PlainRun {
  std::vector<float> h, grads;
  ExecStats stats;
};

PlainRun run_plain(ops::Backend<float>& be, const vertex::VertexFunction& fn,
                   const std::vector<Graph>& graphs, int vocab) {
  memory::ParamStore<float> ps(be);
  memory::Arena<float> arena(be);
  const vertex::ExecPlan plan = vertex::compile(fn);
  ps.add({"embed", {vocab, 5}, memory::Init::Uniform, 0.5f, true});
  models::add_plan_params(plan, ps);
  ps.finalize();
  ps.init(13);
  scheduler::Executor<float> ex(plan, be, ps, arena);
  ex.bind_pull("word", "embed");
  scheduler::BatchOptions bo;
  bo.num_slots = std::max(1, fn.child_slots);
  const scheduler::GraphBatch batch = scheduler::make_batch(graphs, bo);
  ps.zero_grads();
  ex.forward(batch);
  const int w = ex.output_width("h");
  const auto view = ex.output("h");
  PlainRun out;
  std::vector<float> dh(static_cast<size_t>(batch.num_rows) * w);
  for (int row = 0; row < batch.num_rows; ++row)
    for (int j = 0; j < w; ++j) {
      out.h.push_back(view.ptr[static_cast<long>(row) * view.ld + j]);
      dh[static_cast<size_t>(row) * w + j] = 0.01f * static_cast<float>((row * 7 + j * 3) % 11) - 0.05f;
    }
  float* ddh = arena.alloc(dh.size());
  be.upload(ddh, dh.data(), dh.size() * sizeof(float));
  ex.set_push_grad("h", ddh, w);
  ex.backward();
  out.grads.assign(ps.grads_flat(), ps.grads_flat() + ps.total_elements());
  out.stats = ex.stats();
  return out;
}

TEST(DedupPulls, IndexUploadCarriesTheDistinctIds) {
  for (const std::string name : {"tree-lstm", "child-sum-lstm", "lstm"}) {
    SCOPED_TRACE(name);
    const auto fn = models::make_cell(name, 5, 4);
    const std::vector<Graph> graphs = graphs_for(fn, 17, kFewWords);
    ops::CpuBackend<float> host(1);
    UploadingCpuBackend uploading;
    const PlainRun a = run_plain(host, fn, graphs, kFewWords);
    const PlainRun b = run_plain(uploading, fn, graphs, kFewWords);
    EXPECT_GT(b.stats.dedup_rows, 0);
    EXPECT_EQ(a.stats.uploads, 0);
    EXPECT_EQ(b.stats.uploads, 1);
    EXPECT_EQ(a.h, b.h);
    EXPECT_EQ(a.grads, b.grads);
  }
}

// The pull has no vertex rows on a batch that took the path: asking for them
// is an error that says so, not garbage.
TEST(DedupPulls, PullRowsAreNotReadableOnThePath) {
  ops::CpuBackend<float> be(1);
  memory::ParamStore<float> ps(be);
  memory::Arena<float> arena(be);
  const auto fn = models::make_cell("lstm", 5, 4);
  const vertex::ExecPlan plan = vertex::compile(fn);
  ps.add({"embed", {kFewWords, 5}, memory::Init::Uniform, 0.5f, true});
  models::add_plan_params(plan, ps);
  ps.finalize();
  ps.init(3);
  scheduler::Executor<float> ex(plan, be, ps, arena);
  ex.bind_pull("word", "embed");
  const std::vector<Graph> graphs = random_chains(4, {12, 12}, kFewWords);
  scheduler::BatchOptions bo;
  bo.num_slots = 1;
  ex.forward(scheduler::make_batch(graphs, bo));
  ASSERT_GT(ex.stats().dedup_rows, 0);
  try {
    ex.node_value(fn.pulls[0].node);
    FAIL() << "no error";
  } catch (const copse::Error& e) {
    EXPECT_NE(std::string(e.what()).find("once per distinct input"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace copse::reftest
