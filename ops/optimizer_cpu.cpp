// Optimizer update kernels on host memory (see ops/optimizer_cpu.h for the math).
#include "ops/optimizer_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace copse::ops {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr std::ptrdiff_t kParallelMin = 1 << 15;

// The rules, one element at a time: p and the state slots are updated in
// place from g. The update loops and the non-finite checks below run these
// same functions, so a check sees exactly the values an update would write.

// v = mu * v + g';  p -= lr * v   (v unused when mu == 0)
template <typename T>
struct SgdRule {
  T lr, mu, l2;
  void operator()(T& p, T g, T& v, T&) const {
    if (mu == T(0)) {
      p -= lr * (g + l2 * p);
      return;
    }
    v = mu * v + (g + l2 * p);
    p -= lr * v;
  }
};

// h += g'^2;  p -= lr * g' / (sqrt(h) + eps)
template <typename T>
struct AdagradRule {
  T lr, eps, l2;
  void operator()(T& p, T g, T& h, T&) const {
    T gi = g + l2 * p;
    h += gi * gi;
    p -= lr * gi / (std::sqrt(h) + eps);
  }
};

// m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;  p -= lr * (m*c1) / (sqrt(v*c2) + eps)
// with c1 = 1 / (1 - b1^t), c2 = 1 / (1 - b2^t).
template <typename T>
struct AdamRule {
  T lr, b1, b2, eps, l2, c1, c2;
  void operator()(T& p, T g, T& m, T& v) const {
    T gi = g + l2 * p;
    m = b1 * m + (T(1) - b1) * gi;
    v = b2 * v + (T(1) - b2) * gi * gi;
    p -= lr * (m * c1) / (std::sqrt(v * c2) + eps);
  }
};

// 1 when x is inf or NaN (all exponent bits set), 0 otherwise: an integer
// test, so that the check loops vectorise as OR reductions.
inline unsigned nonfinite(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x7f800000u) == 0x7f800000u;
}
inline unsigned nonfinite(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// Updates p[0:n] and the state in place. s0 / s1 may be null when the rule
// does not use them (SGD without momentum; every rule but Adam for s1).
template <typename T, typename Rule>
void update_span(const Rule& rule, std::ptrdiff_t n, T* p, const T* g, T* s0, T* s1) {
  T dummy0 = T(0), dummy1 = T(0);
  if (!s0) {
    for (std::ptrdiff_t i = 0; i < n; ++i) rule(p[i], g[i], dummy0, dummy1);
  } else if (!s1) {
    for (std::ptrdiff_t i = 0; i < n; ++i) rule(p[i], g[i], s0[i], dummy1);
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) rule(p[i], g[i], s0[i], s1[i]);
  }
}

// Whether the update of [0, n) would write any non-finite parameter or
// state value; writes nothing.
template <typename T, typename Rule>
bool check_span(const Rule& rule, std::ptrdiff_t n, const T* p, const T* g, const T* s0,
                const T* s1) {
  unsigned bad = 0;
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    T np = p[i], n0 = s0 ? s0[i] : T(0), n1 = s1 ? s1[i] : T(0);
    rule(np, g[i], n0, n1);
    bad |= nonfinite(np) | (s0 ? nonfinite(n0) : 0u) | (s1 ? nonfinite(n1) : 0u);
  }
  return bad != 0;
}

// The first i in [0, n) whose update is not finite, or -1 (the rare path
// after check_span said yes).
template <typename T, typename Rule>
long first_nonfinite(const Rule& rule, std::ptrdiff_t n, const T* p, const T* g, const T* s0,
                     const T* s1) {
  for (std::ptrdiff_t i = 0; i < n; ++i)
    if (check_span<T>(rule, 1, p + i, g + i, s0 ? s0 + i : nullptr, s1 ? s1 + i : nullptr))
      return static_cast<long>(i);
  return -1;
}

// Splits [0, n) into one contiguous block per thread and calls body(begin, count).
template <typename Body>
void parallel_blocks(std::size_t n, Body body) {
  auto total = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel if (total >= kParallelMin)
  {
#ifdef _OPENMP
    std::ptrdiff_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
    std::ptrdiff_t nt = 1, tid = 0;
#endif
    std::ptrdiff_t begin = total * tid / nt, end = total * (tid + 1) / nt;
    if (end > begin) body(begin, end - begin);
  }
}

// Calls body(row offset in elements) for each listed row.
template <typename Body>
void for_rows(int n_rows, const int* rows, int width, Body body) {
  COPSE_ASSERT(n_rows >= 0 && width >= 0);
  const bool parallel = static_cast<std::ptrdiff_t>(n_rows) * width >= kParallelMin;
#pragma omp parallel for schedule(static) if (parallel)
  for (int i = 0; i < n_rows; ++i) body(static_cast<std::ptrdiff_t>(rows[i]) * width);
}

template <typename T>
void bias_corrections(T b1, T b2, long t, T* c1, T* c2) {
  COPSE_ASSERT(t >= 1);
  double td = static_cast<double>(t);
  *c1 = static_cast<T>(1.0 / (1.0 - std::pow(static_cast<double>(b1), td)));
  *c2 = static_cast<T>(1.0 / (1.0 - std::pow(static_cast<double>(b2), td)));
}

