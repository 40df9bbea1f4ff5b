// The public training API (models/graphs.h, model.h, trainer.h) against
// independent references: graphs built by hand, finite differences in double
// for the squared-error and the cell's own heads, an embedding model for the
// dense-row path, one worker for two, and a saved and reloaded model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/error.h"
#include "tests/error_of.h"
#include "models/graphs.h"
#include "models/model.h"
#include "models/sentiment_model.h"
#include "models/trainer.h"
#include "ops/cpu_backend.h"
#include "tests/random_graphs.h"
#include "vertex/builder.h"

namespace copse {
namespace {

namespace fs = std::filesystem;

using testutil::error_of;

Graph by_hand(const std::vector<std::vector<int>>& kids) {
  Graph g;
  for (const auto& k : kids) g.add_vertex(k);
  return g;
}

void expect_same_structure(const Graph& a, const Graph& b) {
  EXPECT_EQ(a.child_ptr, b.child_ptr);
  EXPECT_EQ(a.children, b.children);
}

TEST(Api, TreesFromParentArraysAndDagsFromEdges) {
  // 0-based: 0 <- {1, 2}, 2 <- {3}; and the same tree 1-based, root 0.
  expect_same_structure(tree_from_parents({-1, 0, 0, 2}), by_hand({{1, 2}, {}, {3}, {}}));
  expect_same_structure(tree_from_parents({0, 1, 1, 3}, "sick", 1), by_hand({{1, 2}, {}, {3}, {}}));
  // Children in increasing index order whatever the array's order.
  expect_same_structure(tree_from_parents({2, 2, -1}), by_hand({{}, {}, {0, 1}}));
  // A DAG: vertex 2 is shared by 0 and 1; edge order is slot order.
  expect_same_structure(dag_from_edges(3, {{0, 2}, {1, 2}, {0, 1}}), by_hand({{2, 1}, {2}, {}}));
  expect_same_structure(chain(3), by_hand({{}, {0}, {1}}));

  Graph g = tree_from_parents({-1, 0, 0});
  set_graph_label(g, 4);
  EXPECT_EQ(g.label, (std::vector<int>{4, -1, -1}));
  Example e;
  e.graph = tree_from_parents({1, -1});
  set_graph_target(e, {0.5f, -1.f});
  ASSERT_EQ(e.targets.size(), 4u);
  EXPECT_TRUE(std::isnan(e.targets[0]) && std::isnan(e.targets[1]));
  EXPECT_EQ(e.targets[2], 0.5f);
  EXPECT_EQ(e.targets[3], -1.f);
}

TEST(Api, BadGraphsAreRefusedNamingTheGraphAndVertex) {
  EXPECT_NE(error_of([] { tree_from_parents({-1, 0, -1}, "t.txt:3"); })
                .find("t.txt:3: two roots, vertex 0 and vertex 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { tree_from_parents({0, 1, 7}, "s", 1); })
                .find("s: vertex 3 has parent 7, outside 1..3"),
            std::string::npos);
  EXPECT_NE(error_of([] { tree_from_parents({1, 0}, "loop"); }).find("loop: no root"),
            std::string::npos);
  EXPECT_NE(error_of([] { dag_from_edges(3, {{0, 1}, {1, 2}, {2, 0}}, "cyc"); }).find("cyc"),
            std::string::npos);
  EXPECT_NE(error_of([] { dag_from_edges(2, {{0, 5}}, "d"); }).find("d: edge 0 (0 -> 5)"),
            std::string::npos);
  Graph two_roots = dag_from_edges(3, {{0, 2}, {1, 2}}, "two");
  EXPECT_NE(error_of([&] { set_graph_label(two_roots, 1); }).find("two: a graph-level value needs "
                                                                  "one root; vertices 0 and 1"),
            std::string::npos);
  Example e;
  e.graph = chain(2, "short");
  e.features = {1.f, 2.f, 3.f};
  EXPECT_NE(error_of([&] { batch_of({&e}, 2, 0); })
                .find("short: 3 feature values for 2 vertices of width 2 (need 4)"),
            std::string::npos);
}

// h = tanh(W [x; sum_k h_k] + b) over a pull named `pull`; with `own_head`
// the cell also pushes y = V h (+ bias), the head's output.
vertex::VertexFunction small_cell(const std::string& pull, int in, int hidden, int own_head = 0) {
  vertex::VertexBuilder v("small", 2);
  v.state("h", hidden);
  auto h = tanh(v.linear({v.pull(pull, in), v.gather_sum("h")}, hidden, "W"));
  v.scatter("h", h);
  v.push("h", h);
  if (own_head > 0) v.push("y", v.linear({h}, own_head, "V"));
  return v.build();
}

// The loss of a double model on a batch, and the largest relative error of
// its gradient against central differences over every parameter entry.
double worst_gradient_error(models::SentimentModel<double>& m, const scheduler::GraphBatch& b,
                            const models::BatchData& data) {
  auto& ps = m.params();
  ps.zero_grads();
  m.train_batch(b, 1.0, data);
  double worst = 0;
  for (int id = 0; id < ps.size(); ++id) {
    for (size_t i = 0; i < ps.numel(id); ++i) {
      double& x = ps.param(id)[i];
      const double x0 = x, eps = 1e-5;
      auto loss = [&] {
        models::EvalCounts c;
        m.evaluate_batch(b, c, data);
        return c.loss;
      };
      x = x0 + eps;
      const double up = loss();
      x = x0 - eps;
      const double down = loss();
      x = x0;
      const double fd = (up - down) / (2 * eps), g = ps.grad(id)[i];
      worst = std::max(worst, std::abs(fd - g) / (std::max(std::abs(fd), std::abs(g)) + 1e-7));
    }
  }
  return worst;
}

TEST(Api, SquaredAndOwnHeadsMatchFiniteDifferences) {
  std::mt19937 rng(5);
  std::vector<Graph> graphs;
  for (int i = 0; i < 4; ++i) {
    graphs.push_back(reftest::random_binary_tree(2 + i, rng, 7, true));
    for (int v = 0; v < graphs.back().num_vertices(); v += 2) graphs.back().label[v] = v % 4 / 2;
  }
  const scheduler::GraphBatch b = scheduler::make_batch(graphs);
  // Targets at some vertices (NaN elsewhere), width 2.
  std::vector<float> targets(static_cast<size_t>(b.num_rows) * 2, std::nanf(""));
  for (int r = 0; r < b.num_rows; r += 2)
    targets[2 * r] = 0.3f * r - 1, targets[2 * r + 1] = r % 3 == 0 ? std::nanf("") : 0.5f;
  models::BatchData data;
  data.targets = targets.data();
  ops::CpuBackend<double> cpu(1);
  for (bool linear : {true, false}) {
    for (auto loss : {models::HeadLoss::Squared, models::HeadLoss::Softmax}) {
      models::SentimentConfig cfg;
      cfg.vocab = 7, cfg.embed = 3, cfg.hidden = 4, cfg.classes = 2, cfg.embed_init = 0.5f;
      cfg.loss = loss;
      cfg.head_linear = linear;
      models::SentimentModel<double> m(small_cell("word", 3, 4, linear ? 0 : 2), cfg, cpu);
      m.params().init(3);
      m.params().set_optimizer({});
      const double worst = worst_gradient_error(m, b, data);
      EXPECT_LT(worst, 1e-5) << (linear ? "linear" : "own") << " head, "
                             << (loss == models::HeadLoss::Squared ? "squared" : "softmax");
    }
  }
}

// Dense rows that are exactly the embedding rows of each vertex's word give
// the same loss, gradients and steps as the embedding model.
TEST(Api, DenseRowsEqualTheEmbeddingRowsTheyCopy) {
  std::mt19937 rng(9);
  const int V = 11, E = 3, H = 5;
  std::vector<Example> by_id, dense;
  for (int i = 0; i < 6; ++i) {
    Example e;
    e.graph = reftest::random_binary_tree(2 + i % 4, rng, V, true);
    for (auto& id : e.graph.input) id = id < 0 ? 0 : id;  // every vertex reads a row
    set_graph_label(e.graph, i % 3);
    by_id.push_back(e);
  }
  ModelConfig ce;
  ce.vocab = V, ce.embed = E, ce.hidden = H, ce.head = Head::softmax(3), ce.embed_init = 0.5f;
  Model emb(small_cell("word", E, H), ce);
  ModelConfig cd = ce;
  cd.vocab = 0, cd.features = E;
  Model den(small_cell("x", E, H), cd);
  // The same weights; the dense rows copy the table.
  const std::vector<float> table = emb.params().get_host(emb.params().id("embed"));
  for (const char* p : {"W", "W.b", "out.W", "out.b"})
    den.params().set_host(den.params().id(p), emb.params().get_host(emb.params().id(p)));
  for (const auto& e : by_id) {
    Example d = e;
    for (int id : e.graph.input) d.features.insert(d.features.end(), &table[id * E], &table[id * E] + E);
    dense.push_back(d);
  }
  std::vector<const Example*> pe, pd;
  for (size_t i = 0; i < by_id.size(); ++i) pe.push_back(&by_id[i]), pd.push_back(&dense[i]);
  Trainer te(emb, {optimizer("sgd", 0.5f)}), td(den, {optimizer("sgd", 0.5f)});
  // One step: after it the embedding model's table has moved too (its rows
  // are parameters; the dense rows are data).
  StepResult a = te.step(pe), b = td.step(pd);
  ASSERT_TRUE(a.taken && b.taken);
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(a.loss));
  EXPECT_EQ(a.labelled, 6);
  EXPECT_EQ(b.labelled, 6);
  for (const char* p : {"W", "W.b", "out.W", "out.b"}) {
    auto x = emb.params().get_host(emb.params().id(p)), y = den.params().get_host(den.params().id(p));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], 1e-5) << p << "[" << i << "]";
  }
}

