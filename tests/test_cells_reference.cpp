// Every cell of models/cells.h against a separately written per-vertex
// reference (tests/reference_tape.h): forward outputs at every vertex and all
// parameter gradients agree to 1e-5 relative in float and 1e-9 in double on
// n-ary trees (up to 8 children), DAGs with shared children, binary trees and
// chains of length 1..2,000; plus finite differences in double through the
// softmax head of models::SentimentModel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_child_sum.h"
#include "tests/reference_harness.h"
#include "tests/reference_tape.h"
#include "vertex/builder.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::Graph;

constexpr int kVocab = 30;

// ---------------------------------------------------------------------------
// The reference: per-vertex math written from the equations in cells.h.

using Cell = Model;

// A cell of models/cells.h: pulls "word" from the table "embed" [kVocab, E]
// and pushes "h"; its reference is set by the caller.
Cell cell_model(const std::string& name, vertex::VertexFunction fn, int E) {
  return make_model(name, std::move(fn), "word", kVocab, E, {"h"});
}

int part(Tape& t, int a, int k, int h) { return t.slice(a, k * h, h); }
int one_minus(Tape& t, int a) { return t.sub(t.constant(Vec(t.width(a), 1.0)), a); }

Cell child_sum_cell(int E, int H, bool forget_gates = true) {
  Cell m = cell_model("child-sum-lstm", models::child_sum_tree_lstm(E, H), E);
  m.reference = child_sum_reference(E, H, forget_gates);
  return m;
}

