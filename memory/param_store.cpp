// ParamStore: flat parameter/gradient/optimizer-state buffers, init, sparse
// row bookkeeping, clipping and the optimizer step.
#include "memory/param_store.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <random>

#include "common/error.h"

namespace copse::memory {

namespace {

std::size_t round_up(std::size_t n, std::size_t align) { return (n + align - 1) / align * align; }

// Mixes the user seed with the parameter name into one 64-bit seed
// (FNV-1a of the name, then a splitmix64 finaliser).
std::uint64_t param_seed(std::uint64_t seed, const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  std::uint64_t z = seed ^ h;
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) from the top 53 bits (the same on every standard library,
// unlike std::uniform_real_distribution).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Standard normal by Box-Muller (u1 in (0, 1] keeps the log finite).
double standard_normal(std::mt19937_64& rng) {
  double u1 = static_cast<double>((rng() >> 11) + 1) * 0x1.0p-53;
  double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

std::string lower(const std::string& s) {
  std::string out;
  for (char c : s) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const char* init_name(Init init) {
  switch (init) {
    case Init::Zeros:
      return "zeros";
    case Init::Uniform:
      return "uniform";
    case Init::Normal:
      return "normal";
    case Init::Xavier:
      return "xavier";
  }
  return "?";
}

}  // namespace

template <typename T>
ParamStore<T>::ParamStore(ops::Backend<T>& backend) : backend_(backend) {}

template <typename T>
ParamStore<T>::~ParamStore() {
  try {
    release();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "copse: [ParamStore] freeing memory failed: %s\n", e.what());
  }
}

template <typename T>
void ParamStore<T>::release() {
  const std::size_t bytes = total_ * sizeof(T);
  if (params_) backend_.deallocate(params_, bytes);
  if (grads_) backend_.deallocate(grads_, bytes);
  if (state_) backend_.deallocate(state_, bytes * state_slots_);
  params_ = grads_ = state_ = nullptr;
}

template <typename T>
void ParamStore<T>::check_id(int id, const char* where) const {
  if (id < 0 || id >= size())
    fail("[ParamStore::{}] parameter id {} out of range (the store has {})", where, id, size());
}

template <typename T>
void ParamStore<T>::check_finalized(const char* where) const {
  if (!finalized_) fail("[ParamStore::{}] called before finalize()", where);
}

template <typename T>
int ParamStore<T>::add(const ParamSpec& spec) {
  if (finalized_) fail("[ParamStore::add] '{}' added after finalize()", spec.name);
  if (spec.name.empty()) fail("[ParamStore::add] a parameter needs a name");
  if (find(spec.name) >= 0) fail("[ParamStore::add] duplicate parameter name '{}'", spec.name);
  std::size_t n = 1;
  for (int d : spec.shape) {
    if (d <= 0) fail("[ParamStore::add] '{}' has a non-positive dimension {}", spec.name, d);
    if (n > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(d))
      fail("[ParamStore::add] '{}' is too large", spec.name);
    n *= static_cast<std::size_t>(d);
  }
  if (spec.sparse_rows) {
    if (spec.shape.empty())
      fail("[ParamStore::add] sparse_rows '{}' needs a row dimension", spec.name);
    if (n / static_cast<std::size_t>(spec.shape[0]) >
        static_cast<std::size_t>(std::numeric_limits<int>::max()))
      fail("[ParamStore::add] sparse_rows '{}' has rows wider than an int", spec.name);
  }
  if (spec.scale < 0.f || !std::isfinite(spec.scale))
    fail("[ParamStore::add] '{}' has an invalid init scale {}", spec.name, spec.scale);
  if ((spec.init == Init::Uniform || spec.init == Init::Normal) && spec.scale == 0.f)
    fail("[ParamStore::add] '{}' uses {} init with scale 0 (use Init::Zeros for zeros)", spec.name,
         init_name(spec.init));
  specs_.push_back(spec);
  numel_.push_back(n);
  offset_.push_back(0);
  sparse_.emplace_back();
  return size() - 1;
}

template <typename T>
int ParamStore<T>::find(const std::string& name) const {
  for (int i = 0; i < size(); ++i)
    if (specs_[i].name == name) return i;
  return -1;
}

template <typename T>
int ParamStore<T>::id(const std::string& name) const {
  int i = find(name);
  if (i >= 0) return i;
  std::vector<std::string> close, known;
  const std::string key = lower(name);
  for (const ParamSpec& s : specs_) {
    const std::string other = lower(s.name);
    std::size_t limit = std::max<std::size_t>(2, key.size() / 3);
    bool near = edit_distance(key, other) <= limit ||
                (!key.empty() && other.find(key) != std::string::npos) ||
                key.find(other) != std::string::npos;
    if (near) close.push_back("'" + s.name + "'");
    if (known.size() < 20) known.push_back(s.name);
  }
  std::string msg = fmt::format("[ParamStore] unknown parameter '{}'", name);
  if (!close.empty()) msg += fmt::format("; did you mean {}?", fmt::join(close, " or "));
  if (known.empty())
    msg += "; the store has no parameters";
  else
    msg += fmt::format("; known ({}): {}{}", size(), fmt::join(known, ", "),
                       size() > static_cast<int>(known.size()) ? ", ..." : "");
  throw Error(msg);
}

template <typename T>
void ParamStore<T>::finalize() {
  if (finalized_) fail("[ParamStore::finalize] called twice");
  std::size_t at = 0;
  for (int pass = 0; pass < 2; ++pass) {  // dense params first, then sparse ones
    for (int i = 0; i < size(); ++i) {
      if (specs_[i].sparse_rows != (pass == 1)) continue;
      offset_[i] = at;
      at = round_up(at + numel_[i], kAlignElements);
      if (pass == 1) sparse_ids_.push_back(i);
    }
    if (pass == 0) dense_ = at;
  }
  total_ = at;
  if (total_ > 0) {
    params_ = static_cast<T*>(backend_.allocate(total_ * sizeof(T)));
    grads_ = static_cast<T*>(backend_.allocate(total_ * sizeof(T)));
    if (!params_ || !grads_)
      fail("[ParamStore::finalize] {} could not allocate {} elements", backend_.name(), total_);
    fill(params_, total_, T(0));
    fill(grads_, total_, T(0));
  }
  finalized_ = true;
}

template <typename T>
const ParamSpec& ParamStore<T>::spec(int id) const {
  check_id(id, "spec");
  return specs_[id];
}

template <typename T>
std::size_t ParamStore<T>::numel(int id) const {
  check_id(id, "numel");
  return numel_[id];
}

template <typename T>
std::size_t ParamStore<T>::offset(int id) const {
  check_id(id, "offset");
  check_finalized("offset");
  return offset_[id];
}

template <typename T>
int ParamStore<T>::rows(int id) const {
  check_id(id, "rows");
  return specs_[id].shape.empty() ? 1 : specs_[id].shape[0];
}

template <typename T>
int ParamStore<T>::row_width(int id) const {
  return static_cast<int>(numel_[id] / static_cast<std::size_t>(rows(id)));
}

template <typename T>
T* ParamStore<T>::param(int id) {
  check_id(id, "param");
  check_finalized("param");
  return params_ + offset_[id];
}

template <typename T>
const T* ParamStore<T>::param(int id) const {
  check_id(id, "param");
  check_finalized("param");
  return params_ + offset_[id];
}

template <typename T>
T* ParamStore<T>::grad(int id) {
  check_id(id, "grad");
  check_finalized("grad");
  return grads_ + offset_[id];
}

template <typename T>
const T* ParamStore<T>::grad(int id) const {
  check_id(id, "grad");
  check_finalized("grad");
  return grads_ + offset_[id];
}

template <typename T>
void ParamStore<T>::fill(T* dst, std::size_t n, T value) {
  constexpr std::size_t kChunk = std::size_t(1) << 30;  // fill_rows takes an int width
  for (std::size_t done = 0; done < n; done += kChunk) {
    int w = static_cast<int>(std::min(kChunk, n - done));
    backend_.fill_rows(1, w, value, dst + done, w);
  }
}

template <typename T>
void ParamStore<T>::init(std::uint64_t seed) {
  check_finalized("init");
  for (int i = 0; i < size(); ++i) {
    const ParamSpec& s = specs_[i];
    std::mt19937_64 rng(param_seed(seed, s.name));
    std::vector<T> host(numel_[i], T(0));
    double bound = s.scale;
    if (s.init == Init::Xavier) {
      double fan_out = s.shape.empty() ? 1.0 : s.shape[0];
      double fan_in = s.shape.size() == 1 ? fan_out : static_cast<double>(numel_[i]) / fan_out;
      bound = (s.scale > 0.f ? s.scale : 1.0) * std::sqrt(6.0 / (fan_in + fan_out));
    }
    switch (s.init) {
      case Init::Zeros:
        break;
      case Init::Uniform:
      case Init::Xavier:
        for (T& x : host) x = static_cast<T>((2.0 * uniform01(rng) - 1.0) * bound);
        break;
      case Init::Normal:
        for (T& x : host) x = static_cast<T>(standard_normal(rng) * bound);
        break;
    }
    backend_.upload(params_ + offset_[i], host.data(), host.size() * sizeof(T));
    widen_params(host);
  }
}

template <typename T>
void ParamStore<T>::set_optimizer(const OptimizerConfig& cfg) {
  check_finalized("set_optimizer");
  cfg.validate();
  int slots = 0;
  switch (cfg.kind) {
    case OptimizerConfig::Sgd:
      slots = cfg.momentum > 0.f ? 1 : 0;
      break;
    case OptimizerConfig::Adagrad:
      slots = 1;
      break;
    case OptimizerConfig::Adam:
      slots = 2;
      break;
  }
  if (state_) backend_.deallocate(state_, total_ * sizeof(T) * state_slots_);
  state_ = nullptr;
  state_slots_ = slots;
  if (slots > 0 && total_ > 0) {
    state_ = static_cast<T*>(backend_.allocate(total_ * sizeof(T) * slots));
    if (!state_)
      fail("[ParamStore::set_optimizer] {} could not allocate optimizer state", backend_.name());
    fill(state_, total_ * slots, T(0));
  }
  bounds_.s_max[0] = bounds_.s_max[1] = 0;  // the state starts at zero
  bounds_.s_neg[0] = bounds_.s_neg[1] = false;
  cfg_ = cfg;
  has_optimizer_ = true;
  optimizer_steps_ = 0;
}

template <typename T>
void ParamStore<T>::set_learning_rate(float lr) {
  if (!(lr > 0.f) || !std::isfinite(lr))
    fail("[ParamStore::set_learning_rate] lr must be > 0, got {}", lr);
  cfg_.lr = lr;
}

template <typename T>
void ParamStore<T>::touch_rows(int id, const int* rows, int n) {
  check_id(id, "touch_rows");
  const ParamSpec& s = specs_[id];
  if (!s.sparse_rows) fail("[ParamStore::touch_rows] '{}' is not a sparse_rows parameter", s.name);
  const int limit = s.shape[0];
  SparseRows& sr = sparse_[id];
  for (int k = 0; k < n; ++k) {
    if (rows[k] < 0 || rows[k] >= limit)
      fail("[ParamStore::touch_rows] row {} out of range for '{}' with {} rows", rows[k], s.name,
           limit);
    sr.touched.push_back(rows[k]);
  }
  if (n > 0) sr.unique = false;
}

template <typename T>
const std::vector<int>& ParamStore<T>::touched_rows(int id) {
  check_id(id, "touched_rows");
  if (!specs_[id].sparse_rows)
    fail("[ParamStore::touched_rows] '{}' is not a sparse_rows parameter", specs_[id].name);
  SparseRows& sr = sparse_[id];
  if (!sr.unique) {
    std::sort(sr.touched.begin(), sr.touched.end());
    sr.touched.erase(std::unique(sr.touched.begin(), sr.touched.end()), sr.touched.end());
    sr.unique = true;
  }
  return sr.touched;
}

template <typename T>
void ParamStore<T>::zero_grads() {
  check_finalized("zero_grads");
  fill(grads_, dense_, T(0));
  for (int i : sparse_ids_) {
    SparseRows& sr = sparse_[i];
    const int w = row_width(i);
    T* g = grads_ + offset_[i];
    const std::vector<int>& touched = touched_rows(i);
    backend_.fill_listed_rows(static_cast<int>(touched.size()), touched.data(), w, T(0), g);
    backend_.fill_listed_rows(static_cast<int>(sr.stale.size()), sr.stale.data(), w, T(0), g);
    sr.touched.clear();
    sr.stale.clear();
  }
}

template <typename T>
double ParamStore<T>::grad_norm() {
  check_finalized("grad_norm");
  double sum = dense_ > 0 ? backend_.sum_squares(dense_, grads_) : 0.0;
  for (int i : sparse_ids_) {
    const std::vector<int>& rows = touched_rows(i);
    sum += backend_.sum_squares_listed_rows(static_cast<int>(rows.size()), rows.data(),
                                            row_width(i), grads_ + offset_[i]);
  }
  return std::sqrt(sum);
}

template <typename T>
void ParamStore<T>::scale_grads(T s) {
  if (dense_ > 0) backend_.scale(dense_, s, grads_);
  for (int i : sparse_ids_) {
    const std::vector<int>& rows = touched_rows(i);
    backend_.scale_listed_rows(static_cast<int>(rows.size()), rows.data(), row_width(i), s,
                               grads_ + offset_[i]);
  }
}

// The tags of the non-finite checks: 0 is the dense buffer (offsets from
// params_), 1 + id a sparse parameter's rows (offsets from its first row).
template <typename T>
std::string ParamStore<T>::prepare_step(double grad_bound) {
  check_finalized("prepare_step");
  if (!has_optimizer_) fail("[ParamStore::prepare_step] called before set_optimizer()");
  if (prepared_)
    fail("[ParamStore::prepare_step] the previous step was neither applied nor discarded");
  if (sync_) sync_->sync(*this);
  if (cfg_.clip_norm > 0.f) {
    double norm = grad_norm();
    if (!std::isfinite(norm)) fail("[ParamStore::step] gradient norm is {}", norm);
    if (norm > cfg_.clip_norm) scale_grads(static_cast<T>(cfg_.clip_norm / norm));
  }
  prepared_ = true;
  if (!check_updates_) return "";
  const long t = optimizer_steps_ + 1;
  // Clipped (or already within the clip), no entry exceeds the clip norm.
  if (cfg_.clip_norm > 0.f && (grad_bound < 0 || grad_bound > cfg_.clip_norm))
    grad_bound = cfg_.clip_norm;
  if (update_stays_finite(cfg_, t, bounds_, grad_bound,
                          static_cast<double>(std::numeric_limits<T>::max())))
    return "";
  ++elementwise_checks_;
  const T* s0 = state_;
  const T* s1 = state_slots_ > 1 ? state_ + total_ : nullptr;
  if (dense_ > 0) backend_.optimizer_check(dense_config(), t, dense_, params_, grads_, s0, s1, 0);
  for (int i : sparse_ids_) {
    const std::vector<int>& rows = touched_rows(i);
    const std::size_t o = offset_[i];
    backend_.optimizer_check_rows(cfg_, t, static_cast<int>(rows.size()), rows.data(), row_width(i),
                                  params_ + o, grads_ + o, s0 ? s0 + o : nullptr,
                                  s1 ? s1 + o : nullptr, 1 + i);
  }
  return describe_nonfinite(backend_.take_nonfinite());
}

template <typename T>
std::string ParamStore<T>::describe_nonfinite(const typename ops::Backend<T>::NonFinite& at) {
  if (!at.found()) return "";
  if (at.tag > 0) return specs_[at.tag - 1].name;
  const auto e = static_cast<std::size_t>(at.offset);
  for (int k = 0; k < size(); ++k)
    if (!specs_[k].sparse_rows && e >= offset_[k] && e < offset_[k] + numel_[k])
      return specs_[k].name;
  return "alignment padding";  // cannot happen: padding stays zero
}

template <typename T>
void ParamStore<T>::apply_step() {
  if (!prepared_) fail("[ParamStore::apply_step] called without prepare_step()");
  ++optimizer_steps_;
  const long t = optimizer_steps_;
  T* s0 = state_;
  T* s1 = state_slots_ > 1 ? state_ + total_ : nullptr;
  backend_.take_written_bounds();  // nothing stale
  backend_.optimizer_update(dense_config(), t, dense_, params_, grads_, s0, s1);
  for (int i : sparse_ids_) {
    const std::vector<int>& rows = touched_rows(i);
    const std::size_t o = offset_[i];
    backend_.optimizer_update_rows(cfg_, t, static_cast<int>(rows.size()), rows.data(),
                                   row_width(i), params_ + o, grads_ + o, s0 ? s0 + o : nullptr,
                                   s1 ? s1 + o : nullptr);
  }
  bounds_.widen(backend_.take_written_bounds());
  finish_step();
  ++step_count_;
}

template <typename T>
void ParamStore<T>::discard_step() {
  if (!prepared_) fail("[ParamStore::discard_step] called without prepare_step()");
  finish_step();
}

template <typename T>
void ParamStore<T>::finish_step() {
  for (int i : sparse_ids_) {
    SparseRows& sr = sparse_[i];
    const std::vector<int>& rows = touched_rows(i);
    std::vector<int> merged;
    std::set_union(sr.stale.begin(), sr.stale.end(), rows.begin(), rows.end(),
                   std::back_inserter(merged));
    sr.stale.swap(merged);
    sr.touched.clear();
    sr.unique = true;
  }
  prepared_ = false;
}

template <typename T>
void ParamStore<T>::step() {
  const std::string bad = prepare_step();
  if (!bad.empty()) {
    discard_step();
    fail("[ParamStore::step] the update would make '{}' non-finite; nothing was written", bad);
  }
  apply_step();
}

template <typename T>
void ParamStore<T>::widen_params(const std::vector<T>& values) {
  for (T v : values) bounds_.p_max = std::max(bounds_.p_max, std::abs(static_cast<double>(v)));
  if (!std::isfinite(bounds_.p_max)) bounds_.known = false;
}

template <typename T>
std::vector<T> ParamStore<T>::get_flat_host(int which) const {
  check_finalized("get_flat_host");
  if (which < -1 || which >= state_slots_)
    fail("[ParamStore::get_flat_host] no buffer {} (optimizer state has {} slots)", which,
         state_slots_);
  std::vector<T> host(total_);
  const T* src = which < 0 ? params_ : state_ + total_ * which;
  backend_.download(host.data(), src, total_ * sizeof(T));
  return host;
}

template <typename T>
void ParamStore<T>::set_flat_host(int which, const std::vector<T>& values) {
  check_finalized("set_flat_host");
  if (which < -1 || which >= state_slots_)
    fail("[ParamStore::set_flat_host] no buffer {} (optimizer state has {} slots)", which,
         state_slots_);
  if (values.size() != total_)
    fail("[ParamStore::set_flat_host] buffer has {} elements, got {}", total_, values.size());
  T* dst = which < 0 ? params_ : state_ + total_ * which;
  backend_.upload(dst, values.data(), total_ * sizeof(T));
  if (which < 0) {
    widen_params(values);
  } else if (which < 2) {
    for (T v : values) {
      bounds_.s_max[which] = std::max(bounds_.s_max[which], std::abs(static_cast<double>(v)));
      bounds_.s_neg[which] = bounds_.s_neg[which] || std::signbit(v);
    }
    if (!std::isfinite(bounds_.s_max[which])) bounds_.known = false;
  }
}

template <typename T>
void ParamStore<T>::set_step_counts(long step_count, long optimizer_steps) {
  step_count_ = step_count;
  optimizer_steps_ = optimizer_steps;
}

template <typename T>
std::vector<float> ParamStore<T>::get_host(int id) const {
  check_id(id, "get_host");
  check_finalized("get_host");
  std::vector<T> host(numel_[id]);
  backend_.download(host.data(), params_ + offset_[id], host.size() * sizeof(T));
  return std::vector<float>(host.begin(), host.end());
}

template <typename T>
void ParamStore<T>::set_host(int id, const std::vector<float>& values) {
  check_id(id, "set_host");
  check_finalized("set_host");
  if (values.size() != numel_[id])
    fail("[ParamStore::set_host] '{}' has {} elements, got {}", specs_[id].name, numel_[id],
         values.size());
  std::vector<T> host(values.begin(), values.end());
  backend_.upload(params_ + offset_[id], host.data(), host.size() * sizeof(T));
  widen_params(host);
}

template class ParamStore<float>;
template class ParamStore<double>;

}  // namespace copse::memory
