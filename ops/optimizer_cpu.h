// Optimizer update kernels on host memory: dense over a flat array, and
// row-sparse over listed rows of a [rows, width] matrix (embedding tables).
#pragma once

#include <cstddef>

namespace copse::ops {

// All variants first fold L2 into the gradient, g' = g + l2 * p; g itself is
// not modified. Row-sparse variants apply the same update to rows[0:n_rows]
// of p, g and the state (all [*, width], leading dimension width) and leave
// every other row untouched; rows must be distinct.

// SGD with momentum:  v = mu * v + g';  p -= lr * v.
// mu == 0 is plain SGD (p -= lr * g'), and then v may be null.
template <typename T>
void sgd_update(std::size_t n, T* p, const T* g, T* v, T lr, T mu, T l2);
template <typename T>
void sgd_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* v, T lr, T mu,
                     T l2);

// Adagrad:  h += g'^2;  p -= lr * g' / (sqrt(h) + eps).
template <typename T>
void adagrad_update(std::size_t n, T* p, const T* g, T* h, T lr, T eps, T l2);
template <typename T>
void adagrad_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* h, T lr,
                         T eps, T l2);

// Adam with bias correction at step t >= 1:
//   m = b1 * m + (1 - b1) * g';  v = b2 * v + (1 - b2) * g'^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// The row-sparse form is "lazy Adam": m and v of untouched rows neither
// decay nor move, and t is the global step.
template <typename T>
void adam_update(std::size_t n, T* p, const T* g, T* m, T* v, T lr, T b1, T b2, T eps, T l2,
                 long t);
template <typename T>
void adam_update_rows(int n_rows, const int* rows, int width, T* p, const T* g, T* m, T* v, T lr,
                      T b1, T b2, T eps, T l2, long t);

}  // namespace copse::ops
