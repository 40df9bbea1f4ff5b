// Examples of two graphs joined by a head (models/join_head.h): the batched
// pair model against a per-example reference written on the reference tape
// (the child-sum Tree-LSTM over each tree, then Tai et al.'s similarity head
// and the KL loss), finite differences of the head, examples that keep
// their own trees whatever the batch order, two workers against one, a
// saved and reloaded model, and the errors for malformed examples.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>

#include "common/error.h"
#include "tests/error_of.h"
#include "models/cells.h"
#include "models/join_head.h"
#include "models/model.h"
#include "models/sentiment_model.h"
#include "models/trainer.h"
#include "ops/cpu_backend.h"
#include "tests/random_graphs.h"
#include "tests/reference_child_sum.h"
#include "tests/reference_harness.h"
#include "tests/reference_tape.h"

namespace copse {
namespace {

constexpr int kVocab = 20, kClasses = 5;

// Pairs of random trees (up to 4 children per vertex), each with a random
// relatedness score in [1, 5] as Tai et al.'s target distribution.
std::vector<Example> random_pairs(std::uint32_t seed, int count) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> score(1.0, 5.0);
  std::vector<Example> out(count);
  for (int i = 0; i < count; ++i) {
    out[i].graph = reftest::random_nary_tree(1 + static_cast<int>(rng() % 9), 4, rng, kVocab);
    out[i].more = {reftest::random_nary_tree(1 + static_cast<int>(rng() % 9), 4, rng, kVocab)};
    out[i].graph.name = fmt::format("pair {}", i);
    out[i].target = models::score_distribution(score(rng), kClasses);
  }
  return out;
}

std::vector<const Example*> pointers(const std::vector<Example>& v) {
  std::vector<const Example*> p;
  for (const auto& e : v) p.push_back(&e);
  return p;
}

// KL(p || softmax(y)) and its gradient q sum(p) - p (sum(p) is 1 up to the
// rounding of the float targets).
double kl(const std::vector<double>& y, const std::vector<float>& p, std::vector<double>* dy) {
  const double mx = *std::max_element(y.begin(), y.end());
  double z = 0, psum = 0;
  for (double v : y) z += std::exp(v - mx);
  for (float v : p) psum += v;
  double loss = 0;
  if (dy) dy->resize(y.size());
  for (size_t c = 0; c < y.size(); ++c) {
    const double logq = y[c] - mx - std::log(z);
    if (p[c] > 0) loss += p[c] * (std::log(double(p[c])) - logq);
    if (dy) (*dy)[c] = std::exp(logq) * psum - p[c];
  }
  return loss;
}

// The reference: every tree vertex by vertex, the head per example, all on
// one tape; returns the summed loss and leaves the gradients in P.
double reference_loss(reftest::RefParams& P, const std::vector<Example>& pairs, int E, int H) {
  using reftest::Tape;
  Tape t;
  const reftest::RefCell cell = reftest::child_sum_reference(E, H);
  auto root_h = [&](const Graph& g) {
    std::vector<reftest::RefVertex> vs(g.num_vertices());
    for (int v : reftest::topo_order(g)) cell(t, P, g, v, vs);
    return vs[root_of(g)].state.at("h");
  };
  double loss = 0;
  std::vector<int> seeds;
  for (const Example& e : pairs) {
    const int l = root_h(e.graph), r = root_h(e.more[0]);
    const int prod = t.mul(l, r);
    const int dist = t.add(t.relu(t.sub(l, r)), t.relu(t.sub(r, l)));
    const int hs = t.sigmoid(t.linear(P.at("sim.W"), &P.at("sim.W.b"), {prod, dist}));
    const int y = t.linear(P.at("sim.out"), &P.at("sim.out.b"), {hs});
    std::vector<double> dy;
    loss += kl(t.value(y), e.target, &dy);
    seeds.push_back(t.dot(y, dy));  // d(seed)/dy = dKL/dy at this point
  }
  t.backward(t.sum(seeds, 1));
  return loss;
}

struct DoublePairModel {
  ops::CpuBackend<double> be{1};
  vertex::VertexFunction head;
  models::SentimentModel<double> m;
  DoublePairModel(int E, int H, int sim_hidden)
      : head(models::similarity_head(H, sim_hidden, kClasses)),
        m(models::child_sum_tree_lstm(E, H), config(E, H), be, &head) {
    m.params().init(11);
    std::mt19937 rng(12);
    reftest::randomize_biases(m.params(), rng);
  }
  static models::SentimentConfig config(int E, int H) {
    models::SentimentConfig c;
    c.vocab = kVocab;
    c.embed = E;
    c.hidden = H;
    c.classes = kClasses;
    c.arity = 2;
    c.embed_init = 0.5f;
    return c;
  }
};

TEST(Join, PairLossAndGradientsEqualThePerExampleReference) {
  const int E = 4, H = 5;
  DoublePairModel d(E, H, 3);
  auto& ps = d.m.params();
  const auto pairs = random_pairs(1, 7);
  const Batch b = batch_of(pointers(pairs), 0, kClasses, 2);
  ASSERT_EQ(b.graphs.num_graphs, 14);  // one level loop over all 2B trees
  ps.zero_grads();
  const double loss = d.m.train_tuples(b.graphs, b.join_rows, b.join_targets.data(), 1.0);
  reftest::RefParams P = reftest::RefParams::from_store(ps);
  const double want = reference_loss(P, pairs, E, H);
  EXPECT_NEAR(loss, want, 1e-9 * std::abs(want));
  reftest::Check c;
  for (int id = 0; id < ps.size(); ++id) {
    const auto& name = ps.spec(id).name;
    std::vector<double> got(ps.grad(id), ps.grad(id) + ps.numel(id));
    reftest::compare(got, P.at(name).grad, 1e-9, name, c);
  }
  EXPECT_TRUE(c.ok) << c.failures;
  // And it can fail: the reference with the trees of two examples swapped.
  auto swapped = pairs;
  std::swap(swapped[0].more, swapped[1].more);
  reftest::RefParams Q = reftest::RefParams::from_store(ps);
  EXPECT_GT(std::abs(reference_loss(Q, swapped, E, H) - want), 1e-6 * std::abs(want));
}

TEST(Join, HeadGradientsMatchFiniteDifferences) {
  const int E = 3, H = 4;
  DoublePairModel d(E, H, 3);
  auto& ps = d.m.params();
  const auto pairs = random_pairs(2, 5);
  const Batch b = batch_of(pointers(pairs), 0, kClasses, 2);
  ps.zero_grads();
  d.m.train_tuples(b.graphs, b.join_rows, b.join_targets.data(), 1.0);
  auto loss = [&] {
    return d.m.evaluate_tuples(b.graphs, b.join_rows, b.join_targets.data());
  };
  int checked = 0;
  for (const char* name : {"sim.W", "sim.W.b", "sim.out", "sim.out.b", "U", "embed"}) {
    const int id = ps.id(name);
    const size_t n = std::min<size_t>(ps.numel(id), 40);
    for (size_t k = 0; k < n; ++k) {
      const double fd = reftest::central_difference(ps.param(id)[k], 1e-5, loss);
      const double an = ps.grad(id)[k];
      EXPECT_NEAR(an, fd, 1e-6 + 1e-5 * std::abs(fd)) << name << "[" << k << "]";
      checked += std::abs(fd) > 1e-6;
    }
  }
  EXPECT_GT(checked, 60);  // the check exercised nonzero gradients
}

ModelConfig small_config() {
  ModelConfig c;
  c.vocab = kVocab;
  c.embed = 8;
  c.hidden = 8;
  c.head = Head::softmax(kClasses);
  c.embed_init = 0.5f;
  c.seed = 5;
  return c;
}

TEST(Join, EachExampleKeepsItsOwnTreesWhateverTheBatchOrder) {
  Model m("child-sum-lstm", "similarity", small_config());
  ASSERT_EQ(m.arity(), 2);
  const auto pairs = random_pairs(3, 12);
  const auto all = m.predict(pointers(pairs), 64);
  std::vector<int> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(4));
  std::vector<const Example*> shuffled;
  for (int i : order) shuffled.push_back(&pairs[i]);
  const auto mixed = m.predict(shuffled, 5);  // and batches of another size
  double spread = 0, loss = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const auto alone = m.predict(std::vector<const Example*>{&pairs[order[k]]});
    for (int c = 0; c < kClasses; ++c) {
      EXPECT_NEAR(mixed[k][c], all[order[k]][c], 1e-6) << "example " << order[k];
      EXPECT_NEAR(alone[0][c], all[order[k]][c], 1e-6) << "example " << order[k];
      spread = std::max(spread, double(std::abs(all[order[k]][c] - all[order[0]][c])));
    }
  }
  EXPECT_GT(spread, 1e-3);  // the examples' predictions differ: a mix-up would show
  // The evaluation's loss is the KL of those predictions.
  for (size_t k = 0; k < pairs.size(); ++k) {
    std::vector<double> logq;
    for (float q : all[k]) logq.push_back(std::log(double(q)));
    loss += kl(logq, pairs[k].target, nullptr);
  }
  const Evaluation e = m.evaluate(pointers(pairs), 7);
  EXPECT_EQ(e.counts.vertices, 12);
  EXPECT_NEAR(e.counts.loss, loss, 1e-4 * loss);
}

