// Batched runtime == naive per-vertex reference: forward outputs at every
// vertex and every parameter gradient (embedding rows included) agree to
// 1e-5 relative in float and 1e-9 in double, on random binary and n-ary trees,
// DAGs with shared children, 10,000-vertex chains and single-vertex graphs,
// with fusion off and batching off as well. The reference (reference_tape.h)
// visits vertices one at a time and shares no code with vertex/ or scheduler/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/sentiment_model.h"
#include "models/tree_lstm.h"
#include "ops/cpu_backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_tape.h"
#include "vertex/builder.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::Graph;

// ---------------------------------------------------------------------------
// The reference side.

// Tape ids of one vertex's states and pushed outputs.
struct RefVertex {
  std::map<std::string, int> state, out;
};

// Computes vertex v of g on the tape; its children are already in `vs`.
using RefCell =
    std::function<void(Tape&, RefParams&, const Graph&, int v, std::vector<RefVertex>& vs)>;

struct Model {
  std::string name;
  vertex::VertexFunction fn;
  std::string pull;  // the pull bound to the table "embed" [vocab, embed]
  int vocab = 0, embed = 0;
  std::vector<std::string> outputs;
  RefCell reference;
};

// A topological order (children first) by iterative depth-first search:
// 10,000-vertex chains must not overflow the stack.
std::vector<int> topo_order(const Graph& g) {
  const int n = g.num_vertices();
  std::vector<char> state(n, 0);  // 0 new, 1 on the stack, 2 done
  std::vector<int> order;
  std::vector<std::pair<int, int>> stack;  // (vertex, next child index)
  for (int root = 0; root < n; ++root) {
    if (state[root]) continue;
    state[root] = 1;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      auto& [v, k] = stack.back();
      if (k < g.num_children(v)) {
        int c = g.children[g.child_ptr[v] + k++];
        if (state[c] == 1) throw std::runtime_error("reference: cycle");
        if (state[c] == 0) {
          state[c] = 1;
          stack.push_back({c, 0});
        }
      } else {
        state[v] = 2;
        order.push_back(v);
        stack.pop_back();
      }
    }
  }
  return order;
}

std::vector<int> children_of(const Graph& g, int v) {
  return {g.children.begin() + g.child_ptr[v], g.children.begin() + g.child_ptr[v + 1]};
}

// The state `s` of v's k-th child, zeros (width w) if v has no such child.
int child_state(Tape& t, const Graph& g, int v, int k, const std::vector<RefVertex>& vs,
                const std::string& s, int w) {
  if (k >= g.num_children(v)) return t.zeros(w);
  return vs[g.children[g.child_ptr[v] + k]].state.at(s);
}

// v's embedding row, zeros (width e) when v has no input.
int input_row(Tape& t, RefParams& P, const Graph& g, int v, int e) {
  return g.input[v] >= 0 ? t.param_row(P.at("embed"), g.input[v]) : t.zeros(e);
}

// ---------------------------------------------------------------------------
// Models: the vertex function and, written separately, its per-vertex math.

