// CpuBackend: memory, GEMM (oneDNN for float, a blocked loop for double) and
// the row kernels. run_fused lives in ops/cpu_fused.cpp.
#include "ops/cpu_backend.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "ops/fast_math.h"

namespace copse::ops {

namespace {

constexpr std::size_t kAlign = 64;

inline long row_off(long r, long ld) { return r * ld; }

// The calling thread's OpenMP nthreads ICV set to `n` for one library call,
// restored on exit: oneDNN (OpenMP build) sizes its teams from it.
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreadsScope() { omp_set_num_threads(saved_); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int saved_;
};

// C[m,n] = beta * C, with beta == 0 writing zeros whatever C held.
template <typename T>
void scale_c(int m, int n, T beta, T* c, long ldc) {
  for (int i = 0; i < m; ++i) {
    T* row = c + row_off(i, ldc);
    if (beta == T(0))
      std::fill(row, row + n, T(0));
    else if (beta != T(1))
      for (int j = 0; j < n; ++j) row[j] *= beta;
  }
}

// C += alpha * op(A) * op(B) (C already scaled by beta). Blocks of B are
// packed row-major so the inner loop is a contiguous axpy. Double only, for
// gradient checks: correct rather than fast.
template <typename T>
void gemm_blocked(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, long lda,
                  const T* b, long ldb, T* c, long ldc) {
  constexpr int kKb = 128, kNb = 256;
  std::vector<T> pack(static_cast<std::size_t>(kKb) * kNb);  // [kb, nb]
  for (int p0 = 0; p0 < k; p0 += kKb) {
    const int kb = std::min(kKb, k - p0);
    for (int j0 = 0; j0 < n; j0 += kNb) {
      const int nb = std::min(kNb, n - j0);
      for (int p = 0; p < kb; ++p)
        for (int j = 0; j < nb; ++j)
          pack[p * nb + j] = trans_b ? b[row_off(j0 + j, ldb) + p0 + p]
                                     : b[row_off(p0 + p, ldb) + j0 + j];
      for (int i = 0; i < m; ++i) {
        T* crow = c + row_off(i, ldc) + j0;
        for (int p = 0; p < kb; ++p) {
          const T aip =
              alpha * (trans_a ? a[row_off(p0 + p, lda) + i] : a[row_off(i, lda) + p0 + p]);
          const T* brow = pack.data() + p * nb;
          for (int j = 0; j < nb; ++j) crow[j] += aip * brow[j];
        }
      }
    }
  }
}

// Sum of x[0:n] in 8 independent lanes (vectorizable without reassociation
// flags), accumulated in Acc.
template <typename Acc, typename T, typename F>
Acc lane_sum(std::size_t n, const T* x, F f) {
  Acc lanes[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += f(static_cast<Acc>(x[i + l]));
  Acc tail = 0;
  for (; i < n; ++i) tail += f(static_cast<Acc>(x[i]));
  Acc s = 0;
  for (int l = 0; l < 8; ++l) s += lanes[l];
  return s + tail;
}

// [c0, c1) of `width` columns for thread t of nt, in chunks of 16.
inline void column_chunk(int width, int t, int nt, int* c0, int* c1) {
  const int blocks = (width + 15) / 16;
  const int per = (blocks + nt - 1) / nt;
  *c0 = std::min(width, t * per * 16);
  *c1 = std::min(width, (t + 1) * per * 16);
}

}  // namespace

template <typename T>
CpuBackend<T>::CpuBackend(int threads) : threads_(threads) {
  if (threads < 0) fail("[cpu] thread count must be >= 0 (0 = all processors), got {}", threads);
  if (threads_ == 0) threads_ = std::max(1, omp_get_num_procs());
}

template <typename T>
std::string CpuBackend<T>::name() const {
  return "cpu";
}

template <typename T>
int CpuBackend<T>::threads_for(std::size_t work) const {
  return work >= kParallelMinWork ? threads_ : 1;
}

// ---- memory ----------------------------------------------------------------

template <typename T>
void* CpuBackend<T>::allocate(std::size_t bytes) {
  // aligned_alloc wants a multiple of the alignment; zero bytes still gets a
  // real (freeable) block.
  const std::size_t rounded = std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) fail("[cpu] out of memory allocating {} bytes", bytes);
  return p;
}

template <typename T>
void CpuBackend<T>::deallocate(void* p, std::size_t /*bytes*/) {
  std::free(p);
}

template <typename T>
void CpuBackend<T>::upload(void* dst, const void* src, std::size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

template <typename T>
void CpuBackend<T>::download(void* dst, const void* src, std::size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

// ---- gemm ------------------------------------------------------------------

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C. With k == 0 or
// alpha == 0, C = beta * C and A, B are not read (BLAS semantics).
template <typename T>
void CpuBackend<T>::gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a,
                         long lda, const T* b, long ldb, T beta, T* c, long ldc) {
  if (m < 0 || n < 0 || k < 0) fail("[cpu gemm] negative size m={} n={} k={}", m, n, k);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == T(0)) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    OmpThreadsScope scope(threads_);
    const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha,
                                        a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success)
      fail("[cpu gemm] dnnl_sgemm(trans_a={}, trans_b={}, m={}, n={}, k={}, lda={}, ldb={}, "
           "ldc={}) failed: {}",
           trans_a, trans_b, m, n, k, lda, ldb, ldc, dnnl_status2str(st));
  } else {
    const long min_lda = trans_a ? m : k, min_ldb = trans_b ? k : n;
    if (lda < min_lda || ldb < min_ldb || ldc < n)
      fail("[cpu gemm] leading dimension too small: lda={} (>= {}), ldb={} (>= {}), ldc={} "
           "(>= {})",
           lda, min_lda, ldb, min_ldb, ldc, n);
    scale_c(m, n, beta, c, ldc);
    gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
  }
}

