// Optimizer update kernels on host memory (see ops/optimizer_cpu.h for the math).
#include "ops/optimizer_cpu.h"

#include <cmath>
#include <cstddef>

#include "common/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace copse::ops {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr std::ptrdiff_t kParallelMin = 1 << 15;

// v = mu * v + g';  p -= lr * v   (v unused when mu == 0)
template <typename T>
void sgd_span(std::ptrdiff_t n, T* p, const T* g, T* v, T lr, T mu, T l2) {
  if (mu == T(0)) {
    for (std::ptrdiff_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + l2 * p[i]);
    return;
  }
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    v[i] = mu * v[i] + (g[i] + l2 * p[i]);
    p[i] -= lr * v[i];
  }
}

// h += g'^2;  p -= lr * g' / (sqrt(h) + eps)
template <typename T>
void adagrad_span(std::ptrdiff_t n, T* p, const T* g, T* h, T lr, T eps, T l2) {
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    T gi = g[i] + l2 * p[i];
    h[i] += gi * gi;
    p[i] -= lr * gi / (std::sqrt(h[i]) + eps);
  }
}

// m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;  p -= lr * (m*c1) / (sqrt(v*c2) + eps)
// with c1 = 1 / (1 - b1^t), c2 = 1 / (1 - b2^t).
template <typename T>
void adam_span(std::ptrdiff_t n, T* p, const T* g, T* m, T* v, T lr, T b1, T b2, T eps, T l2, T c1,
               T c2) {
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    T gi = g[i] + l2 * p[i];
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    p[i] -= lr * (m[i] * c1) / (std::sqrt(v[i] * c2) + eps);
  }
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

}  // namespace

template <typename T>
void sgd_update(std::size_t n, T* p, const T* g, T* v, T lr, T mu, T l2) {
  COPSE_ASSERT(mu == T(0) || v != nullptr);
  parallel_blocks(n, [&](std::ptrdiff_t b, std::ptrdiff_t k) {
    sgd_span(k, p + b, g + b, mu == T(0) ? nullptr : v + b, lr, mu, l2);
  });
}

template <typename T>
void sgd_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* v, T lr, T mu,
                     T l2) {
  COPSE_ASSERT(mu == T(0) || v != nullptr);
  for_rows(n_rows, rows, width, [&](std::ptrdiff_t o) {
    sgd_span<T>(width, p + o, g + o, mu == T(0) ? nullptr : v + o, lr, mu, l2);
  });
}

template <typename T>
void adagrad_update(std::size_t n, T* p, const T* g, T* h, T lr, T eps, T l2) {
  parallel_blocks(n, [&](std::ptrdiff_t b, std::ptrdiff_t k) {
    adagrad_span(k, p + b, g + b, h + b, lr, eps, l2);
  });
}

template <typename T>
void adagrad_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* h, T lr,
                         T eps, T l2) {
  for_rows(n_rows, rows, width,
           [&](std::ptrdiff_t o) { adagrad_span<T>(width, p + o, g + o, h + o, lr, eps, l2); });
}

template <typename T>
void adam_update(std::size_t n, T* p, const T* g, T* m, T* v, T lr, T b1, T b2, T eps, T l2,
                 long t) {
  T c1, c2;
  bias_corrections(b1, b2, t, &c1, &c2);
  parallel_blocks(n, [&](std::ptrdiff_t b, std::ptrdiff_t k) {
    adam_span(k, p + b, g + b, m + b, v + b, lr, b1, b2, eps, l2, c1, c2);
  });
}

template <typename T>
void adam_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* m, T* v, T lr,
                      T b1, T b2, T eps, T l2, long t) {
  T c1, c2;
  bias_corrections(b1, b2, t, &c1, &c2);
  for_rows(n_rows, rows, width, [&](std::ptrdiff_t o) {
    adam_span<T>(width, p + o, g + o, m + o, v + o, lr, b1, b2, eps, l2, c1, c2);
  });
}

#define COPSE_INSTANTIATE_OPTIMIZERS(T)                                                        \
  template void sgd_update<T>(std::size_t, T*, const T*, T*, T, T, T);                         \
  template void sgd_update_rows<T>(int, const int*, int, T*, const T*, T*, T, T, T);           \
  template void adagrad_update<T>(std::size_t, T*, const T*, T*, T, T, T);                     \
  template void adagrad_update_rows<T>(int, const int*, int, T*, const T*, T*, T, T, T);       \
  template void adam_update<T>(std::size_t, T*, const T*, T*, T*, T, T, T, T, T, long);        \
  template void adam_update_rows<T>(int, const int*, int, T*, const T*, T*, T*, T, T, T, T, T, \
                                    long);
COPSE_INSTANTIATE_OPTIMIZERS(float)
COPSE_INSTANTIATE_OPTIMIZERS(double)
#undef COPSE_INSTANTIATE_OPTIMIZERS

}  // namespace copse::ops
