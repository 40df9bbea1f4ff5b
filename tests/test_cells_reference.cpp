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
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "tests/reference_tape.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::Graph;

constexpr int kVocab = 30;

// ---------------------------------------------------------------------------
// The reference: per-vertex math written from the equations in cells.h.

struct RefVertex {
  std::map<std::string, int> state;
  int out = -1;  // the pushed "h"
};

using RefCell = std::function<void(Tape&, RefParams&, const Graph&, int v, std::vector<RefVertex>&)>;

struct Cell {
  std::string name;
  vertex::VertexFunction fn;
  int embed = 0, hidden = 0;
  RefCell reference;
};

std::vector<int> kids_of(const Graph& g, int v) {
  return {g.children.begin() + g.child_ptr[v], g.children.begin() + g.child_ptr[v + 1]};
}

int embed_row(Tape& t, RefParams& P, const Graph& g, int v, int e) {
  return g.input[v] >= 0 ? t.param_row(P.at("embed"), g.input[v]) : t.zeros(e);
}

// State s of v's child in slot k; zeros when there is none.
int slot_state(Tape& t, const Graph& g, int v, int k, const std::vector<RefVertex>& vs,
               const std::string& s, int w) {
  if (k >= g.num_children(v)) return t.zeros(w);
  return vs[g.children[g.child_ptr[v] + k]].state.at(s);
}

int part(Tape& t, int a, int k, int h) { return t.slice(a, k * h, h); }
int one_minus(Tape& t, int a) { return t.sub(t.constant(Vec(t.width(a), 1.0)), a); }

// Children-first order without recursion (chains of 2,000 vertices).
std::vector<int> topo_order(const Graph& g) {
  const int n = g.num_vertices();
  std::vector<char> seen(n, 0);
  std::vector<int> order;
  std::vector<std::pair<int, int>> stack;
  for (int root = 0; root < n; ++root) {
    if (seen[root]) continue;
    seen[root] = 1;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      auto& [v, k] = stack.back();
      if (k < g.num_children(v)) {
        int c = g.children[g.child_ptr[v] + k++];
        if (!seen[c]) {
          seen[c] = 1;
          stack.push_back({c, 0});
        }
      } else {
        order.push_back(v);
        stack.pop_back();
      }
    }
  }
  return order;
}

Cell child_sum_cell(int E, int H) {
  Cell m{"child-sum-lstm", models::child_sum_tree_lstm(E, H), E, H, {}};
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = embed_row(t, P, g, v, E);
    std::vector<int> hk, terms;
    for (int c : kids_of(g, v)) hk.push_back(vs[c].state.at("h"));
    int htil = t.sum(hk, H);
    int gx = t.linear(P.at("W"), nullptr, {x});
    int gh = t.linear(P.at("U"), &P.at("U.b"), {htil});
    for (int c : kids_of(g, v)) {
      int f = t.sigmoid(
          t.add(part(t, gx, 3, H), t.linear(P.at("Uf"), &P.at("Uf.b"), {vs[c].state.at("h")})));
      terms.push_back(t.mul(f, vs[c].state.at("c")));
    }
    int i = t.sigmoid(t.add(part(t, gx, 0, H), part(t, gh, 0, H)));
    int o = t.sigmoid(t.add(part(t, gx, 1, H), part(t, gh, 1, H)));
    int u = t.tanh(t.add(part(t, gx, 2, H), part(t, gh, 2, H)));
    terms.push_back(t.mul(i, u));
    int c = t.sum(terms, H);
    int h = t.mul(o, t.tanh(c));
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = h;
  };
  return m;
}

