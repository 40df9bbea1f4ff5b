// SentimentModel: a vertex-function cell + word embeddings + a softmax head at
// every labelled vertex; the model behind `copse train`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "memory/arena.h"
#include "memory/param_store.h"
#include "ops/backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "vertex/plan.h"

namespace copse::models {

struct SentimentConfig {
  int vocab = 0;
  int embed = 300;
  int hidden = 150;
  int classes = 5;
  float embed_init = 0.1f;  // embeddings start U[-embed_init, embed_init]
  bool fuse = true;
  bool strided_views = true;  // vertex::CompileOptions::strided_views
  bool dedup_pulls = true;    // scheduler::ExecOptions::dedup_pulls
  bool profile = false;
};

// Root accuracy counters, summed over batches.
struct EvalCounts {
  long trees = 0;
  long fine_correct = 0;
  long binary_trees = 0;  // roots whose label is not neutral (2)
  long binary_correct = 0;
  double loss = 0;        // summed over labelled vertices
  long vertices = 0;
  double fine() const { return trees ? double(fine_correct) / trees : 0.0; }
  double binary() const { return binary_trees ? double(binary_correct) / binary_trees : 0.0; }
};

template <typename T>
class SentimentModel {
 public:
  // The cell must pull "word" (width embed) and push "h" (width hidden).
  SentimentModel(const vertex::VertexFunction& cell, const SentimentConfig& cfg,
                 ops::Backend<T>& backend);

  memory::ParamStore<T>& params() { return params_; }
  const vertex::ExecPlan& plan() const { return plan_; }
  const SentimentConfig& config() const { return cfg_; }
  memory::Arena<T>& arena() { return arena_; }
  scheduler::Executor<T>& train_executor() { return *train_exec_; }

  // Forward, loss and backward over one batch: parameter gradients are ADDED
  // to the store's gradients (the caller zeroes them and steps the optimizer).
  // The loss is the sum of per-vertex cross-entropies times `loss_scale`;
  // returns the unscaled sum.
  double train_batch(const scheduler::GraphBatch& batch, T loss_scale);
  // Forward only; adds root accuracies and the loss to `counts`.
  void evaluate_batch(const scheduler::GraphBatch& batch, EvalCounts& counts);

  // The head's logits [N, classes] of the last batch (backend memory).
  const T* logits() const { return logits_; }

 private:
  void head_forward(const scheduler::Executor<T>& ex, const scheduler::GraphBatch& batch);

  SentimentConfig cfg_;
  ops::Backend<T>& be_;
  vertex::ExecPlan plan_;
  memory::ParamStore<T> params_;
  memory::Arena<T> arena_;
  std::unique_ptr<scheduler::Executor<T>> train_exec_, eval_exec_;
  int out_w_ = -1, out_b_ = -1;
  T* logits_ = nullptr;
  std::vector<int> pred_;
  std::vector<T> host_logits_;
};

// Adds the parameters a compiled plan needs to a store (weights Xavier,
// biases zero).
template <typename T>
void add_plan_params(const vertex::ExecPlan& plan, memory::ParamStore<T>& store);

extern template class SentimentModel<float>;
extern template class SentimentModel<double>;

}  // namespace copse::models
