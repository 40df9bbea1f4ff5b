// JoinRunner: the runtime of a join head (models/join_head.h) inside
// SentimentModel. After the cell's forward over a batch that holds every
// graph of every example, it gathers the chosen rows of "h" (k per example),
// runs the head's vertex function over one vertex per example, takes the
// loss against the examples' targets and, for training, returns the
// gradient of "h" for the cell's backward. Private to libcopse.
#pragma once

#include <memory>
#include <vector>

#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/sentiment_model.h"
#include "ops/backend.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "vertex/plan.h"

namespace copse::models {

template <typename T>
class JoinRunner {
 public:
  // Compiles `head` and checks it pulls in0..in{arity-1} [hidden] and pushes
  // "y" [width]. Its parameters go into `params` (add_params, before the
  // store is finalized).
  JoinRunner(const vertex::VertexFunction& head, int arity, int hidden, int width,
             const vertex::CompileOptions& co, ops::Backend<T>& be, memory::ParamStore<T>& params,
             memory::Arena<T>& arena);
  ~JoinRunner();
  void add_params();
  void make_executors(bool profile);

  // `h`: the cell's push "h" over the batch (tree_rows rows); rows[t * arity
  // + j]: the row the head reads for graph j of example t; targets
  // [tuples, width] (host): a distribution (softmax; the loss is
  // KL(target || softmax(y))) or values (squared error); a row starting
  // with NaN has no target (no loss, no gradient). Returns the loss
  // summed over the examples. Training: the head's parameter gradients are
  // added to the store's, and dh [tree_rows, hidden] (backend memory) is set
  // to the gradient of the loss times `scale` with respect to "h". `outputs`
  // (if given) gets per example the head's output: probabilities (softmax)
  // or the prediction (squared), [tuples, width].
  double run(bool training, ops::RowView<const T> h, int tree_rows, const std::vector<int>& rows,
             const float* targets, HeadLoss loss, T scale, T* dh, std::vector<T>* outputs);

  const vertex::ExecPlan& plan() const { return plan_; }

 private:
  const scheduler::GraphBatch& head_batch(int tuples);
  int* device_rows(std::size_t n);

  int arity_, hidden_, width_;
  ops::Backend<T>& be_;
  memory::ParamStore<T>& params_;
  memory::Arena<T>& arena_;
  vertex::ExecPlan plan_;
  std::vector<int> pull_node_;  // in_j -> the pull's node
  std::unique_ptr<scheduler::Executor<T>> train_, eval_;
  scheduler::GraphBatch batch_;
  int batch_tuples_ = -1;
  int* dev_rows_ = nullptr;
  std::size_t dev_cap_ = 0;
  std::vector<int> host_rows_;
  std::vector<T> host_y_, host_dy_;
};

extern template class JoinRunner<float>;
extern template class JoinRunner<double>;

}  // namespace copse::models