Cell tree_gru_cell(int E, int H, int N) {
  Cell m{"tree-gru", models::nary_tree_gru(E, H, N), E, H, {}};
  m.reference = [E, H, N](Tape& t, RefParams& P, const Graph& g, int v,
                          std::vector<RefVertex>& vs) {
    int x = embed_row(t, P, g, v, E);
    std::vector<int> hk, rh, all;
    for (int k = 0; k < N; ++k) hk.push_back(slot_state(t, g, v, k, vs, "h", H));
    for (int c : kids_of(g, v)) all.push_back(vs[c].state.at("h"));
    int hbar = all.empty() ? t.zeros(H) : t.scale(t.sum(all, H), 1.0 / all.size());
    int gx = t.linear(P.at("W"), nullptr, {x});
    int gh = t.linear(P.at("U"), &P.at("U.b"), hk);
    for (int k = 0; k < N; ++k)
      rh.push_back(t.mul(t.sigmoid(t.add(part(t, gx, k, H), part(t, gh, k, H))), hk[k]));
    int z = t.sigmoid(t.add(part(t, gx, N, H), part(t, gh, N, H)));
    int cand = t.tanh(t.add(part(t, gx, N + 1, H), t.linear(P.at("Uh"), &P.at("Uh.b"), rh)));
    int h = t.add(t.mul(z, hbar), t.mul(one_minus(t, z), cand));
    vs[v].state = {{"h", h}};
    vs[v].out = h;
  };
  return m;
}

Cell tree_fc_cell(int E, int H, bool use_relu) {
  Cell m{use_relu ? "tree-fc-relu" : "tree-fc", models::tree_fc(E, H, use_relu), E, H, {}};
  m.reference = [E, H, use_relu](Tape& t, RefParams& P, const Graph& g, int v,
                                 std::vector<RefVertex>& vs) {
    std::vector<int> hk;
    for (int c : kids_of(g, v)) hk.push_back(vs[c].state.at("h"));
    int pre = t.linear(P.at("W"), &P.at("W.b"), {embed_row(t, P, g, v, E), t.sum(hk, H)});
    int h = use_relu ? t.relu(pre) : t.tanh(pre);
    vs[v].state = {{"h", h}};
    vs[v].out = h;
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
  Cell m{"lstm", models::seq_lstm(E, H), E, H, {}};
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    auto [h, c] = ref_lstm(t, P, embed_row(t, P, g, v, E), slot_state(t, g, v, 0, vs, "h", H),
                           slot_state(t, g, v, 0, vs, "c", H), H, "W", "U");
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = h;
  };
  return m;
}

Cell lstm2_cell(int E, int H) {
  Cell m{"lstm2", models::seq_lstm2(E, H), E, H, {}};
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    auto [h1, c1] = ref_lstm(t, P, embed_row(t, P, g, v, E), slot_state(t, g, v, 0, vs, "h1", H),
                             slot_state(t, g, v, 0, vs, "c1", H), H, "W1", "U1");
    auto [h2, c2] = ref_lstm(t, P, h1, slot_state(t, g, v, 0, vs, "h2", H),
                             slot_state(t, g, v, 0, vs, "c2", H), H, "W2", "U2");
    vs[v].state = {{"h1", h1}, {"c1", c1}, {"h2", h2}, {"c2", c2}};
    vs[v].out = h2;
  };
  return m;
}

Cell gru_cell(int E, int H) {
  Cell m{"gru", models::seq_gru(E, H), E, H, {}};
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int hp = slot_state(t, g, v, 0, vs, "h", H);
    int gx = t.linear(P.at("W"), &P.at("W.b"), {embed_row(t, P, g, v, E)});
    int gh = t.linear(P.at("U"), &P.at("U.b"), {hp});
    int z = t.sigmoid(t.add(part(t, gx, 0, H), part(t, gh, 0, H)));
    int r = t.sigmoid(t.add(part(t, gx, 1, H), part(t, gh, 1, H)));
    int n = t.tanh(t.add(part(t, gx, 2, H), t.mul(r, part(t, gh, 2, H))));
    int h = t.add(t.mul(one_minus(t, z), n), t.mul(z, hp));
    vs[v].state = {{"h", h}};
    vs[v].out = h;
  };
  return m;
}