// models::tree_lstm_cell:
//   [i o u] = W x ; [i o u fl fr] += U [h_l; h_r] + b
//   c = sig(i) tanh(u) + sig(fl) c_l + sig(fr) c_r ; h = sig(o) tanh(c)
Model tree_lstm_model(int E, int H, int V, bool swap_forget_gates = false) {
  Model m;
  m.name = "tree_lstm";
  m.fn = models::tree_lstm_cell(E, H);
  m.pull = "word";
  m.vocab = V;
  m.embed = E;
  m.outputs = {"h"};
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
  Model m;
  m.name = "nary";
  m.fn = nary_cell(E, H, O);
  m.pull = "x";
  m.vocab = V;
  m.embed = E;
  m.outputs = {"h", "y"};
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
  Model m;
  m.name = "rnn";
  vertex::VertexBuilder b("rnn", /*child_slots=*/1);
  b.state("h", H);
  auto hv = tanh(b.linear({b.pull("x", E), b.gather(0, "h")}, H, "W"));
  b.scatter("h", hv);
  b.push("h", hv);
  m.fn = b.build();
  m.pull = "x";
  m.vocab = V;
  m.embed = E;
  m.outputs = {"h"};
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
  Model m;
  m.name = "merged_gates";
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
  m.fn = b.build();
  m.pull = "x";
  m.vocab = V;
  m.embed = E;
  m.outputs = {"h"};
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

// ---------------------------------------------------------------------------
// Running both sides.

using Flat = std::map<std::string, Vec>;

struct Result {
  Flat out;   // per output: [sum of vertices, width], rows in (graph, vertex) order
  Flat grad;  // per parameter, as laid out in the store
};

int output_width(const Model& m, const std::string& name) {
  return m.fn.nodes[m.fn.outputs[m.fn.find_output(name)].value].width;
}

int total_vertices(const std::vector<Graph>& graphs) {
  int n = 0;
  for (const auto& g : graphs) n += g.num_vertices();
  return n;
}

// The loss is L = sum over vertices and outputs of <r_v, out_v>; these are the r.
Flat loss_weights(const Model& m, const std::vector<Graph>& graphs, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Flat r;
  for (const auto& name : m.outputs) {
    Vec& w = r[name];
    w.resize(static_cast<size_t>(total_vertices(graphs)) * output_width(m, name));
    for (double& x : w) x = u(rng);
  }
  return r;
}

struct RunConfig {
  bool fuse = true;
  bool one_vertex_per_level = false;
  std::string describe() const {
    return fmt::format("{}, {}", fuse ? "fused" : "unfused",
                       one_vertex_per_level ? "one vertex per level" : "batched");
  }
};

const std::vector<RunConfig> kAllConfigs = {{true, false}, {false, false}, {true, true}};

// Fills the arena's memory with NaN and resets it, so every buffer the runtime
// takes from it starts as NaN: a row it forgets to write shows up as NaN.
template <typename T>
void poison(memory::Arena<T>& arena, std::size_t count) {
  T* p = arena.alloc(count);
  std::fill(p, p + count, std::numeric_limits<T>::quiet_NaN());
  arena.reset();
}

// Forward, loss gradient and backward on the runtime; *params receives the
// parameters it used (weights Xavier, biases and embeddings random).
template <typename T>
Result run_runtime(const Model& m, const std::vector<Graph>& graphs, const RunConfig& cfg,
                   const Flat& r, std::uint64_t seed, RefParams* params) {
  ops::CpuBackend<T> be(1);
  memory::ParamStore<T> ps(be);
  memory::Arena<T> arena(be);
  vertex::CompileOptions co;
  co.fuse = cfg.fuse;
  vertex::ExecPlan plan = vertex::compile(m.fn, co);
  if (!m.pull.empty()) ps.add({"embed", {m.vocab, m.embed}, memory::Init::Uniform, 0.5f, true});
  models::add_plan_params(plan, ps);
  ps.finalize();
  ps.init(seed);
  for (const auto& p : plan.fn.params) {
    if (!p.is_bias) continue;
    const int id = ps.id(p.name);
    std::mt19937_64 rng(seed * 7919 + std::hash<std::string>{}(p.name));
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    for (std::size_t k = 0; k < ps.numel(id); ++k) ps.param(id)[k] = static_cast<T>(u(rng));
  }
  scheduler::Executor<T> ex(plan, be, ps, arena);
  if (!m.pull.empty()) ex.bind_pull(m.pull, "embed");
  scheduler::BatchOptions bo;
  bo.num_slots = m.fn.child_slots;
  bo.one_vertex_per_level = cfg.one_vertex_per_level;
  scheduler::GraphBatch batch = scheduler::make_batch(graphs, bo);

  std::size_t widths = 0;  // of all nodes: a bound on the columns of all buffers
  for (const auto& nd : plan.fn.nodes) widths += nd.width;
  poison(arena, static_cast<std::size_t>(batch.num_rows + batch.num_edges + 1) * widths * 4);
  ps.zero_grads();
  ex.forward(batch);
  Result res;
  const int nv = total_vertices(graphs);
  for (const auto& name : m.outputs) {
    const int w = ex.output_width(name);
    auto view = ex.output(name);
    Vec& out = res.out[name];
    out.resize(static_cast<size_t>(nv) * w);
    std::vector<T> d(static_cast<size_t>(batch.num_rows) * w);  // [N, w] dL/d(out)
    const Vec& rw = r.at(name);
    for (int idx = 0; idx < nv; ++idx) {
      const long row = batch.row_of_vertex[idx];
      for (int j = 0; j < w; ++j) {
        out[static_cast<size_t>(idx) * w + j] = view.ptr[row * view.ld + j];
        d[row * w + j] = static_cast<T>(rw[static_cast<size_t>(idx) * w + j]);
      }
    }
    ex.set_push_grad(name, d.data(), w);
  }
  ex.backward();
  for (int id = 0; id < ps.size(); ++id)
    res.grad[ps.spec(id).name] = Vec(ps.grad(id), ps.grad(id) + ps.numel(id));
  *params = RefParams::from_store(ps);
  return res;
}

// The same loss on the tape, one vertex at a time.
Result run_reference(const Model& m, const std::vector<Graph>& graphs, RefParams P, const Flat& r) {
  Tape t;
  std::vector<int> dots;
  Result res;
  size_t base = 0;  // first (graph, vertex) index of the graph
  for (const Graph& g : graphs) {
    std::vector<RefVertex> vs(g.num_vertices());
    for (int v : topo_order(g)) m.reference(t, P, g, v, vs);
    for (const auto& name : m.outputs) {
      const int w = output_width(m, name);
      Vec& out = res.out[name];
      for (int v = 0; v < g.num_vertices(); ++v) {
        int id = vs[v].out.at(name);
        out.insert(out.end(), t.value(id).begin(), t.value(id).end());
        auto rb = r.at(name).begin() + static_cast<long>(base + v) * w;
        dots.push_back(t.dot(id, Vec(rb, rb + w)));
      }
    }
    base += g.num_vertices();
  }
  t.backward(t.sum(dots, 1));
  for (const auto& [name, p] : P.all()) res.grad[name] = p.grad;
  return res;
}

// ---------------------------------------------------------------------------
// Comparison.

struct Check {
  bool ok = true;
  double worst = 0;  // largest norm-wise relative error
  std::string worst_what;
  std::string failures;
  bool expect_nonzero = true;  // every tensor should be nonzero (false: single vertices, no edges)
};

// Norm-wise ||got - want|| / max(||want||, tiny) <= rtol, and elementwise
// |got - want| <= 10 rtol |want| + rtol max(||want||_inf, 1e-3).
void compare(const Vec& got, const Vec& want, double rtol, const std::string& what, Check& c) {
  if (got.size() != want.size()) {
    c.ok = false;
    c.failures +=
        fmt::format("  {}: {} values, the reference has {}\n", what, got.size(), want.size());
    return;
  }
  double diff2 = 0, want2 = 0, want_inf = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff2 += (got[i] - want[i]) * (got[i] - want[i]);
    want2 += want[i] * want[i];
    want_inf = std::max(want_inf, std::abs(want[i]));
  }
  const double rel = std::sqrt(diff2) / std::max(std::sqrt(want2), 1e-300);
  if (c.worst_what.empty() || !(rel <= c.worst)) {  // NaN counts as worst
    c.worst = rel;
    c.worst_what = what;
  }
  const double atol = rtol * std::max(want_inf, 1e-3);
  size_t bad = 0, worst_i = 0;
  double worst_excess = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(got[i] - want[i]);
    double tol = 10 * rtol * std::abs(want[i]) + atol;
    if (!(err <= tol)) {
      ++bad;
      if (err / tol > worst_excess || std::isnan(err)) {
        worst_excess = err / tol;
        worst_i = i;
      }
    }
  }
  if (!(rel <= rtol) || bad > 0) {
    c.ok = false;
    c.failures += fmt::format(
        "  {}: norm-wise relative error {:.3g} (tolerance {:.1g}); {} of {} elements out of "
        "tolerance, worst [{}]: runtime {:.10g} reference {:.10g}\n",
        what, rel, rtol, bad, got.size(), worst_i, got[worst_i], want[worst_i]);
  }
  if (want2 == 0 && c.expect_nonzero) {
    c.ok = false;
    c.failures +=
        fmt::format("  {}: the reference is all zeros: the test exercises nothing\n", what);
  }
}