Cell tree_gru_cell(int E, int H, int N) {
  Cell m = cell_model("tree-gru", models::nary_tree_gru(E, H, N), E);
  m.reference = [E, H, N](Tape& t, RefParams& P, const Graph& g, int v,
                          std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    std::vector<int> hk, rh, all;
    for (int k = 0; k < N; ++k) hk.push_back(child_state(t, g, v, k, vs, "h", H));
    for (int c : children_of(g, v)) all.push_back(vs[c].state.at("h"));
    int hbar = all.empty() ? t.zeros(H) : t.scale(t.sum(all, H), 1.0 / all.size());
    int gx = t.linear(P.at("W"), nullptr, {x});
    int gh = t.linear(P.at("U"), &P.at("U.b"), hk);
    for (int k = 0; k < N; ++k)
      rh.push_back(t.mul(t.sigmoid(t.add(part(t, gx, k, H), part(t, gh, k, H))), hk[k]));
    int z = t.sigmoid(t.add(part(t, gx, N, H), part(t, gh, N, H)));
    int cand = t.tanh(t.add(part(t, gx, N + 1, H), t.linear(P.at("Uh"), &P.at("Uh.b"), rh)));
    int h = t.add(t.mul(z, hbar), t.mul(one_minus(t, z), cand));
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

Cell tree_fc_cell(int E, int H, bool use_relu) {
  Cell m = cell_model(use_relu ? "tree-fc-relu" : "tree-fc", models::tree_fc(E, H, use_relu), E);
  m.reference = [E, H, use_relu](Tape& t, RefParams& P, const Graph& g, int v,
                                 std::vector<RefVertex>& vs) {
    std::vector<int> hk;
    for (int c : children_of(g, v)) hk.push_back(vs[c].state.at("h"));
    int pre = t.linear(P.at("W"), &P.at("W.b"), {input_row(t, P, g, v, E), t.sum(hk, H)});
    int h = use_relu ? t.relu(pre) : t.tanh(pre);
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

// One LSTM layer as in cells.h; returns {h, c}.
std::pair<int, int> ref_lstm(Tape& t, RefParams& P, int x, int hp, int cp, int H,
                             const std::string& w, const std::string& u) {
  int gx = t.linear(P.at(w), nullptr, {x});
  int gh = t.linear(P.at(u), &P.at(u + ".b"), {hp});
  auto gate = [&](int k) { return t.add(part(t, gx, k, H), part(t, gh, k, H)); };
  int c = t.add(t.mul(t.sigmoid(gate(0)), t.tanh(gate(3))), t.mul(t.sigmoid(gate(1)), cp));
  int h = t.mul(t.sigmoid(gate(2)), t.tanh(c));
  return {h, c};
}

Cell lstm_cell(int E, int H) {
  Cell m = cell_model("lstm", models::seq_lstm(E, H), E);
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    auto [h, c] = ref_lstm(t, P, input_row(t, P, g, v, E), child_state(t, g, v, 0, vs, "h", H),
                           child_state(t, g, v, 0, vs, "c", H), H, "W", "U");
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

Cell lstm2_cell(int E, int H) {
  Cell m = cell_model("lstm2", models::seq_lstm2(E, H), E);
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    auto [h1, c1] = ref_lstm(t, P, input_row(t, P, g, v, E), child_state(t, g, v, 0, vs, "h1", H),
                             child_state(t, g, v, 0, vs, "c1", H), H, "W1", "U1");
    auto [h2, c2] = ref_lstm(t, P, h1, child_state(t, g, v, 0, vs, "h2", H),
                             child_state(t, g, v, 0, vs, "c2", H), H, "W2", "U2");
    vs[v].state = {{"h1", h1}, {"c1", c1}, {"h2", h2}, {"c2", c2}};
    vs[v].out = {{"h", h2}};
  };
  return m;
}

Cell gru_cell(int E, int H) {
  Cell m = cell_model("gru", models::seq_gru(E, H), E);
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int hp = child_state(t, g, v, 0, vs, "h", H);
    int gx = t.linear(P.at("W"), &P.at("W.b"), {input_row(t, P, g, v, E)});
    int gh = t.linear(P.at("U"), &P.at("U.b"), {hp});
    int z = t.sigmoid(t.add(part(t, gx, 0, H), part(t, gh, 0, H)));
    int r = t.sigmoid(t.add(part(t, gx, 1, H), part(t, gh, 1, H)));
    int n = t.tanh(t.add(part(t, gx, 2, H), t.mul(r, part(t, gh, 2, H))));
    int h = t.add(t.mul(one_minus(t, z), n), t.mul(z, hp));
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

Cell dag_gated_cell(int E, int H) {
  Cell m = cell_model("dag-gated", models::dag_gated(E, H), E);
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    int px = t.linear(P.at("P"), nullptr, {x});
    std::vector<int> msgs;
    for (int c : children_of(g, v)) {
      int hk = vs[c].state.at("h");
      msgs.push_back(
          t.mul(t.sigmoid(t.add(px, t.linear(P.at("Ue"), &P.at("Ue.b"), {hk}))), hk));
    }
    int mm = msgs.empty() ? t.zeros(H) : t.scale(t.sum(msgs, H), 1.0 / msgs.size());
    int ga = t.linear(P.at("W"), &P.at("W.b"), {x, mm});
    int gate = t.sigmoid(part(t, ga, 0, H));
    int h = t.add(t.mul(gate, t.tanh(part(t, ga, 1, H))), t.mul(one_minus(t, gate), mm));
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

// ---------------------------------------------------------------------------
// Running both sides on L = sum_v <r_v, h_v> with fixed random r
// (tests/reference_harness.h); an all-zero reference always fails.

void check_cell(const Cell& m, const std::vector<Graph>& graphs, std::uint64_t seed,
                const std::vector<RunConfig>& configs = kAllConfigs) {
  check_model(m, graphs, seed, configs, RequireNonzero::Always);
}

// ---------------------------------------------------------------------------
// Graph families, with checks that they cover what the tests claim.

std::vector<Graph> nary_trees(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Graph> graphs;
  for (int n : {2, 9, 25, 40, 60}) graphs.push_back(random_nary_tree(n, 8, rng, kVocab));
  graphs.push_back(single_vertex(3));
  EXPECT_EQ(max_children(graphs), 8);
  return graphs;
}

std::vector<Graph> dags(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Graph> graphs;
  for (int n : {3, 12, 30, 45}) graphs.push_back(random_dag(n, 8, rng, kVocab));
  graphs.push_back(single_vertex(-1));
  EXPECT_TRUE(has_shared_child(graphs));
  EXPECT_GE(max_children(graphs), 5);
  return graphs;
}

std::vector<Graph> binary_trees(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Graph> graphs;
  for (int leaves : {1, 2, 3, 7, 12, 20})
    graphs.push_back(random_binary_tree(leaves, rng, kVocab, seed % 2 == 0));
  graphs.push_back(single_vertex(5));
  return graphs;
}

std::vector<Graph> chains(std::uint32_t seed, const std::vector<int>& lengths) {
  return random_chains(seed, lengths, kVocab);
}

// ---------------------------------------------------------------------------

TEST(CellsReference, ChildSumLstmOnNaryTreesAndDags) {
  check_cell(child_sum_cell(4, 5), nary_trees(21), 201);
  check_cell(child_sum_cell(4, 5), dags(22), 202);
}

TEST(CellsReference, TreeFcOnNaryTreesAndDags) {
  check_cell(tree_fc_cell(4, 5, false), nary_trees(23), 203);
  check_cell(tree_fc_cell(4, 5, false), dags(24), 204);
  check_cell(tree_fc_cell(4, 5, true), nary_trees(25), 205);
}

// A GEMM whose level-dependent input is listed before its pull:
// h = tanh(W [sum_k h_k; x] + b). The pull's part runs first (hoisted over
// all rows) and writes the output; the children's part adds to it per level.
Cell children_first_fc_cell(int E, int H) {
  vertex::VertexBuilder v("children-first-fc", 2);
  v.state("h", H);
  auto x = v.pull("word", E);
  auto h = tanh(v.linear({v.gather_sum("h"), x}, H, "W"));
  v.scatter("h", h);
  v.push("h", h);
  Cell m = cell_model("children-first-fc", v.build(), E);
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int vx,
                       std::vector<RefVertex>& vs) {
    std::vector<int> hk;
    for (int c : children_of(g, vx)) hk.push_back(vs[c].state.at("h"));
    int hv = t.tanh(t.linear(P.at("W"), &P.at("W.b"), {t.sum(hk, H), input_row(t, P, g, vx, E)}));
    vs[vx].state = {{"h", hv}};
    vs[vx].out = {{"h", hv}};
  };
  return m;
}

TEST(CellsReference, GemmWithThePullListedAfterTheChildren) {
  check_cell(children_first_fc_cell(4, 5), nary_trees(40), 240);
  check_cell(children_first_fc_cell(4, 5), dags(41), 241);
}

TEST(CellsReference, DagGatedOnNaryTreesAndDags) {
  check_cell(dag_gated_cell(4, 5), nary_trees(26), 206);
  check_cell(dag_gated_cell(4, 5), dags(27), 207);
}

TEST(CellsReference, TreeGruOnBinaryTrees) {
  check_cell(tree_gru_cell(5, 4, 2), binary_trees(28), 208);
  check_cell(tree_gru_cell(5, 4, 2), binary_trees(29), 209);
}

TEST(CellsReference, TreeGruWithThreeSlotsOnNaryTrees) {
  std::mt19937 rng(30);
  std::vector<Graph> graphs;
  for (int n : {4, 15, 30}) graphs.push_back(random_nary_tree(n, 3, rng, kVocab));
  check_cell(tree_gru_cell(4, 3, 3), graphs, 210);
}

TEST(CellsReference, SequenceCellsOnShortChains) {
  const auto graphs = chains(31, {1, 2, 3, 9, 40, 1});
  check_cell(lstm_cell(4, 5), graphs, 211);
  check_cell(gru_cell(4, 5), graphs, 212);
  check_cell(lstm2_cell(4, 5), graphs, 213);
}

// Sequences of lengths 1 to 50 in one batch, in no particular order: with
// strided views (the children of every level above the leaves are one run)
// and with gather copies, against the reference.
TEST(CellsReference, SequenceCellsOnChainsOfLengths1To50) {
  std::mt19937 rng(33);
  std::vector<int> lengths;
  for (int n = 1; n <= 50; n += 7) lengths.push_back(n);
  for (int i = 0; i < 8; ++i) lengths.push_back(std::uniform_int_distribution<int>(1, 50)(rng));
  lengths.push_back(50);
  std::shuffle(lengths.begin(), lengths.end(), rng);
  const auto graphs = chains(34, lengths);
  check_cell(lstm_cell(4, 5), graphs, 217);
  check_cell(gru_cell(4, 5), graphs, 218);
  check_cell(lstm2_cell(4, 5), graphs, 219);
}

TEST(CellsReference, SequenceCellsOnChainsOf2000) {
  const auto graphs = chains(32, {2000, 7});
  const std::vector<RunConfig> batched = {{true, false, true}, {false, false, true},
                                          {true, false, false}};
  check_cell(lstm_cell(4, 5), graphs, 214, batched);
  check_cell(gru_cell(4, 5), graphs, 215, batched);
  check_cell(lstm2_cell(4, 4), graphs, 216, batched);
}

TEST(CellsReference, RegistryNamesAndErrors) {
  const auto names = models::cell_names();
  EXPECT_EQ(names.size(), 8u);
  for (const auto& name : names) {
    vertex::VertexFunction fn = models::make_cell(name, 6, 4);
    EXPECT_GE(fn.find_output("h"), 0) << name;
    ASSERT_EQ(fn.pulls.size(), 1u) << name;
    EXPECT_EQ(fn.pulls[0].name, "word");
    EXPECT_EQ(fn.pulls[0].width, 6);
  }
  try {
    models::make_cell("tree-lsmt", 6, 4);
    ADD_FAILURE() << "no error for an unknown cell";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "unknown cell 'tree-lsmt' (valid: tree-lstm, child-sum-lstm, tree-gru, tree-fc, "
              "lstm, gru, lstm2, dag-gated)");
  }
}

// The comparison can fail: a child-sum reference that forgets the per-edge
// forget gates (f_k = 1) is caught in float and double.
TEST(CellsReference, DetectsAWrongReference) {
  const Cell m = child_sum_cell(4, 5);
  const RefCell wrong = child_sum_cell(4, 5, /*forget_gates=*/false).reference;
  const auto graphs = nary_trees(33);
  const Flat r = loss_weights(m, graphs, 33);
  EXPECT_FALSE((check_once<float>(m, graphs, {}, r, 33, true, &wrong).ok));
  EXPECT_FALSE((check_once<double>(m, graphs, {}, r, 33, true, &wrong).ok));
}

// ---------------------------------------------------------------------------
// Finite differences in double: each cell with the softmax head through
// SentimentModel (train_batch's gradients vs evaluate_batch's loss).

constexpr double kEps = 1e-5, kRtol = 1e-6, kAtol = 1e-8;

void fd_check(const std::string& name, const std::vector<Graph>& shapes) {
  SCOPED_TRACE(name);
  ops::CpuBackend<double> be(1);
  models::SentimentConfig cfg = small_sentiment_config(kVocab);
  vertex::VertexFunction fn = models::make_cell(name, cfg.embed, cfg.hidden);
  models::SentimentModel<double> model(fn, cfg, be);
  auto& ps = model.params();
  ps.init(41);
  std::mt19937 rng(42);
  randomize_biases(ps, rng);
  std::vector<Graph> graphs = shapes;
  std::uniform_int_distribution<int> label(-1, cfg.classes - 1);
  std::set<int> rows;
  for (auto& g : graphs) {
    for (int& l : g.label) l = label(rng);
    for (int in : g.input)
      if (in >= 0) rows.insert(in);
  }
  scheduler::BatchOptions bo;
  bo.num_slots = fn.child_slots;
  scheduler::GraphBatch batch = scheduler::make_batch(graphs, bo);
  ps.zero_grads();
  model.train_batch(batch, 1.0);
  auto loss = [&] {
    models::EvalCounts counts;
    model.evaluate_batch(batch, counts);
    return counts.loss;
  };
  int checked = 0;
  double worst = 0;
  for (int id = 0; id < ps.size(); ++id) {
    const auto& spec = ps.spec(id);
    const std::vector<double> an(ps.grad(id), ps.grad(id) + ps.numel(id));
    std::vector<std::size_t> entries;
    for (std::size_t k = 0; k < ps.numel(id); ++k)
      if (!spec.sparse_rows || rows.count(static_cast<int>(k / ps.row_width(id))))
        entries.push_back(k);
    std::shuffle(entries.begin(), entries.end(), rng);
    if (entries.size() > 24) entries.resize(24);
    double* p = ps.param(id);
    double norm = 0;
    for (double g : an) norm += g * g;
    EXPECT_GT(norm, 0) << "gradient of " << spec.name << " is zero";
    for (std::size_t k : entries) {
      const double fd = central_difference(p[k], kEps, loss);
      const double tol = kRtol * std::max(std::abs(fd), std::abs(an[k])) + kAtol;
      EXPECT_LE(std::abs(fd - an[k]), tol)
          << "d loss / d " << spec.name << "[" << k << "]: finite difference " << fd
          << ", runtime " << an[k];
      worst = std::max(worst, std::abs(fd - an[k]) / tol);
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
  std::printf("  %-15s %4d entries, worst FD error / tolerance %.2e\n", name.c_str(), checked,
              worst);
}

TEST(CellsGradCheck, TreeCells) {
  std::mt19937 rng(43);
  std::vector<Graph> nary = {random_nary_tree(14, 5, rng, kVocab), random_dag(10, 4, rng, kVocab),
                             single_vertex(2)};
  for (const char* name : {"child-sum-lstm", "tree-fc", "dag-gated"}) fd_check(name, nary);
  std::vector<Graph> binary = {random_binary_tree(6, rng, kVocab, true),
                               random_binary_tree(3, rng, kVocab, false), single_vertex(1)};
  for (const char* name : {"tree-lstm", "tree-gru"}) fd_check(name, binary);
}

TEST(CellsGradCheck, SequenceCells) {
  const auto graphs = chains(44, {1, 2, 9});
  for (const char* name : {"lstm", "gru", "lstm2"}) fd_check(name, graphs);
}

}  // namespace
}  // namespace copse::reftest
