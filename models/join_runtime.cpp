// JoinRunner (see join_runtime.h).
#include "models/join_runtime.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"

namespace copse::models {

namespace {
template <typename T>
void softmax_row(T* v, int n) {
  const double mx = *std::max_element(v, v + n);
  double z = 0;
  for (int c = 0; c < n; ++c) z += std::exp(double(v[c]) - mx);
  for (int c = 0; c < n; ++c) v[c] = static_cast<T>(std::exp(double(v[c]) - mx) / z);
}
}  // namespace

template <typename T>
JoinRunner<T>::JoinRunner(const vertex::VertexFunction& head, int arity, int hidden, int width,
                          const vertex::CompileOptions& co, ops::Backend<T>& be,
                          memory::ParamStore<T>& params, memory::Arena<T>& arena)
    : arity_(arity), hidden_(hidden), width_(width), be_(be), params_(params), arena_(arena) {
  if (arity < 2) fail("model: a join head joins 2 or more graphs per example, got {}", arity);
  plan_ = vertex::compile(head, co);
  const auto& fn = plan_.fn;
  if (fn.pulls.size() != static_cast<size_t>(arity))
    fail("model: the join head '{}' must pull exactly in0 .. in{} (it has {} pulls)", fn.name,
         arity - 1, fn.pulls.size());
  for (int j = 0; j < arity; ++j) {
    const std::string name = "in" + std::to_string(j);
    int found = -1;
    for (size_t p = 0; p < fn.pulls.size(); ++p)
      if (fn.pulls[p].name == name) found = static_cast<int>(p);
    if (found < 0) fail("model: the join head '{}' must pull '{}' (graph {}'s h)", fn.name, name, j);
    if (fn.pulls[found].width != hidden)
      fail("model: the join head '{}' pulls '{}' of width {}, the cell's h has width {}", fn.name,
           name, fn.pulls[found].width, hidden);
    pull_node_.push_back(fn.pulls[found].node);
  }
  const int y = fn.find_output("y");
  if (y < 0) fail("model: the join head '{}' must push 'y' (the head's output)", fn.name);
  if (fn.nodes[fn.outputs[y].value].width != width)
    fail("model: the join head '{}' pushes y of width {}, the head's width is {}", fn.name,
         fn.nodes[fn.outputs[y].value].width, width);
}

template <typename T>
JoinRunner<T>::~JoinRunner() {
  if (dev_rows_) be_.deallocate(dev_rows_, dev_cap_ * sizeof(int));
}

template <typename T>
void JoinRunner<T>::add_params() {
  for (const auto& p : plan_.fn.params)
    if (params_.find(p.name) >= 0)
      fail("model: the join head '{}' and the cell both have a parameter '{}'", plan_.fn.name,
           p.name);
  add_plan_params(plan_, params_);
}

template <typename T>
void JoinRunner<T>::make_executors(bool profile) {
  scheduler::ExecOptions o;
  o.profile = profile;
  o.dedup_pulls = false;  // the pulls' gradient rows are read back (node_grad)
  train_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, o);
  o.training = false;
  eval_ = std::make_unique<scheduler::Executor<T>>(plan_, be_, params_, arena_, o);
}

// One single-vertex graph per example; a vertex's input id is its row, so
// the pulled tables are in row order.
template <typename T>
const scheduler::GraphBatch& JoinRunner<T>::head_batch(int tuples) {
  if (tuples == batch_tuples_) return batch_;
  std::vector<scheduler::Graph> gs(tuples);
  for (auto& g : gs) g.add_vertex({}, 0);
  batch_ = scheduler::make_batch(gs);
  for (int r = 0; r < batch_.num_rows; ++r) batch_.input[r] = r;
  batch_tuples_ = tuples;
  return batch_;
}

template <typename T>
int* JoinRunner<T>::device_rows(std::size_t n) {
  if (n > dev_cap_) {
    if (dev_rows_) be_.deallocate(dev_rows_, dev_cap_ * sizeof(int));
    dev_cap_ = std::max(n, 2 * dev_cap_);
    dev_rows_ = static_cast<int*>(be_.allocate(dev_cap_ * sizeof(int)));
  }
  return dev_rows_;
}