Cell dag_gated_cell(int E, int H) {
  Cell m{"dag-gated", models::dag_gated(E, H), E, H, {}};
  m.reference = [E, H](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    int x = embed_row(t, P, g, v, E);
    int px = t.linear(P.at("P"), nullptr, {x});
    std::vector<int> msgs;
    for (int c : kids_of(g, v)) {
      int hk = vs[c].state.at("h");
      msgs.push_back(
          t.mul(t.sigmoid(t.add(px, t.linear(P.at("Ue"), &P.at("Ue.b"), {hk}))), hk));
    }
    int mm = msgs.empty() ? t.zeros(H) : t.scale(t.sum(msgs, H), 1.0 / msgs.size());
    int ga = t.linear(P.at("W"), &P.at("W.b"), {x, mm});
    int gate = t.sigmoid(part(t, ga, 0, H));
    int h = t.add(t.mul(gate, t.tanh(part(t, ga, 1, H))), t.mul(one_minus(t, gate), mm));
    vs[v].state = {{"h", h}};
    vs[v].out = h;
  };
  return m;
}

// ---------------------------------------------------------------------------
// Running both sides on L = sum_v <r_v, h_v> with fixed random r.

struct Result {
  Vec out;                         // [sum of vertices, H], (graph, vertex) order
  std::map<std::string, Vec> grad;  // per parameter
};

int total_vertices(const std::vector<Graph>& graphs) {
  int n = 0;
  for (const auto& g : graphs) n += g.num_vertices();
  return n;
}

template <typename T>
void poison(memory::Arena<T>& arena, std::size_t count) {
  T* p = arena.alloc(count);
  std::fill(p, p + count, std::numeric_limits<T>::quiet_NaN());
  arena.reset();
}

struct RunConfig {
  bool fuse = true;
  bool one_vertex_per_level = false;
};

template <typename T>
Result run_runtime(const Cell& m, const std::vector<Graph>& graphs, const RunConfig& cfg,
                   const Vec& r, std::uint64_t seed, RefParams* params) {
  ops::CpuBackend<T> be(1);
  memory::ParamStore<T> ps(be);
  memory::Arena<T> arena(be);
  vertex::CompileOptions co;
  co.fuse = cfg.fuse;
  vertex::ExecPlan plan = vertex::compile(m.fn, co);
  ps.add({"embed", {kVocab, m.embed}, memory::Init::Uniform, 0.5f, true});
  models::add_plan_params(plan, ps);
  ps.finalize();
  ps.init(seed);
  for (const auto& p : plan.fn.params) {  // nonzero biases, so their paths are exercised
    if (!p.is_bias) continue;
    const int id = ps.id(p.name);
    std::mt19937_64 rng(seed * 7919 + std::hash<std::string>{}(p.name));
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    for (std::size_t k = 0; k < ps.numel(id); ++k) ps.param(id)[k] = static_cast<T>(u(rng));
  }
  scheduler::Executor<T> ex(plan, be, ps, arena);
  ex.bind_pull("word", "embed");
  scheduler::BatchOptions bo;
  bo.num_slots = m.fn.child_slots;
  bo.one_vertex_per_level = cfg.one_vertex_per_level;
  scheduler::GraphBatch batch = scheduler::make_batch(graphs, bo);
  std::size_t widths = 0;
  for (const auto& nd : plan.fn.nodes) widths += nd.width;
  poison(arena, static_cast<std::size_t>(batch.num_rows + batch.num_edges + 1) * widths * 4);
  ps.zero_grads();
  ex.forward(batch);
  const int H = m.hidden, nv = total_vertices(graphs);
  auto view = ex.output("h");
  Result res;
  res.out.resize(static_cast<size_t>(nv) * H);
  std::vector<T> d(static_cast<size_t>(batch.num_rows) * H);
  for (int idx = 0; idx < nv; ++idx) {
    const long row = batch.row_of_vertex[idx];
    for (int j = 0; j < H; ++j) {
      res.out[static_cast<size_t>(idx) * H + j] = view.ptr[row * view.ld + j];
      d[row * H + j] = static_cast<T>(r[static_cast<size_t>(idx) * H + j]);
    }
  }
  ex.set_push_grad("h", d.data(), H);
  ex.backward();
  for (int id = 0; id < ps.size(); ++id)
    res.grad[ps.spec(id).name] = Vec(ps.grad(id), ps.grad(id) + ps.numel(id));
  *params = RefParams::from_store(ps);
  return res;
}

