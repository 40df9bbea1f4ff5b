// SentimentModel: embeddings -> cell over the batch -> softmax at every vertex.
#include "models/sentiment_model.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace copse::models {

template <typename T>
void add_plan_params(const vertex::ExecPlan& plan, memory::ParamStore<T>& store) {
  // Weights of a merged GEMM go in consecutively, so one GEMM reads them all.
  std::vector<int> order;
  std::vector<char> done(plan.fn.params.size(), 0);
  for (const auto& g : plan.param_groups)
    for (int p : g) order.push_back(p), done[p] = 1;
  for (size_t p = 0; p < plan.fn.params.size(); ++p)
    if (!done[p]) order.push_back(static_cast<int>(p));
  for (int i : order) {
    const auto& p = plan.fn.params[i];
    memory::ParamSpec s;
    s.name = p.name;
    s.shape = p.shape;
    s.init = p.is_bias ? memory::Init::Zeros : memory::Init::Xavier;
    store.add(s);
  }
}

template <typename T>
SentimentModel<T>::SentimentModel(const vertex::VertexFunction& cell, const SentimentConfig& cfg,
                                  ops::Backend<T>& backend)
    : cfg_(cfg), be_(backend), params_(backend), arena_(backend) {
  if (cfg.vocab <= 0) fail("sentiment model: vocabulary is empty");
  vertex::CompileOptions co;
  co.fuse = cfg.fuse;
  co.strided_views = cfg.strided_views;
  plan_ = vertex::compile(cell, co);
  if (plan_.fn.find_output("h") < 0)
    fail("sentiment model: the cell '{}' must push an output named 'h'", cell.name);
  memory::ParamSpec emb;
  emb.name = "embed";
  emb.shape = {cfg.vocab, cfg.embed};
  emb.init = memory::Init::Uniform;
  emb.scale = cfg.embed_init;
  emb.sparse_rows = true;
  params_.add(emb);
  add_plan_params(plan_, params_);
  out_w_ = params_.add({"out.W", {cfg.classes, cfg.hidden}, memory::Init::Xavier, 0.f, false});
  out_b_ = params_.add({"out.b", {cfg.classes}, memory::Init::Zeros, 0.f, false});
  params_.finalize();
  scheduler::ExecOptions train_opts;
  train_opts.profile = cfg.profile;
  train_opts.dedup_pulls = cfg.dedup_pulls;
  scheduler::ExecOptions eval_opts = train_opts;
  eval_opts.training = false;
  train_exec_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, train_opts);
  eval_exec_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, eval_opts);
  train_exec_->bind_pull("word", "embed");
  eval_exec_->bind_pull("word", "embed");
  if (train_exec_->output_width("h") != cfg.hidden)
    fail("sentiment model: the cell pushes h of width {}, the config says hidden={}",
         train_exec_->output_width("h"), cfg.hidden);
}

// logits = H Wo^T + bo      [N, C] = [N, H] [C, H]^T
template <typename T>
void SentimentModel<T>::head_forward(const scheduler::Executor<T>& ex,
                                     const scheduler::GraphBatch& batch) {
  const int N = batch.num_rows, C = cfg_.classes;
  auto h = ex.output("h");
  logits_ = arena_.alloc(static_cast<size_t>(N) * C);
  be_.copy_rows(N, C, params_.param(out_b_), 0, logits_, C, false);
  be_.gemm(false, true, N, C, cfg_.hidden, T(1), h.ptr, h.ld, params_.param(out_w_), cfg_.hidden,
           T(1), logits_, C);
}

template <typename T>
double SentimentModel<T>::train_batch(const scheduler::GraphBatch& batch, T loss_scale) {
  arena_.reset();
  auto& ex = *train_exec_;
  ex.forward(batch);
  head_forward(ex, batch);
  const int N = batch.num_rows, C = cfg_.classes, H = cfg_.hidden;
  T* dlogits = arena_.alloc(static_cast<size_t>(N) * C);
  double loss = be_.softmax_xent(N, C, logits_, C, ex.batch_index().label, loss_scale, dlogits,
                                 C, nullptr, nullptr);
  auto h = ex.output("h");
  // dWo += dlogits^T H ; dbo += colsum(dlogits) ; dH = dlogits Wo
  be_.gemm(true, false, C, H, N, T(1), dlogits, C, h.ptr, h.ld, T(1), params_.grad(out_w_), H);
  be_.colsum(N, C, dlogits, C, params_.grad(out_b_), true);
  T* dh = arena_.alloc(static_cast<size_t>(N) * H);
  be_.gemm(false, false, N, H, C, T(1), dlogits, C, params_.param(out_w_), H, T(0), dh, H);
  ex.set_push_grad("h", dh, H);
  ex.backward();
  return loss;
}

template <typename T>
void SentimentModel<T>::evaluate_batch(const scheduler::GraphBatch& batch, EvalCounts& counts) {
  arena_.reset();
  auto& ex = *eval_exec_;
  ex.forward(batch);
  head_forward(ex, batch);
  const int N = batch.num_rows, C = cfg_.classes;
  pred_.resize(N);
  long correct = 0;
  counts.loss += be_.softmax_xent(N, C, logits_, C, ex.batch_index().label, T(0), nullptr, C,
                                  &correct, pred_.data());
  for (int r = 0; r < N; ++r) counts.vertices += batch.label[r] >= 0;
  const T* host_logits = logits_;  // the root rows' logits, for the binary decision
  if (!be_.host_accessible()) {
    host_logits_.resize(static_cast<size_t>(N) * C);
    be_.download(host_logits_.data(), logits_, sizeof(T) * host_logits_.size());
    host_logits = host_logits_.data();
  }
  for (int g = 0; g < batch.num_graphs; ++g) {
    for (int k = batch.root_ptr[g]; k < batch.root_ptr[g + 1]; ++k) {
      int r = batch.root_rows[k];
      int label = batch.label[r];
      if (label < 0) continue;
      ++counts.trees;
      counts.fine_correct += pred_[r] == label;
      if (C != 5 || label == 2) continue;
      // Binary: neutral roots dropped; positive iff p(3)+p(4) > p(0)+p(1).
      const T* row = host_logits + static_cast<size_t>(r) * C;
      T mx = *std::max_element(row, row + C);
      double p[5];
      for (int c = 0; c < 5; ++c) p[c] = std::exp(double(row[c] - mx));
      bool pos = p[3] + p[4] > p[0] + p[1];
      ++counts.binary_trees;
      counts.binary_correct += pos == (label > 2);
    }
  }
}

template void add_plan_params(const vertex::ExecPlan&, memory::ParamStore<float>&);
template void add_plan_params(const vertex::ExecPlan&, memory::ParamStore<double>&);
template class SentimentModel<float>;
template class SentimentModel<double>;

}  // namespace copse::models
