// Backend: the kernels the executor calls. CPU in ops/, CUDA in cuda/.
//
// All matrices are row-major with an explicit leading dimension (elements
// between consecutive rows). Pointers are in the backend's memory space
// (host for the CPU backend, device for CUDA).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "ops/fused_program.h"

namespace copse::ops {

template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory in this backend's space; alignment at least 64 bytes.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* p, std::size_t bytes) = 0;
  virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;    // host -> backend
  virtual void download(void* dst, const void* src, std::size_t bytes) = 0;  // backend -> host

  // C[m,n] = alpha * op(A) * op(B) + beta * C, op(A) is [m,k], op(B) is [k,n].
  // With trans_a, A is stored [k,m]; with trans_b, B is stored [n,k].
  // beta == 0 ignores the old contents of C (even NaN).
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a,
                    long lda, const T* b, long ldb, T beta, T* c, long ldc) = 0;

  // dst[i, 0:width] = idx[i] >= 0 ? src[idx[i], 0:width] : 0, for i in [0, n).
  virtual void gather_rows(int n, int width, const T* src, long ld_src, const int* idx, T* dst,
                           long ld_dst) = 0;
  // dst[idx[i], 0:width] += src[i, 0:width] for idx[i] >= 0. Indices may repeat.
  virtual void scatter_add_rows(int n, int width, const T* src, long ld_src, const int* idx,
                                T* dst, long ld_dst) = 0;
  // Segment sum over CSR: dst[i, :] (+)= scale_i * sum_{e in [ptr[i]-ptr[0], ptr[i+1]-ptr[0])} src[e, :]
  // for i in [0, n); ptr has n+1 entries (absolute edge numbers, made relative
  // to ptr[0]). mean divides by the count (0 children gives 0).
  virtual void segment_sum(int n, int width, const int* ptr, const T* src, long ld_src, T* dst,
                           long ld_dst, bool mean, bool accumulate) = 0;
  // dst[i, :] (+)= src[i, :] for a [rows, width] block (ld_src 0 broadcasts one row).
  virtual void copy_rows(int rows, int width, const T* src, long ld_src, T* dst, long ld_dst,
                         bool accumulate) = 0;
  // dst[0:rows, 0:width] = value.
  virtual void fill_rows(int rows, int width, T value, T* dst, long ld_dst) = 0;
  // y[0:width] (+)= sum over rows of x[r, 0:width].
  virtual void colsum(int rows, int width, const T* x, long ld, T* y, bool accumulate) = 0;

  // Runs a fused program over rows [0, rows): inputs[i] and outputs[j] are
  // strided views already offset to the first row.
  virtual void run_fused(const FusedProgram& prog, int rows, const RowView<const T>* inputs,
                         const RowView<T>* outputs) = 0;

  // Softmax cross-entropy over rows with label >= 0 (others are ignored and
  // get zero gradient). Returns the summed loss; dlogits = scale * (p - onehot);
  // correct (may be null) counts rows whose argmax equals the label;
  // pred (may be null) receives each row's argmax.
  virtual double softmax_xent(int rows, int classes, const T* logits, long ld, const int* labels,
                              T scale, T* dlogits, long ld_d, long* correct, int* pred) = 0;

  // x[i, 0:width] *= scale[i] for i in [0, rows) (scale in host memory for the
  // CPU backend, in device memory for CUDA).
  virtual void scale_rows(int rows, int width, const T* scale, T* x, long ld);

  // Sum of squares of x[0:n].
  virtual double sum_squares(std::size_t n, const T* x) = 0;
  // x[0:n] *= s
  virtual void scale(std::size_t n, T s, T* x) = 0;

  // Waits for queued work (no-op on the CPU).
  virtual void sync() {}
};

template <typename T>
void Backend<T>::scale_rows(int, int, const T*, T*, long) {
  throw std::logic_error("internal error: backend " + name() + " lacks scale_rows");
}

}  // namespace copse::ops
