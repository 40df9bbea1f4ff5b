// Trains a small gated tree cell, written here with the vertex API, on trees
// made in code, for a few SGD steps on the CPU backend of an installed copse.
// Exits 1 unless the loss is finite and falls by half. With --expect-cuda
// the "cuda" backend must also be registered (copse::cuda linked).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/version.h"
#include "memory/optimizer.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "ops/device.h"
#include "scheduler/graph_batch.h"
#include "vertex/builder.h"

using namespace copse;

// [z, u] = W x + U sum_k h_k;  h = sigmoid(z) * tanh(u)
vertex::VertexFunction gated_cell(int embed, int hidden) {
  vertex::VertexBuilder v("gated", /*child_slots=*/2);
  v.state("h", hidden);
  auto x = v.pull("word", embed);
  auto [z, u] = v.split<2>(v.linear({x, v.gather_sum("h")}, 2 * hidden, "W"));
  auto h = sigmoid(z) * tanh(u);
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

// A binary tree over `leaves` random words in [0, 6); its root is labelled 1
// when word 0 occurs among them.
scheduler::Graph make_tree(int leaves, std::mt19937& rng) {
  scheduler::Graph g;
  std::vector<int> level;
  bool has_zero = false;
  for (int i = 0; i < leaves; ++i) {
    const int word = static_cast<int>(rng() % 6);
    has_zero = has_zero || word == 0;
    level.push_back(g.add_vertex({}, word));
  }
  while (level.size() > 1) {
    std::vector<int> up;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      up.push_back(g.add_vertex({level[i], level[i + 1]}));
    if (level.size() % 2) up.push_back(level.back());
    level = up;
  }
  g.label[level[0]] = has_zero ? 1 : 0;
  return g;
}

int main(int argc, char** argv) {
  std::printf("copse %s\n", copse::kVersion);
  if (argc > 1 && std::string(argv[1]) == "--expect-cuda" && !ops::find_backend("cuda")) {
    std::fprintf(stderr, "consumer_smoke: no \"cuda\" backend registered\n");
    return 1;
  }
  std::mt19937 rng(7);
  std::vector<scheduler::Graph> trees;
  for (int i = 0; i < 16; ++i) trees.push_back(make_tree(2 + i % 5, rng));
  const scheduler::GraphBatch batch = scheduler::make_batch(trees);

  ops::CpuBackend<float> cpu(1);
  models::SentimentConfig cfg;
  cfg.vocab = 6;
  cfg.embed = 8;
  cfg.hidden = 8;
  cfg.classes = 2;
  cfg.embed_init = 1.0f;
  models::SentimentModel<float> model(gated_cell(cfg.embed, cfg.hidden), cfg, cpu);
  model.params().init(1);
  model.params().set_optimizer({memory::OptimizerConfig::Sgd, /*lr=*/1.0f});
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    model.params().zero_grads();
    last = model.train_batch(batch, 1.0f / trees.size()) / trees.size();
    model.params().step();
    if (step == 0) first = last;
    if (!std::isfinite(last)) return std::fprintf(stderr, "step %d: loss %g\n", step, last), 1;
  }
  std::printf("loss %.4f -> %.4f over 30 SGD steps\n", first, last);
  return last < first / 2 ? 0 : 1;
}