// ---- row movement ----------------------------------------------------------
// A source row never partly overlaps its destination row (the executor's
// buffers and columns are disjoint), so the `+=` loops drop GCC's runtime
// alias checks (`ivdep`): with them GCC ran these loops 3x slower.

// dst[i, :] = idx[i] >= 0 ? src[idx[i], :] : 0
template <typename T>
void CpuBackend<T>::gather_rows(int n, int width, const T* src, long ld_src, const int* idx,
                                T* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  const int nt = threads_for(static_cast<std::size_t>(n) * width);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int i = 0; i < n; ++i) {
    T* d = dst + row_off(i, ld_dst);
    if (idx[i] >= 0)
      std::memcpy(d, src + row_off(idx[i], ld_src), sizeof(T) * width);
    else
      std::fill(d, d + width, T(0));
  }
}

// dst[idx[i], :] += src[i, :]. Indices repeat, so threads split the columns,
// never the rows: each element has one writer and the order of additions is
// the row order whatever the thread count.
template <typename T>
void CpuBackend<T>::scatter_add_rows(int n, int width, const T* src, long ld_src, const int* idx,
                                     T* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  const int nt = width >= 32 ? threads_for(static_cast<std::size_t>(n) * width) : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int c0, c1;
    column_chunk(width, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
    for (int i = 0; i < n; ++i) {
      if (idx[i] < 0) continue;
      const T* s = src + row_off(i, ld_src);
      T* d = dst + row_off(idx[i], ld_dst);
#pragma GCC ivdep
      for (int j = c0; j < c1; ++j) d[j] += s[j];
    }
  }
}

