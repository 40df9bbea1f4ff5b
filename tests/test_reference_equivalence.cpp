// Batched runtime == naive per-vertex reference: forward outputs at every
// vertex and every parameter gradient (embedding rows included) agree to
// 1e-5 relative in float and 1e-9 in double, on random binary and n-ary trees,
// DAGs with shared children, 10,000-vertex chains and single-vertex graphs,
// with fusion off and batching off as well. The reference (reference_tape.h)
// visits vertices one at a time and shares no code with vertex/ or scheduler/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "models/tree_lstm.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_harness.h"
#include "tests/reference_tape.h"
#include "vertex/builder.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::Graph;

// ---------------------------------------------------------------------------
// Models: the vertex function and, written separately, its per-vertex math.

// models::tree_lstm_cell:
//   [i o u] = W x ; [i o u fl fr] += U [h_l; h_r] + b
//   c = sig(i) tanh(u) + sig(fl) c_l + sig(fr) c_r ; h = sig(o) tanh(c)
Model tree_lstm_model(int E, int H, int V, bool swap_forget_gates = false) {
  Model m = make_model("tree_lstm", models::tree_lstm_cell(E, H), "word", V, E, {"h"});
  m.reference = [E, H, swap_forget_gates](Tape& t, RefParams& P, const Graph& g, int v,
                                          std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    int hl = child_state(t, g, v, 0, vs, "h", H), hr = child_state(t, g, v, 1, vs, "h", H);
    int cl = child_state(t, g, v, 0, vs, "c", H), cr = child_state(t, g, v, 1, vs, "c", H);
    if (swap_forget_gates) std::swap(cl, cr);              // a deliberately wrong reference
    int gx = t.linear(P.at("W"), nullptr, {x});            // [3H]
    int gh = t.linear(P.at("U"), &P.at("U.b"), {hl, hr});  // [5H]
    auto part = [&](int a, int k) { return t.slice(a, k * H, H); };
    int i = t.sigmoid(t.add(part(gx, 0), part(gh, 0)));
    int o = t.sigmoid(t.add(part(gx, 1), part(gh, 1)));
    int u = t.tanh(t.add(part(gx, 2), part(gh, 2)));
    int c = t.sum(
        {t.mul(i, u), t.mul(t.sigmoid(part(gh, 3)), cl), t.mul(t.sigmoid(part(gh, 4)), cr)}, H);
    int h = t.mul(o, t.tanh(c));
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

// An n-ary cell over all children (child-sum Tree-LSTM style forget gates):
//   hs = sum_k h_k ; cm = mean_k c_k ; h0 = h of the first child
//   f_k = sig(Wf x + Uf h_k + bf) ; fc = sum_k f_k c_k
//   [i o u] = G [x; hs; h0] + bg
//   c = sig(i) tanh(u) + fc + relu(tanh(cm) - h0) ; h = sig(o) tanh(c)
//   y = Y relu([h; c]) + by       (a second output, state only: "output" phase)
vertex::VertexFunction nary_cell(int E, int H, int O) {
  vertex::VertexBuilder v("nary", /*child_slots=*/1);
  v.state("h", H);
  v.state("c", H);
  auto x = v.pull("x", E);
  auto hs = v.gather_sum("h");
  auto cm = v.gather_mean("c");
  auto h0 = v.gather(0, "h");
  auto wfx = v.linear({x}, H, "Wf", /*bias=*/false);
  auto fc = v.over_children([&](vertex::EdgeScope& e) {
    auto f = sigmoid(e.parent(wfx) + v.linear({e.child("h")}, H, "Uf"));
    return f * e.child("c");
  });
  auto [i, o, u] = v.split<3>(v.linear({x, hs, h0}, 3 * H, "G"));
  auto c = sigmoid(i) * tanh(u) + fc + relu(tanh(cm) - h0);
  auto h = sigmoid(o) * tanh(c);
  v.scatter("h", h);
  v.scatter("c", c);
  v.push("h", h);
  v.push("y", v.linear({relu(v.concat({h, c}))}, O, "Y"));
  return v.build();
}

Model nary_model(int E, int H, int O, int V) {
  Model m = make_model("nary", nary_cell(E, H, O), "x", V, E, {"h", "y"});
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    std::vector<int> hk, ck;
    for (int c : children_of(g, v)) {
      hk.push_back(vs[c].state.at("h"));
      ck.push_back(vs[c].state.at("c"));
    }
    const int n = static_cast<int>(hk.size());
    int hs = t.sum(hk, H);
    int cm = n == 0 ? t.zeros(H) : t.scale(t.sum(ck, H), 1.0 / n);
    int h0 = n == 0 ? t.zeros(H) : hk[0];
    int wfx = t.linear(P.at("Wf"), nullptr, {x});
    std::vector<int> fterms;
    for (int k = 0; k < n; ++k) {
      int f = t.sigmoid(t.add(wfx, t.linear(P.at("Uf"), &P.at("Uf.b"), {hk[k]})));
      fterms.push_back(t.mul(f, ck[k]));
    }
    int fc = t.sum(fterms, H);
    int gg = t.linear(P.at("G"), &P.at("G.b"), {x, hs, h0});
    int i = t.slice(gg, 0, H), o = t.slice(gg, H, H), u = t.slice(gg, 2 * H, H);
    int c = t.sum({t.mul(t.sigmoid(i), t.tanh(u)), fc, t.relu(t.sub(t.tanh(cm), h0))}, H);
    int h = t.mul(t.sigmoid(o), t.tanh(c));
    int y = t.linear(P.at("Y"), &P.at("Y.b"), {t.relu(t.concat({h, c}))});
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = {{"h", h}, {"y", y}};
  };
  return m;
}

// An Elman chain cell: h = tanh(W [x; h_prev] + b).
Model rnn_model(int E, int H, int V) {
  vertex::VertexBuilder b("rnn", /*child_slots=*/1);
  b.state("h", H);
  auto hv = tanh(b.linear({b.pull("x", E), b.gather(0, "h")}, H, "W"));
  b.scatter("h", hv);
  b.push("h", hv);
  Model m = make_model("rnn", b.build(), "x", V, E, {"h"});
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    int hp = child_state(t, g, v, 0, vs, "h", H);
    int h = t.tanh(t.linear(P.at("W"), &P.at("W.b"), {x, hp}));
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

// A binary Tree-GRU-like cell whose three gates are separate linears over the
// same inputs [x; h_l; h_r]: the compiler merges them into one GEMM (per part).
//   z, r0, r1 = sig(Wz [x;hl;hr] + bz), sig(Wr0 ...), sig(Wr1 ...)
//   a = tanh(Wc [x; r0*hl; r1*hr] + bc) ; h = a + z * ((hl + hr) - a)
Model merged_gates_model(int E, int H, int V) {
  vertex::VertexBuilder b("merged_gates", /*child_slots=*/2);
  b.state("h", H);
  auto xv = b.pull("x", E);
  auto hlv = b.gather(0, "h"), hrv = b.gather(1, "h");
  auto zv = sigmoid(b.linear({xv, hlv, hrv}, H, "Wz"));
  auto r0v = sigmoid(b.linear({xv, hlv, hrv}, H, "Wr0"));
  auto r1v = sigmoid(b.linear({xv, hlv, hrv}, H, "Wr1"));
  auto av = tanh(b.linear({xv, r0v * hlv, r1v * hrv}, H, "Wc"));
  auto hv = av + zv * ((hlv + hrv) - av);
  b.scatter("h", hv);
  b.push("h", hv);
  Model m = make_model("merged_gates", b.build(), "x", V, E, {"h"});
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = input_row(t, P, g, v, E);
    int hl = child_state(t, g, v, 0, vs, "h", H), hr = child_state(t, g, v, 1, vs, "h", H);
    int z = t.sigmoid(t.linear(P.at("Wz"), &P.at("Wz.b"), {x, hl, hr}));
    int r0 = t.sigmoid(t.linear(P.at("Wr0"), &P.at("Wr0.b"), {x, hl, hr}));
    int r1 = t.sigmoid(t.linear(P.at("Wr1"), &P.at("Wr1.b"), {x, hl, hr}));
    int a = t.tanh(t.linear(P.at("Wc"), &P.at("Wc.b"), {x, t.mul(r0, hl), t.mul(r1, hr)}));
    int h = t.add(a, t.mul(z, t.sub(t.add(hl, hr), a)));
    vs[v].state = {{"h", h}};
    vs[v].out = {{"h", h}};
  };
  return m;
}

constexpr int kVocab = 40;

std::vector<Graph> binary_trees(std::uint32_t seed, bool words_everywhere) {
  std::mt19937 rng(seed);
  std::vector<Graph> graphs;
  for (int leaves : {1, 2, 3, 7, 12, 20})
    graphs.push_back(random_binary_tree(leaves, rng, kVocab, words_everywhere));
  graphs.push_back(single_vertex(5));
  graphs.push_back(single_vertex(-1));
  return graphs;
}

// ---------------------------------------------------------------------------

TEST(ReferenceEquivalence, TreeLstmOnBinaryTreesWordsAtLeaves) {
  check_model(tree_lstm_model(6, 5, kVocab), binary_trees(11, false), 101);
}

TEST(ReferenceEquivalence, TreeLstmOnBinaryTreesWordsEverywhere) {
  check_model(tree_lstm_model(6, 5, kVocab), binary_trees(12, true), 102);
}

TEST(ReferenceEquivalence, NaryCellOnTreesWithUpTo8Children) {
  std::mt19937 rng(13);
  std::vector<Graph> graphs;
  for (int n : {2, 9, 25, 40, 60}) graphs.push_back(random_nary_tree(n, 8, rng, kVocab));
  graphs.push_back(single_vertex(3));
  ASSERT_EQ(max_children(graphs), 8);
  check_model(nary_model(4, 5, 3, kVocab), graphs, 103);
}

TEST(ReferenceEquivalence, NaryCellOnDagsWithSharedChildren) {
  std::mt19937 rng(14);
  std::vector<Graph> graphs;
  for (int n : {3, 12, 30, 45}) graphs.push_back(random_dag(n, 8, rng, kVocab));
  graphs.push_back(single_vertex(-1));
  ASSERT_TRUE(has_shared_child(graphs));
  ASSERT_GE(max_children(graphs), 5);
  check_model(nary_model(4, 5, 3, kVocab), graphs, 104);
}

TEST(ReferenceEquivalence, TreeLstmOnDagsWithSharedChildren) {
  std::mt19937 rng(15);
  std::vector<Graph> graphs;
  for (int n : {4, 20, 35}) graphs.push_back(random_dag(n, 2, rng, kVocab));
  ASSERT_TRUE(has_shared_child(graphs));
  check_model(tree_lstm_model(6, 5, kVocab), graphs, 105);
}

TEST(ReferenceEquivalence, SingleVertexGraphs) {
  std::vector<Graph> graphs = {single_vertex(1), single_vertex(-1), single_vertex(7),
                               single_vertex(1)};
  for (const Model& m :
       {tree_lstm_model(6, 5, kVocab), nary_model(4, 5, 3, kVocab), rnn_model(4, 6, kVocab)}) {
    check_model(m, {single_vertex(9)}, 106);
    check_model(m, graphs, 107);
  }
}

std::vector<int> random_inputs(int n, std::mt19937& rng) {
  std::vector<int> in(n);
  for (int& x : in) x = random_input(rng, kVocab, 0.05);
  return in;
}

TEST(ReferenceEquivalence, RnnOnChainOf10000Vertices) {
  std::mt19937 rng(16);
  std::vector<Graph> graphs = {scheduler::make_chain(10000, random_inputs(10000, rng))};
  check_model(rnn_model(4, 6, kVocab), graphs, 108,
              {{true, false, true}, {false, false, true}, {true, false, false}});
}

TEST(ReferenceEquivalence, TreeLstmOnChainOf10000Vertices) {
  std::mt19937 rng(17);
  std::vector<Graph> graphs = {scheduler::make_chain(10000, random_inputs(10000, rng))};
  check_model(tree_lstm_model(4, 4, kVocab), graphs, 109, {{true, false}});
}

TEST(ReferenceEquivalence, ChainsOfMixedLengthsInOneBatch) {
  std::mt19937 rng(18);
  std::vector<Graph> graphs;
  for (int n : {1, 2, 7, 50, 300, 3})
    graphs.push_back(scheduler::make_chain(n, random_inputs(n, rng)));
  check_model(rnn_model(4, 6, kVocab), graphs, 110);
  check_model(tree_lstm_model(4, 5, kVocab), graphs, 111);
  check_model(nary_model(4, 5, 3, kVocab), graphs, 112);
}

// The comparison must be able to fail: a reference with the two forget gates
// swapped is caught in float and in double.
TEST(ReferenceEquivalence, DetectsAWrongReference) {
  const Model wrong = tree_lstm_model(6, 5, kVocab, /*swap_forget_gates=*/true);
  const std::vector<Graph> graphs = binary_trees(19, false);
  const Flat r = loss_weights(wrong, graphs, 19);
  Check cf = check_once<float>(wrong, graphs, {}, r, 19);
  Check cd = check_once<double>(wrong, graphs, {}, r, 19);
  EXPECT_FALSE(cf.ok);
  EXPECT_FALSE(cd.ok);
  EXPECT_GT(cd.worst, 1e-3);
}


// Three gate linears over the same inputs become one GEMM per part (hoisted x,
// per-level [h_l; h_r]); equal to the reference whether the stacked weights
// are adjacent in the store (H = 5: 5 x 16 floats, no alignment padding) or
// must be packed per batch (H = 3: 3 x 12 floats, padded apart).
TEST(ReferenceEquivalence, MergedGemmsOverSharedInputs) {
  for (int H : {5, 3}) {
    Model m = merged_gates_model(6, H, kVocab);
    vertex::ExecPlan plan = vertex::compile(m.fn);
    int merged = 0, gemms = 0;
    for (const auto& st : plan.steps) {
      if (st.kind != vertex::StepKind::MatMul) continue;
      ++gemms;
      if (st.mm_nodes.size() == 3) ++merged;
    }
    EXPECT_EQ(merged, 2) << plan.to_string();  // the hoisted part and the level part
    EXPECT_EQ(gemms, 4) << plan.to_string();   // + Wc's two parts
    vertex::CompileOptions no_merge;
    no_merge.merge_gemms = false;
    int unmerged_gemms = 0;
    for (const auto& st : vertex::compile(m.fn, no_merge).steps)
      unmerged_gemms += st.kind == vertex::StepKind::MatMul;
    EXPECT_EQ(unmerged_gemms, 8);
    check_model(m, binary_trees(31 + H, true), 300 + H);
  }
}

}  // namespace
}  // namespace copse::reftest
