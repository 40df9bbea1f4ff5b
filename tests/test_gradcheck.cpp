// Finite-difference checks (double, central differences) of the runtime's
// own gradients: one tiny vertex function per primitive, and the Tree-LSTM
// cell with the softmax head through models::SentimentModel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <set>
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
#include "tests/reference_harness.h"
#include "vertex/builder.h"
#include "vertex/plan.h"

namespace copse::reftest {
namespace {

using scheduler::Graph;
using vertex::Value;
using vertex::VertexBuilder;

constexpr double kEps = 1e-5;   // central-difference step (1e-6: rounding noise ~5e-9 on L ~ 30)
constexpr double kRtol = 1e-6;  // |fd - analytic| <= kRtol * max(|fd|, |analytic|) + kAtol
constexpr double kAtol = 1e-8;
constexpr int kVocab = 10;
constexpr int kMaxEntries = 48;  // FD entries sampled per parameter

// Which entries of a parameter to perturb: all of them when few, else a
// sample; for an embedding table only entries of rows the batch uses.
std::vector<std::size_t> sample_entries(std::size_t numel, int row_width, const std::set<int>* rows,
                                        std::mt19937& rng) {
  std::vector<std::size_t> all;
  for (std::size_t k = 0; k < numel; ++k)
    if (!rows || rows->count(static_cast<int>(k / row_width))) all.push_back(k);
  if (all.size() > static_cast<std::size_t>(kMaxEntries)) {
    std::shuffle(all.begin(), all.end(), rng);
    all.resize(kMaxEntries);
  }
  return all;
}

std::set<int> used_rows(const std::vector<Graph>& graphs) {
  std::set<int> rows;
  for (const auto& g : graphs)
    for (int id : g.input)
      if (id >= 0) rows.insert(id);
  return rows;
}

// FD vs analytic over sampled entries of every parameter; `loss` evaluates
// the loss at the store's current values, `grad` is the analytic gradient.
struct FdReport {
  int checked = 0;
  double worst = 0;  // max over entries of |fd - an| / (kRtol max(|fd|, |an|) + kAtol): <= 1 passes
};

FdReport finite_difference_check(memory::ParamStore<double>& ps, const std::set<int>& rows,
                                 const std::function<double()>& loss, const std::string& what) {
  std::mt19937 rng(7);
  FdReport rep;
  for (int id = 0; id < ps.size(); ++id) {
    const auto& spec = ps.spec(id);
    const std::vector<double> an(ps.grad(id), ps.grad(id) + ps.numel(id));
    double* p = ps.param(id);
    for (std::size_t k :
         sample_entries(ps.numel(id), ps.row_width(id), spec.sparse_rows ? &rows : nullptr, rng)) {
      const double fd = central_difference(p[k], kEps, loss);
      const double err = std::abs(fd - an[k]);
      const double scale = std::max(std::abs(fd), std::abs(an[k]));
      EXPECT_LE(err, kRtol * scale + kAtol)
          << what << ": d loss / d " << spec.name << "[" << k << "]: finite difference " << fd
          << ", runtime " << an[k];
      rep.worst = std::max(rep.worst, err / (kRtol * scale + kAtol));
      ++rep.checked;
    }
  }
  return rep;
}

// The graphs every primitive runs on: an n-ary tree, a DAG with shared
// children, a chain and single vertices (with and without an input).
std::vector<Graph> check_graphs(int max_kids) {
  std::mt19937 rng(3);
  std::vector<Graph> graphs;
  graphs.push_back(random_nary_tree(12, max_kids, rng, kVocab));
  graphs.push_back(random_dag(10, max_kids, rng, kVocab));
  std::vector<int> chain_in;
  for (int i = 0; i < 5; ++i) chain_in.push_back(random_input(rng, kVocab, 0.2));
  graphs.push_back(scheduler::make_chain(5, chain_in));
  graphs.push_back(single_vertex(4));
  graphs.push_back(single_vertex(-1));
  return graphs;
}

// One vertex function, run by the executor in double over check_graphs();
// the loss is L = sum over rows and outputs of <r, out> with fixed random r.
// Every pull "p" reads the table "embed_p" [kVocab, width], whose entries are
// kept at least 0.2 away from 0 (no relu kinks on pulled values).
class PrimitiveCheck {
 public:
  PrimitiveCheck(const vertex::VertexFunction& fn, bool fuse)
      : be_(1), ps_(be_), arena_(be_), graphs_(check_graphs(std::max(fn.child_slots, 4))) {
    vertex::CompileOptions co;
    co.fuse = fuse;
    plan_ = vertex::compile(fn, co);
    for (const auto& p : plan_.fn.pulls)
      ps_.add({"embed_" + p.name, {kVocab, p.width}, memory::Init::Uniform, 1.0f, true});
    models::add_plan_params(plan_, ps_);
    ps_.finalize();
    ps_.init(11);
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> mag(0.2, 1.0), bias(-0.5, 0.5);
    std::bernoulli_distribution sign(0.5);
    for (int id = 0; id < ps_.size(); ++id) {
      double* p = ps_.param(id);
      const bool table = ps_.spec(id).sparse_rows;
      const bool is_bias = ps_.spec(id).shape.size() == 1;
      for (std::size_t k = 0; k < ps_.numel(id); ++k) {
        if (table) p[k] = sign(rng) ? mag(rng) : -mag(rng);
        if (is_bias) p[k] = bias(rng);
      }
    }
    ex_ = std::make_unique<scheduler::Executor<double>>(plan_, be_, ps_, arena_);
    for (const auto& p : plan_.fn.pulls) ex_->bind_pull(p.name, "embed_" + p.name);
    scheduler::BatchOptions bo;
    bo.num_slots = plan_.fn.child_slots;
    batch_ = scheduler::make_batch(graphs_, bo);
    poison(arena_, std::size_t(1) << 18);
    std::uniform_real_distribution<double> u(-1, 1);
    for (const auto& o : plan_.fn.outputs) {
      std::vector<double> r(static_cast<std::size_t>(batch_.num_rows) * ex_->output_width(o.name));
      for (double& x : r) x = u(rng);
      r_.push_back(std::move(r));
    }
  }