// dst[i, :] (+)= scale_i * sum_{e in segment i} src[e, :], scale_i = 1 or 1/count
template <typename T>
void CpuBackend<T>::segment_sum(int n, int width, const int* ptr, const T* src, long ld_src,
                                T* dst, long ld_dst, bool mean, bool accumulate) {
  if (n <= 0 || width <= 0) return;
  const int base = ptr[0];
  for (int i = 0; i < n; ++i)
    if (ptr[i + 1] < ptr[i])
      fail("[cpu segment_sum] segment pointers decrease at {}: {} then {}", i, ptr[i],
           ptr[i + 1]);
  const int nt = threads_for(static_cast<std::size_t>(ptr[n] - base + n) * width);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int i = 0; i < n; ++i) {
    T* d = dst + row_off(i, ld_dst);
    const int e0 = ptr[i] - base, e1 = ptr[i + 1] - base;
    const T s = (mean && e1 > e0) ? T(1) / T(e1 - e0) : T(1);
    if (!accumulate) std::fill(d, d + width, T(0));
    for (int e = e0; e < e1; ++e) {
      const T* x = src + row_off(e, ld_src);
#pragma GCC ivdep
      for (int j = 0; j < width; ++j) d[j] += s * x[j];
    }
  }
}

// dst[i, :] (+)= src[i, :]
template <typename T>
void CpuBackend<T>::copy_rows(int rows, int width, const T* src, long ld_src, T* dst, long ld_dst,
                              bool accumulate) {
  if (rows <= 0 || width <= 0) return;
  const int nt = threads_for(static_cast<std::size_t>(rows) * width);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int i = 0; i < rows; ++i) {
    const T* s = src + row_off(i, ld_src);
    T* d = dst + row_off(i, ld_dst);
    if (accumulate) {
#pragma GCC ivdep
      for (int j = 0; j < width; ++j) d[j] += s[j];
    } else {
      std::memcpy(d, s, sizeof(T) * width);
    }
  }
}

// dst[i, :] = value
template <typename T>
void CpuBackend<T>::fill_rows(int rows, int width, T value, T* dst, long ld_dst) {
  if (rows <= 0 || width <= 0) return;
  const int nt = threads_for(static_cast<std::size_t>(rows) * width);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int i = 0; i < rows; ++i) {
    T* d = dst + row_off(i, ld_dst);
    std::fill(d, d + width, value);
  }
}

// y[j] (+)= sum_r x[r, j]; threads split the columns, rows added in order.
template <typename T>
void CpuBackend<T>::colsum(int rows, int width, const T* x, long ld, T* y, bool accumulate) {
  if (width <= 0) return;
  if (!accumulate) std::fill(y, y + width, T(0));
  if (rows <= 0) return;
  const int nt = width >= 32 ? threads_for(static_cast<std::size_t>(rows) * width) : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int c0, c1;
    column_chunk(width, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
    for (int r = 0; r < rows; ++r) {
      const T* xr = x + row_off(r, ld);
#pragma GCC ivdep
      for (int j = c0; j < c1; ++j) y[j] += xr[j];
    }
  }
}

// ---- losses and reductions -------------------------------------------------

