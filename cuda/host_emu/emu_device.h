// EmuDevice: DeviceOps on the host emulator, so that CudaBackend's own code
// (cuda/cuda_backend.cpp) runs on the CPU, decisions and all:
//  - device memory is host memory, poisoned (0xff bytes: NaN) when made;
//    the backend still takes its device paths (host_accessible() is false);
//  - every stream is a queue whose work runs only when something waits for
//    it (a host sync, an event another stream waits on, a free), in order: a
//    missing wait, or a copy whose host source is gone before it runs, gives
//    a wrong result instead of passing by luck;
//  - the kernels are those of cuda/kernels_body.cuh (host_kernels) and the
//    generated ones compiled by the host compiler; cuBLAS is a plain
//    column-major loop in double;
//  - it counts the resources alive, can make the n-th one fail, and can
//    trace every call (the decision tests).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/device_ops.h"
#include "cuda/host_emu/emulator.h"
#include "cuda/host_emu/host_compiler.h"

namespace copse::cuda::emu {

class EmuDevice;

struct EmuDeviceOptions {
  Options launch;  // the schedule of every launch
  int max_smem = static_cast<int>(kMaxDynamicSmem);
  // Generated kernels are looked up here by fused_kernel_name; those missing
  // are compiled on demand. Without generated kernels the backend runs the
  // interpreter (CudaOptions::generated_kernels = false).
  const HostKernelLibrary* library = nullptr;
  long fail_at = 0;    // the fail_at-th resource made (from 1) throws; 0: none
  bool trace = false;  // record every call in trace()
  // Called by the destructor (what is still alive then has leaked).
  std::function<void(const EmuDevice&)> on_destroy;
};

class EmuDevice final : public DeviceOps {
 public:
  explicit EmuDevice(const EmuDeviceOptions& opts = {});
  ~EmuDevice() override;

  const DeviceInfo& info() const override { return info_; }
  // Resources alive now, by kind ("device memory", "stream", ...), and made so far.
  std::map<std::string, long> live() const;
  long live_count() const;
  long made() const { return made_; }
  void fail_at(long n) { opts_.fail_at = n; }
  // "h2d s0 64", "launch gather_rows_batched s0", "wait s1 e2", "sync s0", ...
  // (streams s0, s1 ... and events e0, e1 ... numbered in creation order).
  const std::vector<std::string>& trace() const { return trace_; }
  void clear_trace() { trace_.clear(); }

  void* alloc(std::size_t bytes, const char* what) override;
  void free(void* p) noexcept override;
  void* alloc_pinned(std::size_t bytes, const char* what) override;
  void free_pinned(void* p) noexcept override;
  StreamObj* create_stream() override;
  void destroy_stream(StreamObj* s) noexcept override;
  EventObj* create_event() override;
  void destroy_event(EventObj* e) noexcept override;
  FusedKernelObj* load_fused(const ops::FusedProgram& prog, std::size_t smem,
                             FusedLoadInfo* info) override;
  void unload_fused(FusedKernelObj* k) noexcept override;

  void copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                  StreamObj* s) override;
  void memset_async(void* dst, int byte, std::size_t bytes, StreamObj* s) override;
  void record(EventObj* e, StreamObj* s) override;
  void wait(StreamObj* s, EventObj* e) override;
  void synchronize(StreamObj* s) override;
  void synchronize(EventObj* e) override;

  void sgemm(StreamObj* s, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
             const float* a, int lda, const float* b, int ldb, float beta, float* c,
             int ldc) override;
  void sgemv(StreamObj* s, int m, int n, float alpha, const float* a, int lda, const float* x,
             float beta, float* y) override;

  void launch_fused(FusedKernelObj* k, const FusedShape& shape, int rows,
                    const kernels::FusedArgs& args, StreamObj* s) override;
  void run_interpreter(StreamObj* s, const kernels::FusedArgs& args, const kernels::DevReg* regs,
                       int num_regs, const kernels::DevInstr* code, int num_instr,
                       int scratch_width, int warps) override;
  void gather_rows(StreamObj* s, int n, int width, const float* src, long ld_src, const int* idx,
                   float* dst, long ld_dst) override;
  void scatter_add_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                        const int* idx, float* dst, long ld_dst) override;
  void gather_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) override;
  void scatter_add_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) override;
  void segment_sum(StreamObj* s, int n, int width, const int* ptr, const float* src, long ld_src,
                   float* dst, long ld_dst, bool mean, bool accumulate) override;
  void copy_rows(StreamObj* s, int rows, int width, const float* src, long ld_src, float* dst,
                 long ld_dst, bool accumulate) override;
  void fill_rows(StreamObj* s, int rows, int width, float value, float* dst, long ld_dst) override;
  void scale_rows(StreamObj* s, int rows, int width, const float* scale, float* x,
                  long ld) override;
  void scale_matrix(StreamObj* s, int m, int n, float beta, float* c, long ldc) override;
  void scale(StreamObj* s, std::size_t n, float factor, float* x) override;
  void fill_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float value,
                        float* base) override;
  void scale_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float f,
                         float* base) override;
  void sum_squares(StreamObj* s, std::size_t n, const float* x, double* partial,
                   double* out) override;
  void sum_squares_listed_rows(StreamObj* s, int n_rows, const int* rows, int width,
                               const float* base, double* partial, double* out) override;
  void softmax_xent(StreamObj* s, int rows, int classes, const float* logits, long ld,
                    const int* labels, float scale, float* dlogits, long ld_d, int* pred,
                    double* row_loss, int* row_hit, double* out, int* bad_label) override;
  void optimizer_update(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n, float* w,
                        const float* g, float* s0, float* s1) override;
  void optimizer_update_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                             const int* rows, int width, float* w, const float* g, float* s0,
                             float* s1) override;
  void optimizer_check(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                       const float* w, const float* g, const float* s0, const float* s1, int tag,
                       unsigned long long* first) override;
  void optimizer_check_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                            const int* rows, int width, const float* w, const float* g,
                            const float* s0, const float* s1, int tag,
                            unsigned long long* first) override;

 private:
  struct Queue;
  struct Mark;
  static Queue* queue_of(StreamObj* s) { return reinterpret_cast<Queue*>(s); }
  Queue& q(StreamObj* s);
  void enqueue(StreamObj* s, const std::string& what, std::function<void()> op);
  void drain(Queue& queue, long upto);
  void drain_all() noexcept;
  void made_one(const char* kind, const void* p);
  void gone(const void* p) noexcept;
  void note(const std::string& line);

  EmuDeviceOptions opts_;
  DeviceInfo info_;
  long made_ = 0;
  int streams_ = 0, events_ = 0;
  std::map<const void*, std::string> live_;
  std::vector<std::string> trace_;
  std::vector<std::unique_ptr<HostKernelLibrary>> compiled_;  // kernels built on demand
};

// A CudaBackend on an EmuDevice.
std::unique_ptr<CudaBackend> emulated_backend(const EmuDeviceOptions& dev = {},
                                              const CudaOptions& opts = {});

}  // namespace copse::cuda::emu
