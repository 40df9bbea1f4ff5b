// CpuBackend: the host implementation of Backend (oneDNN sgemm, OpenMP loops,
// a row interpreter for fused programs).
#pragma once

#include <cstddef>
#include <string>

#include "ops/backend.h"

namespace copse::ops {

// Threading: every call uses exactly `threads` OpenMP threads. Our own loops
// carry a num_threads clause; around oneDNN calls the calling thread's
// nthreads ICV is set to `threads` and restored afterwards, so nothing the
// caller set up changes. Small problems run on the calling thread only.
// Instantiated for float (the fast path) and double (gradient checks).
template <typename T>
class CpuBackend : public Backend<T> {
 public:
  // threads >= 1; 0 means all processors OpenMP reports (omp_get_num_procs).
  explicit CpuBackend(int threads = 1);

  // The math threads it uses.
  int threads() const { return threads_; }

  // For tests: makes the executor queue a level's gathers and scatter-adds
  // into batched calls, as it does for the CUDA backend.
  void set_batch_row_jobs(bool on) { batch_row_jobs_ = on; }
  bool batch_row_jobs() const override { return batch_row_jobs_; }

  // Loops touching fewer elements than this run on the calling thread only:
  // waking the team would cost more than it saves.
  static constexpr std::size_t kParallelMinWork = 16384;

  // "cpu".
  std::string name() const override;

  void* allocate(std::size_t bytes) override;
  // Frees what allocate() returned.
  void deallocate(void* p, std::size_t bytes) override;
  void upload(void* dst, const void* src, std::size_t bytes) override;
  void download(void* dst, const void* src, std::size_t bytes) override;

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, long lda,
            const T* b, long ldb, T beta, T* c, long ldc) override;

  void gather_rows(int n, int width, const T* src, long ld_src, const int* idx, T* dst,
                   long ld_dst) override;
  void scatter_add_rows(int n, int width, const T* src, long ld_src, const int* idx, T* dst,
                        long ld_dst) override;
  void segment_sum(int n, int width, const int* ptr, const T* src, long ld_src, T* dst,
                   long ld_dst, bool mean, bool accumulate) override;
  void copy_rows(int rows, int width, const T* src, long ld_src, T* dst, long ld_dst,
                 bool accumulate) override;
  void fill_rows(int rows, int width, T value, T* dst, long ld_dst) override;
  void colsum(int rows, int width, const T* x, long ld, T* y, bool accumulate) override;

  void run_fused(const FusedProgram& prog, int rows, const RowView<const T>* inputs,
                 const RowView<T>* outputs) override;

  double softmax_xent(int rows, int classes, const T* logits, long ld, const int* labels, T scale,
                      T* dlogits, long ld_d, long* correct, int* pred) override;
  void scale_rows(int rows, int width, const T* scale, T* x, long ld) override;
  double sum_squares(std::size_t n, const T* x) override;
  void scale(std::size_t n, T s, T* x) override;

  // The host optimizer updates and checks (Backend's), on threads() OpenMP
  // threads whichever thread calls them (e.g. an SSP shard's progress thread,
  // whose own OpenMP default is every core).
  void optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n, T* p,
                        const T* g, T* s0, T* s1) override;
  void optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                             const int* rows, int width, T* p, const T* g, T* s0,
                             T* s1) override;
  void optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n, const T* p,
                       const T* g, const T* s0, const T* s1, int tag) override;
  void optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                            const int* rows, int width, const T* p, const T* g, const T* s0,
                            const T* s1, int tag) override;

 private:
  // Threads for a loop touching `work` elements: threads_, or 1 below
  // kParallelMinWork.
  int threads_for(std::size_t work) const;

  int threads_ = 1;
  bool batch_row_jobs_ = false;
};

extern template class CpuBackend<float>;
extern template class CpuBackend<double>;

}  // namespace copse::ops