Result run_reference(const Cell& m, const std::vector<Graph>& graphs, RefParams P, const Vec& r) {
  Tape t;
  std::vector<int> dots;
  Result res;
  size_t base = 0;
  const int H = m.hidden;
  for (const Graph& g : graphs) {
    std::vector<RefVertex> vs(g.num_vertices());
    for (int v : topo_order(g)) m.reference(t, P, g, v, vs);
    for (int v = 0; v < g.num_vertices(); ++v) {
      const Vec& h = t.value(vs[v].out);
      res.out.insert(res.out.end(), h.begin(), h.end());
      auto rb = r.begin() + static_cast<long>(base + v) * H;
      dots.push_back(t.dot(vs[v].out, Vec(rb, rb + H)));
    }
    base += g.num_vertices();
  }
  t.backward(t.sum(dots, 1));
  for (const auto& [name, p] : P.all()) res.grad[name] = p.grad;
  return res;
}

struct Check {
  bool ok = true;
  double worst = 0;
  std::string failures;
};

// Norm-wise ||got - want|| / ||want|| <= rtol and elementwise
// |got - want| <= 10 rtol |want| + rtol max(||want||_inf, 1e-3); an all-zero
// reference is a failure (the test would exercise nothing).
void compare(const Vec& got, const Vec& want, double rtol, const std::string& what, Check& c) {
  if (got.size() != want.size()) {
    c.ok = false;
    c.failures += fmt::format("  {}: {} values, reference {}\n", what, got.size(), want.size());
    return;
  }
  double diff2 = 0, want2 = 0, want_inf = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff2 += (got[i] - want[i]) * (got[i] - want[i]);
    want2 += want[i] * want[i];
    want_inf = std::max(want_inf, std::abs(want[i]));
  }
  const double rel = std::sqrt(diff2) / std::max(std::sqrt(want2), 1e-300);
  if (!(rel <= c.worst)) c.worst = rel;  // NaN sticks
  const double atol = rtol * std::max(want_inf, 1e-3);
  size_t bad = 0, worst_i = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    const double tol = 10 * rtol * std::abs(want[i]) + atol;
    if (!(err <= tol)) {
      ++bad;
      if (std::isnan(err) || err / tol > worst_excess) {
        worst_excess = std::isnan(err) ? 1e300 : err / tol;
        worst_i = i;
      }
    }
  }
  if (!(rel <= rtol) || bad > 0) {
    c.ok = false;
    c.failures += fmt::format(
        "  {}: relative error {:.3g} (tolerance {:.1g}); {} of {} elements off, worst [{}]: "
        "runtime {:.10g} reference {:.10g}\n",
        what, rel, rtol, bad, got.size(), worst_i, got[worst_i], want[worst_i]);
  }
  if (want2 == 0) {
    c.ok = false;
    c.failures += fmt::format("  {}: the reference is all zeros\n", what);
  }
}

template <typename T>
Check check_once(const Cell& m, const std::vector<Graph>& graphs, const RunConfig& cfg,
                 const Vec& r, std::uint64_t seed, const RefCell* reference = nullptr) {
  const double rtol = sizeof(T) == 4 ? 1e-5 : 1e-9;
  RefParams P;
  Result got = run_runtime<T>(m, graphs, cfg, r, seed, &P);
  Cell ref = m;
  if (reference) ref.reference = *reference;
  Result want = run_reference(ref, graphs, std::move(P), r);
  Check c;
  compare(got.out, want.out, rtol, "output h", c);
  for (const auto& [name, w] : want.grad) compare(got.grad.at(name), w, rtol, "grad " + name, c);
  return c;
}

Vec loss_weights(const Cell& m, const std::vector<Graph>& graphs, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Vec r(static_cast<size_t>(total_vertices(graphs)) * m.hidden);
  for (double& x : r) x = u(rng);
  return r;
}

const std::vector<RunConfig> kAllConfigs = {{true, false}, {false, false}, {true, true}};