  double loss() {
    arena_.reset();
    ex_->forward(batch_);
    double l = 0;
    for (std::size_t o = 0; o < r_.size(); ++o) {
      const auto& name = plan_.fn.outputs[o].name;
      const int w = ex_->output_width(name);
      auto out = ex_->output(name);
      for (int row = 0; row < batch_.num_rows; ++row)
        for (int j = 0; j < w; ++j)
          l += r_[o][static_cast<std::size_t>(row) * w + j] * out.ptr[row * out.ld + j];
    }
    return l;
  }

  void gradients() {
    arena_.reset();
    ps_.zero_grads();
    ex_->forward(batch_);
    for (std::size_t o = 0; o < r_.size(); ++o) {
      const auto& name = plan_.fn.outputs[o].name;
      ex_->set_push_grad(name, r_[o].data(), ex_->output_width(name));
    }
    ex_->backward();
  }

  FdReport run(const std::string& what) {
    gradients();
    // Every parameter must get some gradient, or the check proves nothing.
    for (int id = 0; id < ps_.size(); ++id) {
      double n2 = 0;
      for (std::size_t k = 0; k < ps_.numel(id); ++k) n2 += ps_.grad(id)[k] * ps_.grad(id)[k];
      EXPECT_TRUE(std::isfinite(n2) && n2 > 0)
          << what << ": parameter " << ps_.spec(id).name << " has a zero or non-finite gradient";
    }
    return finite_difference_check(
        ps_, used_rows(graphs_), [this] { return loss(); }, what);
  }

