// Backend: the kernels the executor calls. CPU in ops/, CUDA in cuda/.
//
// All matrices are row-major with an explicit leading dimension (elements
// between consecutive rows). Pointers are in the backend's memory space
// (host for the CPU backend, device for CUDA).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "memory/optimizer.h"
#include "ops/fused_program.h"

namespace copse::ops {

// One row gather (dst[i] = src[idx[i]]) or scatter-add (dst[idx[i]] += src[i])
// of a batch of them; see Backend::gather_rows_batched.
template <typename T>
struct RowJob {
  int n = 0;                 // rows moved
  int width = 0;             // columns per row
  const T* src = nullptr;    // source rows (backend memory)
  long ld_src = 0;           // source row stride
  const int* idx = nullptr;  // [n] row indices (backend memory), -1: none
  T* dst = nullptr;          // destination rows
  long ld_dst = 0;           // destination row stride
};

// The error of softmax_xent for the lowest row whose label is >= classes;
// every backend throws this very text.
std::string softmax_label_error(int row, int label, int classes);

// Where the math runs (ops/cpu_backend.h, the CUDA backend): memory, GEMMs,
// row movements, fused elementwise programs, the loss and the optimizer.
template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  // For messages: "cpu", or the CUDA backend's "cuda:<gpu> (<GPU name>)".
  virtual std::string name() const = 0;

  // Memory in this backend's space; alignment at least 64 bytes.
  virtual void* allocate(std::size_t bytes) = 0;
  // Frees what allocate(bytes) returned.
  virtual void deallocate(void* p, std::size_t bytes) = 0;
  virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;    // host -> backend
  virtual void download(void* dst, const void* src, std::size_t bytes) = 0;  // backend -> host
  // Whether the host may dereference this backend's pointers (the CPU
  // backend: yes; CUDA: no, everything goes through upload/download).
  virtual bool host_accessible() const { return true; }
  // host -> backend without waiting for the copy: src may be reused as soon
  // as the call returns; kernels queued afterwards see the data. The CUDA
  // backend stages through a double-buffered pinned buffer on its copy stream.
  virtual void upload_async(void* dst, const void* src, std::size_t bytes) {
    upload(dst, src, bytes);
  }

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
  // Several gathers / scatter-adds as one call (one launch on CUDA). No job
  // may read what another writes; scatter-add jobs may add into the same
  // rows. The defaults run the jobs one by one, in order.
  virtual void gather_rows_batched(const RowJob<T>* jobs, int count) {
    for (int k = 0; k < count; ++k)
      gather_rows(jobs[k].n, jobs[k].width, jobs[k].src, jobs[k].ld_src, jobs[k].idx, jobs[k].dst,
                  jobs[k].ld_dst);
  }
  // The same for scatter-adds.
  virtual void scatter_add_rows_batched(const RowJob<T>* jobs, int count) {
    for (int k = 0; k < count; ++k)
      scatter_add_rows(jobs[k].n, jobs[k].width, jobs[k].src, jobs[k].ld_src, jobs[k].idx,
                       jobs[k].dst, jobs[k].ld_dst);
  }
  // Whether the executor should collect a level's gathers (and scatter-adds)
  // into one batched call: yes where a call costs a kernel launch.
  virtual bool batch_row_jobs() const { return false; }

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
  // pred (may be null) receives each row's argmax. labels and dlogits are in
  // backend memory, correct and pred in host memory. A label >= classes
  // throws copse::Error softmax_label_error(lowest such row, its label,
  // classes) before anything is written.
  virtual double softmax_xent(int rows, int classes, const T* logits, long ld, const int* labels,
                              T scale, T* dlogits, long ld_d, long* correct, int* pred) = 0;

  // x[i, 0:width] *= scale[i] for i in [0, rows) (scale in host memory for the
  // CPU backend, in device memory for CUDA).
  virtual void scale_rows(int rows, int width, const T* scale, T* x, long ld);

  // Sum of squares of x[0:n].
  virtual double sum_squares(std::size_t n, const T* x) = 0;
  // x[0:n] *= s
  virtual void scale(std::size_t n, T s, T* x) = 0;

