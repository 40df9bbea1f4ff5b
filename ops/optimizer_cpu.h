// Optimizer update kernels on host memory: dense over a flat array, and
// row-sparse over listed rows of a [rows, width] matrix (embedding tables),
// with the rule and hyper-parameters of a memory::OptimizerConfig
// (clip_norm is the store's business).
//
// Every rule first folds L2 into the gradient, g' = g + l2 * p; g itself is
// not modified. Row-sparse variants apply the same update to rows[0:n_rows]
// of p, g and the state (all [*, width], leading dimension width) and leave
// every other row untouched; rows must be distinct.
//
//   SGD with momentum:  v = mu * v + g';  p -= lr * v.  mu == 0 is plain SGD
//                       (p -= lr * g'), and then v (s0) may be null.
//   Adagrad:            h += g'^2;  p -= lr * g' / (sqrt(h) + eps).  s0 = h.
//   Adam, at step t >= 1 with bias correction:
//     m = b1 * m + (1 - b1) * g';  v = b2 * v + (1 - b2) * g'^2
//     p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).  s0 = m, s1 = v.
//   The row-sparse form is "lazy Adam": m and v of untouched rows neither
//   decay nor move, and t is the global step.
// State slots a rule does not use are ignored (and may be null).
#pragma once

#include <cstddef>

#include "memory/optimizer.h"

namespace copse::ops {

template <typename T>
void optimizer_update_host(const memory::OptimizerConfig& c, long t, std::size_t n, T* p,
                           const T* g, T* s0, T* s1);
template <typename T>
void optimizer_update_rows_host(const memory::OptimizerConfig& c, long t, int n_rows,
                                const int* rows, int width, T* p, const T* g, T* s0, T* s1);

// Non-finite checks: what the update with the same arguments would write
// (parameters and state), computed by the same code and written nowhere.
// Returns the smallest offset from p of an element whose new parameter or
// state value would be inf or NaN (rows: row * width + column), or -1 when
// every one is finite.
template <typename T>
long optimizer_check_host(const memory::OptimizerConfig& c, long t, std::size_t n, const T* p,
                          const T* g, const T* s0, const T* s1);
template <typename T>
long optimizer_check_rows_host(const memory::OptimizerConfig& c, long t, int n_rows,
                               const int* rows, int width, const T* p, const T* g, const T* s0,
                               const T* s1);

}  // namespace copse::ops