TEST(Join, TwoWorkersTakeTheStepsOfOneAndTheLossFalls) {
  const auto pairs = random_pairs(6, 16);
  const auto batch = pointers(pairs);
  Model one("child-sum-lstm", "similarity", small_config());
  Model two("child-sum-lstm", "similarity", small_config());
  TrainerOptions o;
  o.optimizer = optimizer("adagrad", 0.1f);
  Trainer t1(one, o);
  o.workers = 2;
  Trainer t2(two, o);
  double first = 0, last = 0;
  for (int s = 0; s < 40; ++s) {
    const StepResult a = t1.step(batch), b = t2.step(batch);
    ASSERT_TRUE(a.taken && b.taken) << a.problem << b.problem;
    EXPECT_EQ(a.labelled, 16);
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * a.loss) << "step " << s;
    if (s == 0) first = a.loss;
    last = a.loss;
  }
  const auto p1 = one.params().get_flat_host(-1), p2 = two.params().get_flat_host(-1);
  double diff = 0;
  for (size_t i = 0; i < p1.size(); ++i) diff = std::max(diff, double(std::abs(p1[i] - p2[i])));
  EXPECT_LT(diff, 1e-4);
  EXPECT_LT(last, 0.5 * first) << "16 pairs, 40 Adagrad steps";
}