template <typename T>
double JoinRunner<T>::run(bool training, ops::RowView<const T> h, int tree_rows,
                          const std::vector<int>& rows, const float* targets, HeadLoss loss,
                          T scale, T* dh, std::vector<T>* outputs) {
  const int B = static_cast<int>(rows.size()) / arity_, H = hidden_, C = width_;
  if (B <= 0 || rows.size() != static_cast<size_t>(B) * arity_)
    fail("model: {} join rows for examples of {} graphs", rows.size(), arity_);
  if (targets == nullptr) fail("model: the join head needs targets (NaN rows: none)");
  const auto& hb = head_batch(B);
  // Row r of in_j is the chosen row of graph j of the example at head row r.
  host_rows_.resize(static_cast<size_t>(B) * arity_);
  for (int j = 0; j < arity_; ++j)
    for (int r = 0; r < B; ++r) {
      const int t = hb.graph_of_row[r];
      const int row = rows[static_cast<size_t>(t) * arity_ + j];
      if (row < 0 || row >= tree_rows)
        fail("model: example {} of the batch, graph {}: row {} outside the batch's {} rows", t, j,
             row, tree_rows);
      host_rows_[static_cast<size_t>(j) * B + r] = row;
    }
  int* idx = device_rows(host_rows_.size());
  be_.upload(idx, host_rows_.data(), sizeof(int) * host_rows_.size());
  auto& ex = training ? *train_ : *eval_;
  for (int j = 0; j < arity_; ++j) {
    T* x = arena_.alloc(static_cast<size_t>(B) * H);
    be_.gather_rows(B, H, h.ptr, h.ld, idx + static_cast<size_t>(j) * B, x, H);
    ex.bind_pull_data("in" + std::to_string(j), x, H, B);
  }
  ex.forward(hb);
  auto y = ex.output("y");
  host_y_.resize(static_cast<size_t>(B) * C);
  for (int r = 0; r < B; ++r)
    be_.download(host_y_.data() + static_cast<size_t>(r) * C, y.ptr + r * y.ld, sizeof(T) * C);
  host_dy_.assign(static_cast<size_t>(B) * C, T(0));
  if (outputs) outputs->assign(static_cast<size_t>(B) * C, T(0));
  double total = 0;
  for (int r = 0; r < B; ++r) {
    const int t = hb.graph_of_row[r];
    const float* p = targets + static_cast<size_t>(t) * C;
    const T* yr = host_y_.data() + static_cast<size_t>(r) * C;
    T* dy = host_dy_.data() + static_cast<size_t>(r) * C;
    T* out = outputs ? outputs->data() + static_cast<size_t>(t) * C : nullptr;
    const bool none = std::isnan(p[0]);  // no target: no loss, no gradient
    if (none) {
      if (out) std::copy_n(yr, C, out);
      if (out && loss == HeadLoss::Softmax) softmax_row(out, C);
      continue;
    }
    if (loss == HeadLoss::Squared) {
      for (int c = 0; c < C; ++c) {
        const double d = double(yr[c]) - double(p[c]);
        total += d * d;
        dy[c] = static_cast<T>(2 * d) * scale;
        if (out) out[c] = yr[c];
      }
      continue;
    }
    // KL(p || q), q = softmax(y): sum_c p_c (log p_c - log q_c); its
    // gradient in y is q * sum(p) - p.
    const double mx = *std::max_element(yr, yr + C);
    double z = 0, psum = 0;
    for (int c = 0; c < C; ++c) z += std::exp(double(yr[c]) - mx), psum += p[c];
    const double lse = mx + std::log(z);
    for (int c = 0; c < C; ++c) {
      const double logq = double(yr[c]) - lse, q = std::exp(logq);
      if (p[c] > 0) total += p[c] * (std::log(double(p[c])) - logq);
      dy[c] = static_cast<T>(q * psum - p[c]) * scale;
      if (out) out[c] = static_cast<T>(q);
    }
  }
  if (!training) return total;
  T* dyd = arena_.alloc(static_cast<size_t>(B) * C);
  be_.upload(dyd, host_dy_.data(), sizeof(T) * host_dy_.size());
  ex.set_push_grad("y", dyd, C);
  ex.backward();
  be_.fill_rows(tree_rows, H, T(0), dh, H);
  for (int j = 0; j < arity_; ++j) {
    auto dx = ex.node_grad(pull_node_[j]);
    be_.scatter_add_rows(B, H, dx.ptr, dx.ld, idx + static_cast<size_t>(j) * B, dh, H);
  }
  return total;
}

template class JoinRunner<float>;
template class JoinRunner<double>;

}  // namespace copse::models