 private:
  ops::CpuBackend<double> be_;
  memory::ParamStore<double> ps_;
  memory::Arena<double> arena_;
  std::vector<Graph> graphs_;
  vertex::ExecPlan plan_;
  std::unique_ptr<scheduler::Executor<double>> ex_;
  scheduler::GraphBatch batch_;
  std::vector<std::vector<double>> r_;  // per output: [N, width] dL/d(out) in row order
};

constexpr int W = 4;  // state width

// Builds a function: x = pull("x", x_width), g = gather(0, "h"); body returns
// h (width W), which is scattered and pushed.
using Body = std::function<Value(VertexBuilder&, Value x, Value g)>;

vertex::VertexFunction make_fn(const std::string& name, int x_width, int slots, const Body& body) {
  VertexBuilder v(name, slots);
  v.state("h", W);
  Value x = v.pull("x", x_width);
  Value g = v.gather(0, "h");
  Value h = body(v, x, g);
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

void check_primitive(const std::string& name, const vertex::VertexFunction& fn) {
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fmt::format("{} ({})", name, fuse ? "fused" : "unfused"));
    PrimitiveCheck pc(fn, fuse);
    FdReport rep = pc.run(name);
    EXPECT_GT(rep.checked, 0);
    std::printf("  %-14s %-8s %4d entries, worst FD error / tolerance %.2e\n", name.c_str(),
                fuse ? "fused" : "unfused", rep.checked, rep.worst);
  }
}

TEST(GradCheck, Add) {
  check_primitive("add",
                  make_fn("add", W, 1, [](VertexBuilder&, Value x, Value g) { return x + g; }));
}

TEST(GradCheck, Sub) {
  check_primitive("sub",
                  make_fn("sub", W, 1, [](VertexBuilder&, Value x, Value g) { return x - g; }));
}

TEST(GradCheck, Mul) {
  // h = x * g + x (x alone would zero h at every leaf and so everywhere)
  check_primitive("mul",
                  make_fn("mul", W, 1, [](VertexBuilder&, Value x, Value g) { return x * g + x; }));
}

TEST(GradCheck, Sigmoid) {
  check_primitive("sigmoid", make_fn("sigmoid", W, 1, [](VertexBuilder&, Value x, Value g) {
                    return sigmoid(x + g);
                  }));
}

TEST(GradCheck, Tanh) {
  check_primitive(
      "tanh", make_fn("tanh", W, 1, [](VertexBuilder&, Value x, Value g) { return tanh(x - g); }));
}

TEST(GradCheck, Relu) {
  // Pulled entries are >= 0.2 away from 0: no kink within eps.
  check_primitive(
      "relu", make_fn("relu", W, 1, [](VertexBuilder&, Value x, Value g) { return relu(x) + g; }));
}

TEST(GradCheck, SliceAndSplit) {
  // x [3W] = [a b c]; h = tanh(a + g) * b + x[5, 5+W)
  check_primitive("slice", make_fn("slice", 3 * W, 1, [](VertexBuilder& v, Value x, Value g) {
                    auto [a, b, c] = v.split<3>(x);
                    (void)c;
                    return tanh(a + g) * b + v.slice(x, 5, W);
                  }));
}

TEST(GradCheck, Concat) {
  // h = tanh(C [x; g] + b), and a pushed concat of the state with the input.
  VertexBuilder v("concat", 1);
  v.state("h", W);
  Value x = v.pull("x", W);
  Value h = tanh(v.linear({v.concat({x, v.gather(0, "h")})}, W, "C"));
  v.scatter("h", h);
  v.push("h", h);
  v.push("cat", v.concat({h, x, sigmoid(h)}));
  check_primitive("concat", v.build());
}

TEST(GradCheck, LinearWithSeveralInputsAndBias) {
  // h = tanh(L [x; g0; g1] + b) ; y = Y h (no bias)
  VertexBuilder v("linear", 2);
  v.state("h", W);
  Value x = v.pull("x", 3);
  Value h = tanh(v.linear({x, v.gather(0, "h"), v.gather(1, "h")}, W, "L"));
  v.scatter("h", h);
  v.push("h", h);
  v.push("y", v.linear({h}, 3, "Y", /*bias=*/false));
  check_primitive("linear", v.build());
}

TEST(GradCheck, GatherSlots) {
  // h = tanh(x + g0 - g1 + g2 * x)
  check_primitive("gather", make_fn("gather", W, 3, [](VertexBuilder& v, Value x, Value g0) {
                    return tanh(x + g0 - v.gather(1, "h") + v.gather(2, "h") * x);
                  }));
}

TEST(GradCheck, GatherSum) {
  check_primitive("gather_sum", make_fn("gather_sum", W, 1, [](VertexBuilder& v, Value x, Value) {
                    return tanh(x + v.gather_sum("h"));
                  }));
}

TEST(GradCheck, GatherMean) {
  check_primitive("gather_mean", make_fn("gather_mean", W, 1, [](VertexBuilder& v, Value x, Value) {
                    return tanh(x + v.gather_mean("h"));
                  }));
}

// h = tanh(x + reduce_k tanh(E [h_k; P x] + b) * h_k): edge_child,
// edge_parent (of a value used only on edges, so its gradient comes from the
// edges alone), a per-edge linear with a bias, reduced by sum or mean.
vertex::VertexFunction edge_fn(vertex::Reduce reduce) {
  return make_fn("edge", W, 1, [reduce](VertexBuilder& v, Value x, Value) {
    Value px = v.linear({x}, W, "P", /*bias=*/false);
    Value e = v.over_children(
        [&](vertex::EdgeScope& s) {
          Value hk = s.child("h");
          return tanh(v.linear({hk, s.parent(px)}, W, "E")) * hk;
        },
        reduce);
    return tanh(x + e);
  });
}

TEST(GradCheck, EdgeFunctionSum) { check_primitive("edge_sum", edge_fn(vertex::Reduce::Sum)); }

TEST(GradCheck, EdgeFunctionMean) { check_primitive("edge_mean", edge_fn(vertex::Reduce::Mean)); }

TEST(GradCheck, PullFromTwoTables) {
  // h = tanh(x * z + g): two pulls, two embedding tables.
  check_primitive("pull", make_fn("pull", W, 1, [](VertexBuilder& v, Value x, Value g) {
                    return tanh(x * v.pull("z", W) + g);
                  }));
}

// The Tree-LSTM cell with the softmax head: train_batch's gradients against
// finite differences of evaluate_batch's summed loss.
void check_sentiment(bool fuse) {
  SCOPED_TRACE(fuse ? "fused" : "unfused");
  ops::CpuBackend<double> be(1);
  models::SentimentConfig cfg = small_sentiment_config(kVocab);
  cfg.fuse = fuse;
  models::SentimentModel<double> model(models::tree_lstm_cell(cfg.embed, cfg.hidden), cfg, be);
  auto& ps = model.params();
  ps.init(21);
  std::mt19937 rng(22);
  randomize_biases(ps, rng);

  std::vector<Graph> graphs;
  for (int leaves : {1, 3, 6, 9}) graphs.push_back(random_binary_tree(leaves, rng, kVocab, false));
  std::uniform_int_distribution<int> label(-1, cfg.classes - 1);
  for (auto& g : graphs)
    for (int& l : g.label) l = label(rng);
  graphs.push_back(single_vertex(2));
  graphs.back().label[0] = 1;
  scheduler::GraphBatch batch = scheduler::make_batch(graphs, {2});

  poison(model.arena(), std::size_t(1) << 18);
  ps.zero_grads();
  model.train_batch(batch, 1.0);
  FdReport rep = finite_difference_check(
      ps, used_rows(graphs),
      [&] {
        models::EvalCounts counts;
        model.evaluate_batch(batch, counts);
        return counts.loss;
      },
      "tree_lstm + softmax");
  EXPECT_GT(rep.checked, 100);
  std::printf("  tree_lstm+softmax %-8s %4d entries, worst FD error / tolerance %.2e\n",
              fuse ? "fused" : "unfused", rep.checked, rep.worst);
}

TEST(GradCheck, TreeLstmWithSoftmaxHead) {
  check_sentiment(true);
  check_sentiment(false);
}

}  // namespace
}  // namespace copse::reftest
