// The harness shared by the reference-equivalence suites
// (test_reference_equivalence.cpp, test_cells_reference.cpp): a model is a
// vertex function plus, written separately, its per-vertex math on the tape of
// reference_tape.h. run_runtime executes the model batched (NaN-poisoned arena,
// Xavier weights, random biases and embeddings), run_reference one vertex at a
// time in topological order, both on the loss L = sum_v sum_outputs <r_v, out_v>;
// check_model compares every output and parameter gradient, norm-wise and
// elementwise, in float (1e-5) and double (1e-9) under every RunConfig.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/reference_tape.h"
#include "vertex/plan.h"

namespace copse::reftest {

// ---------------------------------------------------------------------------
// The reference side.

// Tape ids of one vertex's states and pushed outputs.
struct RefVertex {
  std::map<std::string, int> state, out;
};

// Computes vertex v of g on the tape; its children are already in `vs`.
using RefCell = std::function<void(Tape&, RefParams&, const scheduler::Graph&, int v,
                                   std::vector<RefVertex>& vs)>;

struct Model {
  std::string name;
  vertex::VertexFunction fn;
  std::string pull;  // the pull bound to the table "embed" [vocab, embed]; "" for none
  int vocab = 0, embed = 0;
  std::vector<std::string> outputs;
  RefCell reference;
};

// A model whose vertex function pulls `pull` from the table "embed"
// [vocab, embed] and pushes `outputs`; the caller sets its reference.
inline Model make_model(std::string name, vertex::VertexFunction fn, std::string pull, int vocab,
                        int embed, std::vector<std::string> outputs) {
  Model m;
  m.name = std::move(name);
  m.fn = std::move(fn);
  m.pull = std::move(pull);
  m.vocab = vocab;
  m.embed = embed;
  m.outputs = std::move(outputs);
  return m;
}

// A topological order (children first) by iterative depth-first search:
// 10,000-vertex chains must not overflow the stack. Throws on a cycle.
inline std::vector<int> topo_order(const scheduler::Graph& g) {
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

inline std::vector<int> children_of(const scheduler::Graph& g, int v) {
  std::vector<int> kids;
  for (int k = g.child_ptr[v]; k < g.child_ptr[v + 1]; ++k) kids.push_back(g.children[k]);
  return kids;
}

// The state `s` of v's k-th child, zeros (width w) if v has no such child.
inline int child_state(Tape& t, const scheduler::Graph& g, int v, int k,
                       const std::vector<RefVertex>& vs, const std::string& s, int w) {
  if (k >= g.num_children(v)) return t.zeros(w);
  return vs[g.children[g.child_ptr[v] + k]].state.at(s);
}

// v's embedding row, zeros (width e) when v has no input.
inline int input_row(Tape& t, RefParams& P, const scheduler::Graph& g, int v, int e) {
  return g.input[v] >= 0 ? t.param_row(P.at("embed"), g.input[v]) : t.zeros(e);
}

// ---------------------------------------------------------------------------
// Running both sides.

using Flat = std::map<std::string, Vec>;

struct Result {
  Flat out;   // per output: [sum of vertices, width], rows in (graph, vertex) order
  Flat grad;  // per parameter, as laid out in the store
};

inline int output_width(const Model& m, const std::string& name) {
  return m.fn.nodes[m.fn.outputs[m.fn.find_output(name)].value].width;
}

inline int total_vertices(const std::vector<scheduler::Graph>& graphs) {
  int n = 0;
  for (const auto& g : graphs) n += g.num_vertices();
  return n;
}

// The loss is L = sum over vertices and outputs of <r_v, out_v>; these are the r.
inline Flat loss_weights(const Model& m, const std::vector<scheduler::Graph>& graphs,
                         std::uint32_t seed) {
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
  bool strided_views = true;  // false: every gather copies (vertex::CompileOptions)
  bool dedup_pulls = true;    // false: input GEMMs run per row (scheduler::ExecOptions)
  bool optimize_programs = true;  // false: fused programs as derived (vertex::CompileOptions)
  bool zero_views = true;     // false: zero rows filled (scheduler::ExecOptions)
  std::string describe() const {
    return fmt::format("{}, {}{}{}{}{}", fuse ? "fused" : "unfused",
                       one_vertex_per_level ? "one vertex per level" : "batched",
                       strided_views ? "" : ", gathers copy (no strided views)",
                       dedup_pulls ? "" : ", input GEMMs per row",
                       optimize_programs ? "" : ", fused programs unoptimized",
                       zero_views ? "" : ", zeros filled");
  }
};

// The last configuration takes the plain paths: gather copies, input GEMMs
// per row instead of per distinct input id, fused programs as derived, zero
// rows filled.
inline const std::vector<RunConfig> kAllConfigs = {{true, false, true, true, true, true},
                                                   {false, false, true, true, true, true},
                                                   {true, true, true, true, true, true},
                                                   {true, false, false, false, false, false}};

// Fills the arena's memory with NaN and resets it, so every buffer the runtime
// takes from it starts as NaN: a row it forgets to write shows up as NaN.
template <typename T>
void poison(memory::Arena<T>& arena, std::size_t count) {
  T* p = arena.alloc(count);
  std::fill(p, p + count, std::numeric_limits<T>::quiet_NaN());
  arena.reset();
}

// Sets every bias (1-D parameter) of the store to U(-0.5, 0.5) drawn from rng,
// so the bias paths are exercised.
inline void randomize_biases(memory::ParamStore<double>& ps, std::mt19937& rng) {
  std::uniform_real_distribution<double> bias(-0.5, 0.5);
  for (int id = 0; id < ps.size(); ++id)
    if (ps.spec(id).shape.size() == 1)
      for (std::size_t k = 0; k < ps.numel(id); ++k) ps.param(id)[k] = bias(rng);
}

// (loss(x + eps) - loss(x - eps)) / 2 eps for the parameter x, which is left
// as it was.
template <typename Loss>
double central_difference(double& x, double eps, const Loss& loss) {
  const double saved = x;
  x = saved + eps;
  const double lp = loss();
  x = saved - eps;
  const double lm = loss();
  x = saved;
  return (lp - lm) / (2 * eps);
}

// The small SentimentModel configuration of the finite-difference checks.
inline models::SentimentConfig small_sentiment_config(int vocab) {
  models::SentimentConfig cfg;
  cfg.vocab = vocab;
  cfg.embed = 5;
  cfg.hidden = 4;
  cfg.classes = 3;
  cfg.embed_init = 0.5f;
  return cfg;
}

// Forward, loss gradient and backward on the runtime; *params receives the
// parameters it used (weights Xavier, biases and embeddings random), *stats
// (when given) the executor's statistics.
template <typename T>
Result run_runtime(const Model& m, const std::vector<scheduler::Graph>& graphs,
                   const RunConfig& cfg, const Flat& r, std::uint64_t seed, RefParams* params,
                   scheduler::ExecStats* stats = nullptr) {
  ops::CpuBackend<T> be(1);
  memory::ParamStore<T> ps(be);
  memory::Arena<T> arena(be);
  vertex::CompileOptions co;
  co.fuse = cfg.fuse;
  co.strided_views = cfg.strided_views;
  co.optimize_programs = cfg.optimize_programs;
  vertex::ExecPlan plan = vertex::compile(m.fn, co);
  if (!m.pull.empty()) ps.add({"embed", {m.vocab, m.embed}, memory::Init::Uniform, 0.5f, true});
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
  scheduler::ExecOptions eo;
  eo.dedup_pulls = cfg.dedup_pulls;
  eo.zero_views = cfg.zero_views;
  scheduler::Executor<T> ex(plan, be, ps, arena, eo);
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
  if (stats) *stats = ex.stats();
  return res;
}

// The same loss on the tape, one vertex at a time, with `reference` computing
// each vertex.
inline Result run_reference(const Model& m, const RefCell& reference,
                            const std::vector<scheduler::Graph>& graphs, RefParams P,
                            const Flat& r) {
  Tape t;
  std::vector<int> dots;
  Result res;
  size_t base = 0;  // first (graph, vertex) index of the graph
  for (const scheduler::Graph& g : graphs) {
    std::vector<RefVertex> vs(g.num_vertices());
    for (int v : topo_order(g)) reference(t, P, g, v, vs);
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
  double worst = 0;  // largest norm-wise relative error (NaN sticks)
  std::string worst_what;
  std::string failures;
  bool expect_nonzero = true;  // every tensor should be nonzero (false: single vertices, no edges)
};

// Norm-wise ||got - want|| / max(||want||, tiny) <= rtol, and elementwise
// |got - want| <= 10 rtol |want| + rtol max(||want||_inf, 1e-3); with
// c.expect_nonzero, an all-zero reference is a failure (the test would
// exercise nothing).
inline void compare(const Vec& got, const Vec& want, double rtol, const std::string& what,
                    Check& c) {
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

// One run of the runtime in T against the reference (m.reference, or
// *reference when given): every output and every parameter gradient.
template <typename T>
Check check_once(const Model& m, const std::vector<scheduler::Graph>& graphs,
                 const RunConfig& cfg, const Flat& r, std::uint64_t seed,
                 bool expect_nonzero = true, const RefCell* reference = nullptr) {
  const double rtol = sizeof(T) == 4 ? 1e-5 : 1e-9;
  RefParams P;
  Result got = run_runtime<T>(m, graphs, cfg, r, seed, &P);
  Result want = run_reference(m, reference ? *reference : m.reference, graphs, std::move(P), r);
  Check c;
  c.expect_nonzero = expect_nonzero;
  for (const auto& [name, w] : want.out) compare(got.out.at(name), w, rtol, "output " + name, c);
  for (const auto& [name, w] : want.grad) compare(got.grad.at(name), w, rtol, "grad " + name, c);
  return c;
}

// ---------------------------------------------------------------------------
// Structure checks, so the tests provably cover what they claim.

inline int max_children(const std::vector<scheduler::Graph>& graphs) {
  int mx = 0;
  for (const auto& g : graphs)
    for (int v = 0; v < g.num_vertices(); ++v) mx = std::max(mx, g.num_children(v));
  return mx;
}

inline bool has_shared_child(const std::vector<scheduler::Graph>& graphs) {
  for (const auto& g : graphs) {
    std::vector<int> parents(g.num_vertices(), 0);
    for (int c : g.children)
      if (++parents[c] > 1) return true;
  }
  return false;
}

// When an all-zero reference output or gradient fails the check: always, or
// only when the graphs have an edge (without edges, parameters used only by
// edge functions get no gradient).
enum class RequireNonzero { Always, IfEdges };

// Every configuration in float and double against the reference.
inline void check_model(const Model& m, const std::vector<scheduler::Graph>& graphs,
                        std::uint64_t seed, const std::vector<RunConfig>& configs = kAllConfigs,
                        RequireNonzero require_nonzero = RequireNonzero::IfEdges) {
  const bool expect_nonzero =
      require_nonzero == RequireNonzero::Always || max_children(graphs) > 0;
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
      "  %-15s %3d graphs %5d vertices: worst norm-wise relative error float %.2e double %.2e\n",
      m.name.c_str(), static_cast<int>(graphs.size()), total_vertices(graphs), worst_f, worst_d);
}

}  // namespace copse::reftest