// Calls fn(rule) with the rule of `c` at step t (Adam's bias corrections).
template <typename T, typename Fn>
auto with_rule(const memory::OptimizerConfig& c, long t, Fn fn) {
  const T lr = static_cast<T>(c.lr), l2 = static_cast<T>(c.l2), eps = static_cast<T>(c.eps);
  switch (c.kind) {
    case memory::OptimizerConfig::Adagrad:
      return fn(AdagradRule<T>{lr, eps, l2});
    case memory::OptimizerConfig::Adam: {
      const T b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
      T c1, c2;
      bias_corrections(b1, b2, t, &c1, &c2);
      return fn(AdamRule<T>{lr, b1, b2, eps, l2, c1, c2});
    }
    case memory::OptimizerConfig::Sgd:
      break;
  }
  return fn(SgdRule<T>{lr, static_cast<T>(c.momentum), l2});
}

// The state slots the rule of `c` uses (null for the others).
template <typename T, typename S>
void used_slots(const memory::OptimizerConfig& c, S*& s0, S*& s1) {
  if (c.kind != memory::OptimizerConfig::Adam) s1 = nullptr;
  if (c.kind == memory::OptimizerConfig::Sgd && c.momentum == 0.f) s0 = nullptr;
  if (c.kind != memory::OptimizerConfig::Sgd || c.momentum != 0.f) COPSE_ASSERT(s0 != nullptr);
  if (c.kind == memory::OptimizerConfig::Adam) COPSE_ASSERT(s1 != nullptr);
}

template <typename T>
const T* at(const T* x, std::ptrdiff_t o) {
  return x ? x + o : nullptr;
}
template <typename T>
T* at(T* x, std::ptrdiff_t o) {
  return x ? x + o : nullptr;
}

}  // namespace

template <typename T>
void optimizer_update_host(const memory::OptimizerConfig& c, long t, std::size_t n, T* p,
                           const T* g, T* s0, T* s1) {
  used_slots<T>(c, s0, s1);
  with_rule<T>(c, t, [&](const auto& rule) {
    parallel_blocks(n, [&](std::ptrdiff_t b, std::ptrdiff_t k) {
      update_span<T>(rule, k, p + b, g + b, at(s0, b), at(s1, b));
    });
    return 0;
  });
}

template <typename T>
void optimizer_update_rows_host(const memory::OptimizerConfig& c, long t, int n_rows,
                                const int* rows, int width, T* p, const T* g, T* s0, T* s1) {
  used_slots<T>(c, s0, s1);
  with_rule<T>(c, t, [&](const auto& rule) {
    for_rows(n_rows, rows, width, [&](std::ptrdiff_t o) {
      update_span<T>(rule, width, p + o, g + o, at(s0, o), at(s1, o));
    });
    return 0;
  });
}

template <typename T>
long optimizer_check_host(const memory::OptimizerConfig& c, long t, std::size_t n, const T* p,
                          const T* g, const T* s0, const T* s1) {
  used_slots<T>(c, s0, s1);
  return with_rule<T>(c, t, [&](const auto& rule) {
    long first = -1;
    parallel_blocks(n, [&](std::ptrdiff_t b, std::ptrdiff_t k) {
      if (!check_span<T>(rule, k, p + b, g + b, at(s0, b), at(s1, b))) return;
      long i = first_nonfinite<T>(rule, k, p + b, g + b, at(s0, b), at(s1, b));
      i = i < 0 ? static_cast<long>(b) : i + static_cast<long>(b);
#pragma omp critical(copse_optimizer_check)
      if (first < 0 || i < first) first = i;
    });
    return first;
  });
}

template <typename T>
long optimizer_check_rows_host(const memory::OptimizerConfig& c, long t, int n_rows,
                               const int* rows, int width, const T* p, const T* g, const T* s0,
                               const T* s1) {
  used_slots<T>(c, s0, s1);
  return with_rule<T>(c, t, [&](const auto& rule) {
    long first = -1;
    for (int r = 0; r < n_rows; ++r) {
      const std::ptrdiff_t o = static_cast<std::ptrdiff_t>(rows[r]) * width;
      if (!check_span<T>(rule, width, p + o, g + o, at(s0, o), at(s1, o))) continue;
      long i = static_cast<long>(o) +
               std::max(0L, first_nonfinite<T>(rule, width, p + o, g + o, at(s0, o), at(s1, o)));
      if (first < 0 || i < first) first = i;
    }
    return first;
  });
}

#define COPSE_INSTANTIATE_OPTIMIZERS(T)                                                         \
  template void optimizer_update_host<T>(const memory::OptimizerConfig&, long, std::size_t, T*, \
                                         const T*, T*, T*);                                     \
  template void optimizer_update_rows_host<T>(const memory::OptimizerConfig&, long, int,        \
                                              const int*, int, T*, const T*, T*, T*);           \
  template long optimizer_check_host<T>(const memory::OptimizerConfig&, long, std::size_t,      \
                                        const T*, const T*, const T*, const T*);                \
  template long optimizer_check_rows_host<T>(const memory::OptimizerConfig&, long, int,         \
                                             const int*, int, const T*, const T*, const T*,     \
                                             const T*);
COPSE_INSTANTIATE_OPTIMIZERS(float)
COPSE_INSTANTIATE_OPTIMIZERS(double)
#undef COPSE_INSTANTIATE_OPTIMIZERS

}  // namespace copse::ops