void check_cell(const Cell& m, const std::vector<Graph>& graphs, std::uint64_t seed,
                const std::vector<RunConfig>& configs = kAllConfigs) {
  const Vec r = loss_weights(m, graphs, static_cast<std::uint32_t>(seed));
  double worst_f = 0, worst_d = 0;
  for (const RunConfig& cfg : configs) {
    const std::string how = fmt::format("{}, {}", cfg.fuse ? "fused" : "unfused",
                                        cfg.one_vertex_per_level ? "one vertex per level" : "batched");
    Check cf = check_once<float>(m, graphs, cfg, r, seed);
    EXPECT_TRUE(cf.ok) << m.name << " (float, " << how << ") differs:\n" << cf.failures;
    Check cd = check_once<double>(m, graphs, cfg, r, seed);
    EXPECT_TRUE(cd.ok) << m.name << " (double, " << how << ") differs:\n" << cd.failures;
    worst_f = std::max(worst_f, cf.worst);
    worst_d = std::max(worst_d, cd.worst);
  }
  std::printf("  %-15s %3d graphs %5d vertices: worst relative error float %.2e double %.2e\n",
              m.name.c_str(), static_cast<int>(graphs.size()), total_vertices(graphs), worst_f,
              worst_d);
}

// ---------------------------------------------------------------------------
// Graph families, with checks that they cover what the tests claim.

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
  std::mt19937 rng(seed);
  std::vector<Graph> graphs;
  for (int n : lengths) {
    std::vector<int> in(n);
    for (int& x : in) x = random_input(rng, kVocab, 0.05);
    graphs.push_back(scheduler::make_chain(n, in));
  }
  return graphs;
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

TEST(CellsReference, SequenceCellsOnChainsOf2000) {
  const auto graphs = chains(32, {2000, 7});
  const std::vector<RunConfig> batched = {{true, false}, {false, false}};
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
  RefCell wrong = [](Tape& t, RefParams& P, const Graph& g, int v, std::vector<RefVertex>& vs) {
    const int E = 4, H = 5;
    int x = embed_row(t, P, g, v, E);
    std::vector<int> hk, terms;
    for (int c : kids_of(g, v)) hk.push_back(vs[c].state.at("h"));
    int gx = t.linear(P.at("W"), nullptr, {x});
    int gh = t.linear(P.at("U"), &P.at("U.b"), {t.sum(hk, H)});
    for (int c : kids_of(g, v)) terms.push_back(vs[c].state.at("c"));
    int i = t.sigmoid(t.add(part(t, gx, 0, H), part(t, gh, 0, H)));
    int o = t.sigmoid(t.add(part(t, gx, 1, H), part(t, gh, 1, H)));
    int u = t.tanh(t.add(part(t, gx, 2, H), part(t, gh, 2, H)));
    terms.push_back(t.mul(i, u));
    int c = t.sum(terms, H);
    int h = t.mul(o, t.tanh(c));
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = h;
  };
  const auto graphs = nary_trees(33);
  const Vec r = loss_weights(m, graphs, 33);
  EXPECT_FALSE((check_once<float>(m, graphs, {}, r, 33, &wrong).ok));
  EXPECT_FALSE((check_once<double>(m, graphs, {}, r, 33, &wrong).ok));
}

// ---------------------------------------------------------------------------
// Finite differences in double: each cell with the softmax head through
// SentimentModel (train_batch's gradients vs evaluate_batch's loss).

constexpr double kEps = 1e-5, kRtol = 1e-6, kAtol = 1e-8;

void fd_check(const std::string& name, const std::vector<Graph>& shapes) {
  SCOPED_TRACE(name);
  ops::CpuBackend<double> be(1);
  models::SentimentConfig cfg;
  cfg.vocab = kVocab;
  cfg.embed = 5;
  cfg.hidden = 4;
  cfg.classes = 3;
  cfg.embed_init = 0.5f;
  vertex::VertexFunction fn = models::make_cell(name, cfg.embed, cfg.hidden);
  models::SentimentModel<double> model(fn, cfg, be);
  auto& ps = model.params();
  ps.init(41);
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> bias(-0.5, 0.5);
  for (int id = 0; id < ps.size(); ++id)
    if (ps.spec(id).shape.size() == 1)
      for (std::size_t k = 0; k < ps.numel(id); ++k) ps.param(id)[k] = bias(rng);
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
      const double saved = p[k];
      p[k] = saved + kEps;
      const double lp = loss();
      p[k] = saved - kEps;
      const double lm = loss();
      p[k] = saved;
      const double fd = (lp - lm) / (2 * kEps);
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