// For a row with label l: m = max_j x_j, s = sum_j exp(x_j - m),
// loss = m + log(s) - x_l, dlogits_j = scale * (exp(x_j - m) / s - [j == l]).
template <typename T>
double CpuBackend<T>::softmax_xent(int rows, int classes, const T* logits, long ld,
                                   const int* labels, T scale, T* dlogits, long ld_d,
                                   long* correct, int* pred) {
  if (rows <= 0) {
    if (correct) *correct = 0;
    return 0.0;
  }
  for (int r = 0; r < rows; ++r)
    if (labels[r] >= classes)
      throw Error(softmax_label_error(r, labels[r], classes));
  const int nt = threads_for(static_cast<std::size_t>(rows) * classes);
  std::vector<double> loss_part(nt, 0.0);
  std::vector<long> correct_part(nt, 0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    const int r0 = static_cast<int>(static_cast<long>(rows) * t / team);
    const int r1 = static_cast<int>(static_cast<long>(rows) * (t + 1) / team);
    thread_local std::vector<T> buf;
    if (!dlogits && buf.size() < static_cast<std::size_t>(classes)) buf.resize(classes);
    double loss = 0.0;
    long hits = 0;
    for (int r = r0; r < r1; ++r) {
      const T* x = logits + row_off(r, ld);
      int arg = classes > 0 ? 0 : -1;
      for (int j = 1; j < classes; ++j)
        if (x[j] > x[arg]) arg = j;
      if (pred) pred[r] = arg;
      const int label = labels[r];
      T* d = dlogits ? dlogits + row_off(r, ld_d) : nullptr;
      if (label < 0) {
        if (d) std::fill(d, d + classes, T(0));
        continue;
      }
      if (arg == label) ++hits;
      const T m = x[arg];
      T* e = d ? d : buf.data();
      for (int j = 0; j < classes; ++j) e[j] = fast_exp(x[j] - m);
      const double s = lane_sum<double>(classes, e, [](double v) { return v; });
      loss += static_cast<double>(m) + std::log(s) - static_cast<double>(x[label]);
      if (d) {
        const T inv = static_cast<T>(static_cast<double>(scale) / s);
        for (int j = 0; j < classes; ++j) d[j] *= inv;
        d[label] -= scale;
      }
    }
    loss_part[t] = loss;
    correct_part[t] = hits;
  }
  double loss = 0.0;
  long hits = 0;
  for (int t = 0; t < nt; ++t) {
    loss += loss_part[t];
    hits += correct_part[t];
  }
  if (correct) *correct = hits;
  return loss;
}

// x[i, :] *= scale[i]
template <typename T>
void CpuBackend<T>::scale_rows(int rows, int width, const T* scale, T* x, long ld) {
  if (rows <= 0 || width <= 0) return;
  const int nt = threads_for(static_cast<std::size_t>(rows) * width);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int i = 0; i < rows; ++i) {
    T* xr = x + row_off(i, ld);
    const T s = scale[i];
    for (int j = 0; j < width; ++j) xr[j] *= s;
  }
}

// sum_i x_i^2 in double, per-thread partials added in thread order.
template <typename T>
double CpuBackend<T>::sum_squares(std::size_t n, const T* x) {
  if (n == 0) return 0.0;
  const int nt = threads_for(n);
  std::vector<double> part(nt, 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    const std::size_t i0 = n * t / team, i1 = n * (t + 1) / team;
    part[t] = lane_sum<double>(i1 - i0, x + i0, [](double v) { return v * v; });
  }
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

// x *= s
template <typename T>
void CpuBackend<T>::scale(std::size_t n, T s, T* x) {
  const int nt = threads_for(n);
  const long ln = static_cast<long>(n);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (long i = 0; i < ln; ++i) x[i] *= s;
}

template <typename T>
void CpuBackend<T>::optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                     T* p, const T* g, T* s0, T* s1) {
  OmpThreadsScope scope(threads_);
  Backend<T>::optimizer_update(cfg, t, n, p, g, s0, s1);
}

template <typename T>
void CpuBackend<T>::optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                          const int* rows, int width, T* p, const T* g, T* s0,
                                          T* s1) {
  OmpThreadsScope scope(threads_);
  Backend<T>::optimizer_update_rows(cfg, t, n_rows, rows, width, p, g, s0, s1);
}

template <typename T>
void CpuBackend<T>::optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                    const T* p, const T* g, const T* s0, const T* s1, int tag) {
  OmpThreadsScope scope(threads_);
  Backend<T>::optimizer_check(cfg, t, n, p, g, s0, s1, tag);
}

template <typename T>
void CpuBackend<T>::optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                         const int* rows, int width, const T* p, const T* g,
                                         const T* s0, const T* s1, int tag) {
  OmpThreadsScope scope(threads_);
  Backend<T>::optimizer_check_rows(cfg, t, n_rows, rows, width, p, g, s0, s1, tag);
}

template class CpuBackend<float>;
template class CpuBackend<double>;

}  // namespace copse::ops
