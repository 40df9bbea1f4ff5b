// A regression model on DAGs the program builds itself: arithmetic
// expressions whose subexpressions may be shared (a vertex with several
// parents). Each vertex is a constant or an operator on its two children:
//   avg(a, b) = (a + b) / 2,   half_diff(a, b) = (a - b) / 2,   mul(a, b) = a * b
// so every value stays in [-1, 1]. Each vertex reads dense features (one-hot
// kind + its constant) and is trained to predict its own value (a target per
// vertex, squared error).
//
// Usage: expression_dag [STEPS=400] [THREADS=1]
// Prints the test mean squared error before and after training.
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "models/graphs.h"
#include "models/model.h"
#include "models/trainer.h"
#include "vertex/builder.h"

using namespace copse;

constexpr int kFeatures = 5;  // [constant, avg, half_diff, mul] one-hot, the constant's value

// A random expression DAG of `ops` operators over `leaves` constants.
Example make_expression(int leaves, int ops, std::mt19937& rng, const std::string& name) {
  std::uniform_real_distribution<float> value(-1.f, 1.f);
  std::vector<float> val, features;
  std::vector<std::pair<int, int>> edges;  // (parent, child)
  auto add = [&](int kind, float v) {
    std::vector<float> f(kFeatures, 0.f);
    f[kind] = 1.f;
    if (kind == 0) f[4] = v;
    features.insert(features.end(), f.begin(), f.end());
    val.push_back(v);
    return static_cast<int>(val.size()) - 1;
  };
  for (int i = 0; i < leaves; ++i) add(0, value(rng));
  for (int k = 0; k < ops; ++k) {
    // The newest vertex is always an operand, so the last one is the only root;
    // the other operand is any earlier vertex (shared subexpressions).
    const int n = static_cast<int>(val.size());
    const int a = n - 1, b = static_cast<int>(rng() % (n - 1));
    const int kind = 1 + static_cast<int>(rng() % 3);
    const float v = kind == 1 ? (val[a] + val[b]) / 2 : kind == 2 ? (val[a] - val[b]) / 2
                                                                   : val[a] * val[b];
    const int p = add(kind, v);
    edges.push_back({p, a});
    edges.push_back({p, b});
  }
  Example e;
  e.graph = dag_from_edges(static_cast<int>(val.size()), edges, name);
  e.features = std::move(features);
  e.targets = val;  // one target of width 1 per vertex
  return e;
}

// h = tanh(W [x; h_0; h_1] + b), then a second layer: the operator needs a
// product of its operands, which one tanh layer only approximates.
vertex::VertexFunction expression_cell(int hidden) {
  vertex::VertexBuilder v("expression_cell", /*child_slots=*/2);
  v.state("h", hidden);
  auto x = v.pull("x", kFeatures);
  auto h0 = v.gather(0, "h"), h1 = v.gather(1, "h");
  auto a = tanh(v.linear({x, h0, h1}, 2 * hidden, "W1"));
  auto [g, m] = v.split<2>(v.linear({a, x}, 2 * hidden, "W2"));
  auto h = sigmoid(g) * tanh(m);
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

int main(int argc, char** argv) try {
  const int steps = argc > 1 ? std::stoi(argv[1]) : 400;
  const int threads = argc > 2 ? std::stoi(argv[2]) : 1;
  std::mt19937 rng(3);
  std::vector<Example> train, test;
  for (int i = 0; i < 2000; ++i)
    train.push_back(make_expression(2 + i % 3, 1 + i % 6, rng, "train:" + std::to_string(i)));
  for (int i = 0; i < 300; ++i)
    test.push_back(make_expression(2 + i % 3, 1 + i % 6, rng, "test:" + std::to_string(i)));

  ModelConfig cfg;
  cfg.features = kFeatures;
  cfg.hidden = 64;
  cfg.head = Head::squared(1);
  cfg.threads = threads;
  Model model(expression_cell(cfg.hidden), cfg);
  TrainerOptions opts;
  opts.optimizer = optimizer("adam", 3e-3f);
  opts.threads = threads;
  Trainer trainer(model, opts);

  std::vector<const Example*> test_set;
  for (const auto& e : test) test_set.push_back(&e);
  const double before = trainer.evaluate(test_set).mse();
  const size_t batch = 32;
  for (int step = 0; step < steps; ++step) {
    std::vector<const Example*> b;
    for (size_t k = 0; k < batch; ++k) b.push_back(&train[(step * batch + k) % train.size()]);
    StepResult r = trainer.step(b);
    if (!r.taken) {
      std::fprintf(stderr, "step %d: %s\n", step, r.problem.c_str());
      return 1;
    }
    if ((step + 1) % 100 == 0)
      std::printf("step %4d  train mse %.5f\n", step + 1, r.loss / std::max(1L, r.labelled));
  }
  const double after = trainer.evaluate(test_set).mse();
  // The spread of the test values: the error of always predicting their mean.
  double sum = 0, sq = 0;
  long n = 0;
  for (const auto& e : test)
    for (float t : e.targets) sum += t, sq += double(t) * t, ++n;
  const double variance = sq / n - (sum / n) * (sum / n);
  std::printf("result: test_mse_before=%.5f test_mse_after=%.5f target_variance=%.5f\n", before,
              after, variance);
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "expression_dag: error: %s\n", e.what());
  return 2;
}