template <typename T>
Check check_once(const Model& m, const std::vector<Graph>& graphs, const RunConfig& cfg,
                 const Flat& r, std::uint64_t seed, bool expect_nonzero = true) {
  const double rtol = sizeof(T) == 4 ? 1e-5 : 1e-9;
  RefParams P;
  Result got = run_runtime<T>(m, graphs, cfg, r, seed, &P);
  Result want = run_reference(m, graphs, std::move(P), r);
  Check c;
  c.expect_nonzero = expect_nonzero;
  for (const auto& [name, w] : want.out) compare(got.out.at(name), w, rtol, "output " + name, c);
  for (const auto& [name, w] : want.grad) compare(got.grad.at(name), w, rtol, "grad " + name, c);
  return c;
}

// ---------------------------------------------------------------------------
// Structure checks, so the tests provably cover what they claim.

int max_children(const std::vector<Graph>& graphs) {
  int mx = 0;
  for (const auto& g : graphs)
    for (int v = 0; v < g.num_vertices(); ++v) mx = std::max(mx, g.num_children(v));
  return mx;
}

bool has_shared_child(const std::vector<Graph>& graphs) {
  for (const auto& g : graphs) {
    std::vector<int> parents(g.num_vertices(), 0);
    for (int c : g.children)
      if (++parents[c] > 1) return true;
  }
  return false;
}

// Every configuration in float and double against the reference.
void check_model(const Model& m, const std::vector<Graph>& graphs, std::uint64_t seed,
                 const std::vector<RunConfig>& configs = kAllConfigs) {
  // Without edges, parameters used only by edge functions get no gradient.
  const bool expect_nonzero = max_children(graphs) > 0;
  const Flat r = loss_weights(m, graphs, static_cast<std::uint32_t>(seed));
  double worst_f = 0, worst_d = 0;
  for (const RunConfig& cfg : configs) {
    Check cf = check_once<float>(m, graphs, cfg, r, seed, expect_nonzero);
    EXPECT_TRUE(cf.ok) << m.name << " (float, " << cfg.describe()
                       << ") differs from the reference:\n"
                       << cf.failures;
    Check cd = check_once<double>(m, graphs, cfg, r, seed, expect_nonzero);
    EXPECT_TRUE(cd.ok) << m.name << " (double, " << cfg.describe()
                       << ") differs from the reference:\n"
                       << cd.failures;
    worst_f = std::max(worst_f, cf.worst);
    worst_d = std::max(worst_d, cd.worst);
  }
  std::printf(
      "  %s on %d graphs, %d vertices: worst norm-wise relative error float %.2e, double %.2e\n",
      m.name.c_str(), static_cast<int>(graphs.size()), total_vertices(graphs), worst_f, worst_d);
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
  check_model(rnn_model(4, 6, kVocab), graphs, 108, {{true, false}, {false, false}});
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
