// One forward and backward pass of a cell over a batch of graphs on any
// backend (and, if asked, one optimizer step), for the differential tests
// of the CUDA backend: on a GPU (tests/test_cuda_backend.cpp) and on the
// host emulator (tests/cuda_host/test_emulated_backend.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/random_vec.h"

#include "memory/arena.h"
#include "memory/optimizer.h"
#include "memory/param_store.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/random_graphs.h"
#include "vertex/plan.h"

namespace copse::celltest {

using Vec = std::vector<float>;

using copse::testing::random_vec;

inline Vec host(ops::Backend<float>& be, const float* p, std::size_t n) {
  Vec v(n);
  be.download(v.data(), p, n * sizeof(float));
  return v;
}

struct CellRun {
  Vec h;       // output "h", [N, hidden] in batch-row order
  Vec grads;   // the store's flat gradient buffer
  Vec params;  // the flat parameters after the optimizer step (when one ran)
  Vec state;   // the optimizer's first state slot after it (when it has one)
  long uploads = 0;
  long gather_calls = 0, row_job_batches = 0;
};

// `opt`: the optimizer step taken after the backward pass (nullptr: none).
inline CellRun run_cell(ops::Backend<float>& be, const vertex::VertexFunction& fn,
                        const std::vector<scheduler::Graph>& graphs, int vocab, int embed,
                        const memory::OptimizerConfig* opt = nullptr) {
  memory::ParamStore<float> ps(be);
  memory::Arena<float> arena(be);
  vertex::ExecPlan plan = vertex::compile(fn, {});
  ps.add({"embed", {vocab, embed}, memory::Init::Uniform, 0.5f, true});
  models::add_plan_params(plan, ps);
  ps.finalize();
  ps.init(7);
  for (const auto& p : plan.fn.params)  // nonzero biases
    if (p.is_bias) {
      const int id = ps.id(p.name);
      ps.set_host(id, random_vec(ps.numel(id), static_cast<std::uint32_t>(id) + 1, -0.5f, 0.5f));
    }
  if (opt) ps.set_optimizer(*opt);
  scheduler::Executor<float> ex(plan, be, ps, arena);
  ex.bind_pull("word", "embed");
  scheduler::BatchOptions bo;
  bo.num_slots = std::max(1, fn.child_slots);
  scheduler::GraphBatch batch = scheduler::make_batch(graphs, bo);
  ps.zero_grads();
  ex.forward(batch);
  const int w = ex.output_width("h");
  auto view = ex.output("h");
  CellRun out;
  Vec strided = host(be, view.ptr, static_cast<std::size_t>(batch.num_rows - 1) * view.ld + w);
  for (int r = 0; r < batch.num_rows; ++r)
    for (int j = 0; j < w; ++j) out.h.push_back(strided[static_cast<std::size_t>(r) * view.ld + j]);
  Vec dh = random_vec(static_cast<std::size_t>(batch.num_rows) * w, 99);
  float* ddh = arena.alloc(dh.size());
  be.upload(ddh, dh.data(), dh.size() * sizeof(float));
  ex.set_push_grad("h", ddh, w);
  ex.backward();
  out.grads = host(be, ps.grads_flat(), ps.total_elements());
  if (opt) {
    ps.step();
    out.params = ps.get_flat_host(-1);
    if (ps.optimizer_state_slots() > 0) out.state = ps.get_flat_host(0);
  }
  out.uploads = ex.stats().uploads;
  out.gather_calls = ex.stats().gather_calls;
  out.row_job_batches = ex.stats().row_job_batches;
  return out;
}

inline std::vector<scheduler::Graph> graphs_for(const std::string& cell, int vocab) {
  std::mt19937 rng(1234);
  std::vector<scheduler::Graph> g;
  if (cell == "lstm" || cell == "gru" || cell == "lstm2") {
    g = reftest::random_chains(1234, {1, 7, 30, 2, 64, 13}, vocab, 0.0);
  } else if (cell == "tree-lstm" || cell == "tree-gru") {
    for (int leaves : {1, 2, 9, 25, 60})
      g.push_back(reftest::random_binary_tree(leaves, rng, vocab, false));
  } else {
    for (int n : {1, 6, 30, 80}) g.push_back(reftest::random_nary_tree(n, 5, rng, vocab));
    for (int n : {5, 40}) g.push_back(reftest::random_dag(n, 4, rng, vocab));
  }
  return g;
}

// Three SGD steps (momentum, L2) of a small Tree-LSTM sentiment model with
// its softmax head, on 24 random labelled trees: the losses of the steps
// (into *losses) and the parameters after them.
inline Vec sentiment_training_steps(ops::Backend<float>& be, std::vector<double>* losses) {
  const int vocab = 40;
  std::mt19937 rng(77);
  std::vector<scheduler::Graph> trees;
  for (int i = 0; i < 24; ++i) {
    scheduler::Graph g = reftest::random_binary_tree(2 + i % 11, rng, vocab, false);
    g.label.assign(g.num_vertices(), -1);
    for (int& l : g.label) l = std::uniform_int_distribution<int>(-1, 4)(rng);
    trees.push_back(g);
  }
  models::SentimentConfig cfg;
  cfg.vocab = vocab;
  cfg.embed = 16;
  cfg.hidden = 12;
  memory::OptimizerConfig oc;
  oc.kind = memory::OptimizerConfig::Sgd;
  oc.lr = 0.1f;
  oc.momentum = 0.9f;
  oc.l2 = 1e-3f;
  models::SentimentModel<float> m(models::make_cell("tree-lstm", cfg.embed, cfg.hidden), cfg, be);
  m.params().init(3);
  m.params().set_optimizer(oc);
  scheduler::BatchOptions bo;
  for (int step = 0; step < 3; ++step) {
    std::vector<const scheduler::Graph*> part;
    for (int i = step * 8; i < step * 8 + 8; ++i) part.push_back(&trees[i]);
    scheduler::GraphBatch batch = scheduler::make_batch(part, bo);
    m.params().zero_grads();
    losses->push_back(m.train_batch(batch, 0.125f));
    m.params().step();
  }
  return m.params().get_flat_host(-1);
}

}  // namespace copse::celltest
