// SentimentModel: embeddings -> cell over the batch -> softmax at every vertex.
#include "models/sentiment_model.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "common/error.h"
#include "models/join_runtime.h"

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

namespace {
bool has_pull(const vertex::VertexFunction& fn, const std::string& name) {
  for (const auto& p : fn.pulls)
    if (p.name == name) return true;
  return false;
}
}  // namespace

template <typename T>
SentimentModel<T>::SentimentModel(const vertex::VertexFunction& cell, const SentimentConfig& cfg,
                                  ops::Backend<T>& backend, const vertex::VertexFunction* join_head)
    : cfg_(cfg), be_(backend), params_(backend), arena_(backend) {
  if (join_head == nullptr && cfg.arity != 1)
    fail("model: examples of {} graphs need a join head", cfg.arity);
  if (cfg.vocab < 0 || cfg.features < 0) fail("model: vocab and features must be >= 0");
  if (cfg.vocab == 0 && cfg.features == 0)
    fail("model: no inputs: give an embedding table (vocab > 0) or dense rows (features > 0)");
  if (cfg.vocab > 0 && cfg.features > 0)
    fail("model: a vertex's input id indexes embedding rows or dense rows, not both (vocab {}, "
         "features {})",
         cfg.vocab, cfg.features);
  if (cfg.classes <= 0) fail("model: the head's width must be positive, got {}", cfg.classes);
  vertex::CompileOptions co;
  co.fuse = cfg.fuse;
  co.strided_views = cfg.strided_views;
  plan_ = vertex::compile(cell, co);
  if (plan_.fn.find_output("h") < 0)
    fail("model: the cell '{}' must push an output named 'h'", cell.name);
  if (cfg.vocab > 0 && !has_pull(plan_.fn, "word"))
    fail("model: the cell '{}' must pull 'word' to read the embedding table", cell.name);
  if (cfg.features > 0 && !has_pull(plan_.fn, "x"))
    fail("model: the cell '{}' must pull 'x' to read the dense rows", cell.name);
  if (!join_head && !cfg.head_linear && plan_.fn.find_output("y") < 0)
    fail("model: the cell '{}' must push 'y' (the head's output) when the head is its own",
         cell.name);
  if (cfg.vocab > 0) {
    memory::ParamSpec emb;
    emb.name = "embed";
    emb.shape = {cfg.vocab, cfg.embed};
    emb.init = memory::Init::Uniform;
    emb.scale = cfg.embed_init;
    emb.sparse_rows = true;
    params_.add(emb);
  }
  add_plan_params(plan_, params_);
  if (join_head) {
    join_ = std::make_unique<JoinRunner<T>>(*join_head, cfg.arity, cfg.hidden, cfg.classes, co,
                                            be_, params_, arena_);
    join_->add_params();
  } else if (cfg.head_linear) {
    out_w_ = params_.add({"out.W", {cfg.classes, cfg.hidden}, memory::Init::Xavier, 0.f, false});
    out_b_ = params_.add({"out.b", {cfg.classes}, memory::Init::Zeros, 0.f, false});
  }
  params_.finalize();
  scheduler::ExecOptions train_opts;
  train_opts.profile = cfg.profile;
  train_opts.dedup_pulls = cfg.dedup_pulls;
  scheduler::ExecOptions eval_opts = train_opts;
  eval_opts.training = false;
  train_exec_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, train_opts);
  eval_exec_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, eval_opts);
  if (cfg.vocab > 0) {
    train_exec_->bind_pull("word", "embed");
    eval_exec_->bind_pull("word", "embed");
  }
  if (train_exec_->output_width("h") != cfg.hidden)
    fail("model: the cell pushes h of width {}, the config says hidden={}",
         train_exec_->output_width("h"), cfg.hidden);
  if (join_) join_->make_executors(cfg.profile);
  if (!join_ && !cfg.head_linear && train_exec_->output_width("y") != cfg.classes)
    fail("model: the cell pushes y of width {}, the head's width is {}",
         train_exec_->output_width("y"), cfg.classes);
}

template <typename T>
SentimentModel<T>::~SentimentModel() = default;

template <typename T>
double SentimentModel<T>::train_tuples(const scheduler::GraphBatch& batch,
                                       const std::vector<int>& rows, const float* targets,
                                       T loss_scale, const BatchData& data) {
  if (!join_) fail("model: train_tuples without a join head");
  arena_.reset();
  auto& ex = *train_exec_;
  bind_inputs(ex, data);
  ex.forward(batch);
  T* dh = arena_.alloc(static_cast<size_t>(batch.num_rows) * cfg_.hidden);
  const double loss = join_->run(true, ex.output("h"), batch.num_rows, rows, targets, cfg_.loss,
                                 loss_scale, dh, nullptr);
  ex.set_push_grad("h", dh, cfg_.hidden);
  ex.backward();
  return loss;
}

template <typename T>
double SentimentModel<T>::evaluate_tuples(const scheduler::GraphBatch& batch,
                                          const std::vector<int>& rows, const float* targets,
                                          std::vector<T>* outputs, const BatchData& data) {
  if (!join_) fail("model: evaluate_tuples without a join head");
  arena_.reset();
  auto& ex = *eval_exec_;
  bind_inputs(ex, data);
  ex.forward(batch);
  return join_->run(false, ex.output("h"), batch.num_rows, rows, targets, cfg_.loss, T(0), nullptr,
                    outputs);
}