TEST(Join, SavedAndLoadedModelsPredictTheSame) {
  const auto pairs = random_pairs(7, 6);
  Model m("child-sum-lstm", "similarity", small_config());
  Trainer t(m, {optimizer("adagrad", 0.05f)});
  t.step(pointers(pairs));
  const std::string path = fmt::format("{}/join_{}.safetensors",
                                       std::filesystem::temp_directory_path().string(), getpid());
  m.save(path);
  Model back = Model::load(path);
  std::filesystem::remove(path);
  EXPECT_EQ(back.arity(), 2);
  EXPECT_EQ(back.join_name(), "similarity");
  EXPECT_EQ(back.cell_name(), "child-sum-lstm");
  const auto a = m.predict(pointers(pairs)), b = back.predict(pointers(pairs));
  for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k], b[k]);
}

using testutil::error_of;

TEST(Join, MalformedExamplesAreNamed) {
  Model m("child-sum-lstm", "similarity", small_config());
  auto pairs = random_pairs(8, 3);
  auto with = [&](const std::function<void(Example&)>& f) {
    auto bad = pairs;
    f(bad[1]);
    return error_of([&] { m.batch(pointers(bad)); });
  };
  EXPECT_NE(with([](Example& e) { e.more.clear(); }).find("pair 1: an example of 1 graphs, the model joins 2"),
            std::string::npos);
  EXPECT_NE(with([](Example& e) { e.join_at = {0, 99}; }).find("join_at[1] = 99"), std::string::npos);
  EXPECT_NE(with([](Example& e) { e.target = {1, 0}; }).find("pair 1: a target of 2 values, the head's width is 5"),
            std::string::npos);
  EXPECT_NE(with([](Example& e) { e.target[2] = NAN; }).find("pair 1: target entry 2 is not finite"),
            std::string::npos);
  EXPECT_NE(error_of([] { models::score_distribution(5.5, 5); }).find("score 5.5 is outside [1, 5]"),
            std::string::npos);
  // A batch of lone graphs for a pair model.
  Trainer t(m, {optimizer("sgd", 0.1f)});
  std::vector<const Graph*> lone{&pairs[0].graph};
  EXPECT_NE(error_of([&] { t.step(lone); }).find("the model joins 2"), std::string::npos);
  // A join head that does not pull in1.
  vertex::VertexBuilder v("half", 0);
  v.push("y", v.linear({v.pull("in0", 8), v.pull("inX", 8)}, kClasses, "W"));
  EXPECT_NE(error_of([&] { Model(models::child_sum_tree_lstm(8, 8), v.build(), small_config()); })
                .find("must pull 'in1'"),
            std::string::npos);
}

TEST(Join, ScoreDistributionsAreTaisSparseTargets) {
  EXPECT_EQ(models::score_distribution(1.0, 5), (std::vector<float>{1, 0, 0, 0, 0}));
  EXPECT_EQ(models::score_distribution(5.0, 5), (std::vector<float>{0, 0, 0, 0, 1}));
  const auto p = models::score_distribution(3.25, 5);
  EXPECT_FLOAT_EQ(p[2], 0.75f);
  EXPECT_FLOAT_EQ(p[3], 0.25f);
  double mean = 0;
  for (int c = 0; c < 5; ++c) mean += (c + 1) * p[c];
  EXPECT_NEAR(mean, 3.25, 1e-6);  // r^T p is the score
}

}  // namespace
}  // namespace copse