  // Row lists: rows[0:n_rows] (host memory, distinct, each < the matrix's
  // rows) of a [*, width] matrix with leading dimension width at `base`.
  // The defaults call the whole-row kernels above once per row; backends
  // where a call is expensive (CUDA) do each list in one launch.
  virtual void fill_listed_rows(int n_rows, const int* rows, int width, T value, T* base);
  // The sum of squares over the listed rows.
  virtual double sum_squares_listed_rows(int n_rows, const int* rows, int width, const T* base);
  // The listed rows times s.
  virtual void scale_listed_rows(int n_rows, const int* rows, int width, T s, T* base);

  // Optimizer updates of ops/optimizer_cpu.h with the rule and hyper-parameters
  // of `cfg` (clip_norm is the store's business) at Adam's step t >= 1: dense
  // over p[0:n], or over the listed rows (host memory, distinct) of [*, width]
  // matrices. s0/s1 are the
  // state slots the rule uses (SGD with momentum: s0 = v; Adagrad: s0 = h;
  // Adam: s0 = m, s1 = v), null otherwise. The defaults run the host kernels
  // and so need host_accessible(); other backends override them.
  virtual void optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n, T* p,
                                const T* g, T* s0, T* s1);
  // The same over the listed rows.
  virtual void optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                     const int* rows, int width, T* p, const T* g, T* s0, T* s1);

  // Non-finite checks of an update (ops/optimizer_cpu.h): what
  // optimizer_update[_rows] with the same arguments would write (parameters
  // and state), computed and written nowhere. The first element whose new
  // value would be inf or NaN is recorded under `tag` (>= 0);
  // take_nonfinite() returns the smallest recorded (tag, offset from p; rows:
  // row * width + column) and clears it, {-1, -1} when all were finite. On
  // CUDA the checks are kernels that lower one device word and
  // take_nonfinite() is the one wait.
  struct NonFinite {
    int tag = -1;      // the caller's tag of the check that found it, -1: none
    long offset = -1;  // the element's offset (see above)
    // Whether a non-finite value was found.
    bool found() const { return tag >= 0; }
  };
  // The check of optimizer_update over p[0:n].
  virtual void optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                               const T* p, const T* g, const T* s0, const T* s1, int tag);
  // The check of optimizer_update_rows.
  virtual void optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                    const int* rows, int width, const T* p, const T* g,
                                    const T* s0, const T* s1, int tag);
  // The smallest (tag, offset) recorded since the last call, and clears it.
  virtual NonFinite take_nonfinite();
  // Bounds on what the optimizer updates since the last call wrote
  // (memory/optimizer.h), and clears them; `known` is false on a backend
  // that does not track them (CUDA: its update kernels do not reduce).
  virtual memory::WrittenBounds take_written_bounds();

  // Waits for queued work (no-op on the CPU).
  virtual void sync() {}

 protected:
  // Lowers the recorded non-finite element to (tag, offset) if that is smaller.
  void record_nonfinite(int tag, long offset);

 private:
  NonFinite nonfinite_;
  memory::WrittenBounds written_;  // by the host updates since take_written_bounds()
};

template <typename T>
void Backend<T>::scale_rows(int, int, const T*, T*, long) {
  throw std::logic_error("internal error: backend " + name() + " lacks scale_rows");
}

template <typename T>
void Backend<T>::fill_listed_rows(int n_rows, const int* rows, int width, T value, T* base) {
  for (int k = 0; k < n_rows; ++k)
    fill_rows(1, width, value, base + static_cast<std::size_t>(rows[k]) * width, width);
}

template <typename T>
double Backend<T>::sum_squares_listed_rows(int n_rows, const int* rows, int width,
                                           const T* base) {
  double s = 0;
  for (int k = 0; k < n_rows; ++k)
    s += sum_squares(width, base + static_cast<std::size_t>(rows[k]) * width);
  return s;
}

template <typename T>
void Backend<T>::scale_listed_rows(int n_rows, const int* rows, int width, T s, T* base) {
  for (int k = 0; k < n_rows; ++k)
    scale(width, s, base + static_cast<std::size_t>(rows[k]) * width);
}

extern template class Backend<float>;
extern template class Backend<double>;

}  // namespace copse::ops