template <typename T>
void SentimentModel<T>::bind_inputs(scheduler::Executor<T>& ex, const BatchData& data) {
  if (cfg_.features == 0) return;
  if (data.features == nullptr || data.feature_rows <= 0)
    fail("model: the cell reads dense rows ('x', width {}) and the batch has none",
         cfg_.features);
  const size_t n = static_cast<size_t>(data.feature_rows) * cfg_.features;
  T* table = arena_.alloc(n);
  if constexpr (std::is_same_v<T, float>) {
    be_.upload(table, data.features, n * sizeof(T));
  } else {
    host_buf_.assign(data.features, data.features + n);
    be_.upload(table, host_buf_.data(), n * sizeof(T));
  }
  ex.bind_pull_data("x", table, cfg_.features, data.feature_rows);
}

// logits = H Wo^T + bo      [N, C] = [N, H] [C, H]^T   (or the cell's own y)
template <typename T>
void SentimentModel<T>::head_forward(const scheduler::Executor<T>& ex,
                                     const scheduler::GraphBatch& batch) {
  if (!cfg_.head_linear) {
    auto y = ex.output("y");
    logits_ = const_cast<T*>(y.ptr);
    logits_ld_ = y.ld;
    return;
  }
  const int N = batch.num_rows, C = cfg_.classes;
  auto h = ex.output("h");
  logits_ = arena_.alloc(static_cast<size_t>(N) * C);
  logits_ld_ = C;
  be_.copy_rows(N, C, params_.param(out_b_), 0, logits_, C, false);
  be_.gemm(false, true, N, C, cfg_.hidden, T(1), h.ptr, h.ld, params_.param(out_w_), cfg_.hidden,
           T(1), logits_, C);
}

template <typename T>
double SentimentModel<T>::squared_loss(const scheduler::GraphBatch& batch, const BatchData& data,
                                       T scale, T* dlogits, SquaredCounts* sq) {
  const int N = batch.num_rows, C = cfg_.classes;
  if (data.targets == nullptr) fail("model: the squared-error head needs targets with the batch");
  // The head's output is small ([N, C], C a few): read it on the host.
  const T* y = logits_;
  long ld = logits_ld_;
  if (!be_.host_accessible()) {
    host_buf_.resize(static_cast<size_t>(N) * C);
    for (int r = 0; r < N; ++r)
      be_.download(host_buf_.data() + static_cast<size_t>(r) * C, logits_ + r * ld,
                   sizeof(T) * C);
    y = host_buf_.data();
    ld = C;
  }
  if (dlogits) host_grad_.assign(static_cast<size_t>(N) * C, T(0));
  double loss = 0;
  long entries = 0;
  for (int r = 0; r < N; ++r)
    for (int c = 0; c < C; ++c) {
      const float t = data.targets[static_cast<size_t>(r) * C + c];
      if (std::isnan(t)) continue;
      const double d = double(y[r * ld + c]) - double(t);
      loss += d * d;
      ++entries;
      if (dlogits) host_grad_[static_cast<size_t>(r) * C + c] = static_cast<T>(2 * d) * scale;
    }
  if (dlogits) be_.upload(dlogits, host_grad_.data(), sizeof(T) * host_grad_.size());
  if (sq) sq->sum += loss, sq->entries += entries;
  return loss;
}

template <typename T>
double SentimentModel<T>::train_batch(const scheduler::GraphBatch& batch, T loss_scale,
                                      const BatchData& data) {
  if (join_) fail("model: its examples are {} graphs each, joined by its head (train_tuples)", cfg_.arity);
  arena_.reset();
  auto& ex = *train_exec_;
  bind_inputs(ex, data);
  ex.forward(batch);
  head_forward(ex, batch);
  const int N = batch.num_rows, C = cfg_.classes, H = cfg_.hidden;
  T* dlogits = arena_.alloc(static_cast<size_t>(N) * C);
  double loss;
  if (cfg_.loss == HeadLoss::Squared)
    loss = squared_loss(batch, data, loss_scale, dlogits, nullptr);
  else
    loss = be_.softmax_xent(N, C, logits_, logits_ld_, ex.batch_index().label, loss_scale,
                            dlogits, C, nullptr, nullptr);
  if (!cfg_.head_linear) {
    ex.set_push_grad("y", dlogits, C);
    ex.backward();
    return loss;
  }
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
void SentimentModel<T>::evaluate_batch(const scheduler::GraphBatch& batch, EvalCounts& counts,
                                       const BatchData& data, SquaredCounts* sq) {
  if (join_) fail("model: its examples are {} graphs each, joined by its head (evaluate_tuples)", cfg_.arity);
  arena_.reset();
  auto& ex = *eval_exec_;
  bind_inputs(ex, data);
  ex.forward(batch);
  head_forward(ex, batch);
  const int N = batch.num_rows, C = cfg_.classes;
  if (cfg_.loss == HeadLoss::Squared) {
    SquaredCounts local;
    counts.loss += squared_loss(batch, data, T(0), nullptr, &local);
    for (int r = 0; r < N; ++r)
      for (int c = 0; c < C; ++c)
        if (!std::isnan(data.targets[static_cast<size_t>(r) * C + c])) {
          ++counts.vertices;
          break;
        }
    if (sq) sq->sum += local.sum, sq->entries += local.entries;
    return;
  }
  pred_.resize(N);
  long correct = 0;
  counts.loss += be_.softmax_xent(N, C, logits_, logits_ld_, ex.batch_index().label, T(0), nullptr,
                                  C, &correct, pred_.data());
  for (int r = 0; r < N; ++r) counts.vertices += batch.label[r] >= 0;
  const T* host_logits = logits_;  // the root rows' logits, for the binary decision
  long ld = logits_ld_;
  if (!be_.host_accessible()) {
    host_logits_.resize(static_cast<size_t>(N - 1) * ld + C);
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
      const T* row = host_logits + static_cast<size_t>(r) * ld;
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