// Two thread workers sharing each batch take the steps one worker takes
// (SGD: the summed shard gradients are the batch's), with dense rows and a
// squared head; the model saved and reloaded predicts the same values.
TEST(Api, TwoWorkersEqualOneAndSaveLoadKeepsPredictions) {
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<Example> ex;
  for (int i = 0; i < 10; ++i) {
    Example e;
    e.graph = reftest::random_binary_tree(1 + i % 5, rng, 4, true);
    for (int v = 0; v < e.graph.num_vertices(); ++v) {
      e.graph.input[v] = -1;
      for (int k = 0; k < 3; ++k) e.features.push_back(u(rng));
      e.targets.push_back(v % 2 ? u(rng) : std::nanf(""));
    }
    ex.push_back(e);
  }
  std::vector<const Example*> batch;
  for (const auto& e : ex) batch.push_back(&e);
  ModelConfig cfg;
  cfg.features = 3, cfg.hidden = 6, cfg.head = Head::squared(1);
  Model one(small_cell("x", 3, 6), cfg), two(small_cell("x", 3, 6), cfg);
  TrainerOptions o1{optimizer("sgd", 0.1f)}, o2 = o1;
  o2.workers = 2;
  Trainer t1(one, o1), t2(two, o2);
  ASSERT_EQ(t2.workers(), 2);
  for (int step = 0; step < 4; ++step) {
    StepResult a = t1.step(batch), b = t2.step(batch);
    ASSERT_TRUE(a.taken && b.taken);
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(a.loss) + 1e-7);
  }
  auto x = one.params().get_flat_host(-1), y = two.params().get_flat_host(-1);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], 1e-5) << i;
  EXPECT_TRUE(t2.diverged_workers().empty());
  const double mse1 = t1.evaluate(batch).mse(), mse2 = t2.evaluate(batch).mse();
  EXPECT_NEAR(mse1, mse2, 1e-5 * mse1);

  const fs::path dir = fs::temp_directory_path() / ("copse_api_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  one.save(path);
  Model back = Model::load(path, small_cell("x", 3, 6));
  EXPECT_EQ(back.config().features, 3);
  EXPECT_EQ(back.config().head.loss, HeadLoss::Squared);
  const auto p = one.predict(batch), q = back.predict(batch);
  ASSERT_EQ(p.size(), ex.size());
  for (size_t k = 0; k < p.size(); ++k) EXPECT_EQ(p[k], q[k]) << k;
  // By name, the file's cell is unknown; another cell does not fit.
  EXPECT_NE(error_of([&] { Model::load(path); }).find("small"), std::string::npos);
  EXPECT_NE(error_of([&] { Model::load(path, small_cell("x", 3, 6, 2)); }).find(path),
            std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace copse
