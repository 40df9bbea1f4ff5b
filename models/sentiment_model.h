// SentimentModel: a vertex-function cell + word embeddings (or per-vertex
// dense rows) + a head at every labelled vertex: softmax cross-entropy over
// class labels or squared error against targets; the model behind
// `copse train` and models::Model (models/model.h).
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

// The loss of the head, at the vertices that have a label (softmax) or a
// target (squared error).
enum class HeadLoss { Softmax, Squared };

// The model around a cell: inputs, widths, the head, the runtime's paths.
struct SentimentConfig {
  int vocab = 0;     // rows of the embedding table "embed" (the cell pulls "word"); 0: none
  int embed = 300;   // width of an embedding row
  int hidden = 150;  // width of the cell's push "h"
  int classes = 5;   // the head's width: classes (softmax) or the target width (squared)
  HeadLoss loss = HeadLoss::Softmax;  // the head's loss
  // true: the head is a linear layer out.W [classes, hidden], out.b on "h".
  // false: the cell computes the head itself and pushes "y" [classes].
  bool head_linear = true;
  // > 0: the cell pulls "x" [features] from dense rows given with each batch
  // (BatchData::features), indexed by the vertex's input id.
  int features = 0;
  float embed_init = 0.1f;  // embeddings start U[-embed_init, embed_init]
  // > 1: examples of `arity` graphs, joined by the constructor's join head
  // (models/join_head.h); `classes` is then the join head's width, and
  // head_linear is not read.
  int arity = 1;
  bool fuse = true;           // vertex::CompileOptions::fuse
  bool strided_views = true;  // vertex::CompileOptions::strided_views
  bool dedup_pulls = true;    // scheduler::ExecOptions::dedup_pulls
  bool profile = false;       // scheduler::ExecOptions::profile
};

// Root accuracy counters, summed over batches.
struct EvalCounts {
  long trees = 0;         // labelled roots
  long fine_correct = 0;  // roots whose argmax is their label
  long binary_trees = 0;  // roots whose label is not neutral (2)
  long binary_correct = 0;  // of those, positive iff p(3)+p(4) > p(0)+p(1) was right
  double loss = 0;        // summed over labelled vertices
  long vertices = 0;      // labelled vertices (the loss's count)
  // Root accuracy over all classes.
  double fine() const { return trees ? double(fine_correct) / trees : 0.0; }
  // Root accuracy on the non-neutral roots, positive vs negative.
  double binary() const { return binary_trees ? double(binary_correct) / binary_trees : 0.0; }
};

// What a batch carries besides its graphs (host memory, row-major).
struct BatchData {
  const float* features = nullptr;  // [feature_rows, features], read by input id
  int feature_rows = 0;             // rows of `features`
  const float* targets = nullptr;   // [N, classes] in the batch's row order; NaN: no target
};

// Per-entry squared error at the vertices with targets (HeadLoss::Squared).
struct SquaredCounts {
  double sum = 0;     // sum over entries of (prediction - target)^2
  long entries = 0;  // target entries summed over
};

template <typename T>
class JoinRunner;

// Embeddings (or dense rows) -> the cell over every vertex of a batch -> a
// head: the runtime of copse::Model, for one backend and element type.
template <typename T>
class SentimentModel {
 public:
  // The cell pulls "word" (width embed; with vocab > 0) and/or "x" (width
  // features; with features > 0) and pushes "h" (width hidden), and "y"
  // (width classes) when the head is not linear.
  // With a join head (cfg.arity > 1) the loss is the join head's, on the
  // examples' targets (train_tuples, evaluate_tuples).
  SentimentModel(const vertex::VertexFunction& cell, const SentimentConfig& cfg,
                 ops::Backend<T>& backend, const vertex::VertexFunction* join_head = nullptr);
  ~SentimentModel();

  // Every parameter: embeddings, cell, head.
  memory::ParamStore<T>& params() { return params_; }
  // The cell's compiled plan.
  const vertex::ExecPlan& plan() const { return plan_; }
  // The configuration it was built with.
  const SentimentConfig& config() const { return cfg_; }
  // The activations' arena (reset at every batch).
  memory::Arena<T>& arena() { return arena_; }
  // The cell's training executor (its statistics, for benchmarks).
  scheduler::Executor<T>& train_executor() { return *train_exec_; }

  // Forward, loss and backward over one batch: parameter gradients are ADDED
  // to the store's gradients (the caller zeroes them and steps the optimizer).
  // The loss is the sum of per-vertex cross-entropies times `loss_scale`;
  // returns the unscaled sum.
  // Squared error: the per-vertex loss is sum_d (y_d - t_d)^2.
  double train_batch(const scheduler::GraphBatch& batch, T loss_scale,
                     const BatchData& data = {});
  // Forward only; adds root accuracies and the loss to `counts` (and, with
  // the squared loss, the error to `sq`).
  void evaluate_batch(const scheduler::GraphBatch& batch, EvalCounts& counts,
                      const BatchData& data = {}, SquaredCounts* sq = nullptr);

  // Examples of cfg.arity graphs, all of them in `batch`: rows[t * arity +
  // j] is the batch row the join head reads for graph j of example t;
  // targets [examples, classes] (host): a distribution over the classes
  // (the loss is KL(target || softmax(y))) or the values (squared error).
  // Forward, loss and backward as train_batch; returns the summed loss.
  double train_tuples(const scheduler::GraphBatch& batch, const std::vector<int>& rows,
                      const float* targets, T loss_scale, const BatchData& data = {});
  // Forward only: returns the summed loss; `outputs` (if given) gets per
  // example the join head's probabilities (softmax) or prediction (squared).
  double evaluate_tuples(const scheduler::GraphBatch& batch, const std::vector<int>& rows,
                         const float* targets, std::vector<T>* outputs = nullptr,
                         const BatchData& data = {});
  // Whether the model has a join head (examples of several graphs).
  bool joins() const { return join_ != nullptr; }

  // The head's output [N, classes] of the last batch (backend memory), rows
  // logits_ld() apart: logits (softmax) or predictions (squared).
  const T* logits() const { return logits_; }
  // The row stride of logits().
  long logits_ld() const { return logits_ld_; }

 private:
  void bind_inputs(scheduler::Executor<T>& ex, const BatchData& data);
  void head_forward(const scheduler::Executor<T>& ex, const scheduler::GraphBatch& batch);
  // Squared error of the head's output against data.targets: returns the
  // sum; with dlogits (backend memory, [N, classes]) also its gradient times
  // scale (zero where there is no target).
  double squared_loss(const scheduler::GraphBatch& batch, const BatchData& data, T scale,
                      T* dlogits, SquaredCounts* sq);

  SentimentConfig cfg_;
  ops::Backend<T>& be_;
  vertex::ExecPlan plan_;
  memory::ParamStore<T> params_;
  memory::Arena<T> arena_;
  std::unique_ptr<scheduler::Executor<T>> train_exec_, eval_exec_;
  int out_w_ = -1, out_b_ = -1;
  T* logits_ = nullptr;
  long logits_ld_ = 0;
  std::vector<T> host_buf_, host_grad_;
  std::vector<int> pred_;
  std::vector<T> host_logits_;
  std::unique_ptr<JoinRunner<T>> join_;
};

// Adds the parameters a compiled plan needs to a store (weights Xavier,
// biases zero).
template <typename T>
void add_plan_params(const vertex::ExecPlan& plan, memory::ParamStore<T>& store);

extern template class SentimentModel<float>;
extern template class SentimentModel<double>;

}  // namespace copse::models
