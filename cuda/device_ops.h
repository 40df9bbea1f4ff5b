// DeviceOps: what CudaBackend asks of a device, and nothing it decides:
// memory, streams and events, copies, the GEMMs, and one call per kernel of
// cuda/kernel_launchers.inc. cuda/cuda_device.cpp carries them out with the
// CUDA runtime, cuBLAS and NVRTC; cuda/host_emu/emu_device.h with the host
// emulator and a CPU GEMM, so that the backend's own code (cuda/cuda_backend.cpp)
// runs unchanged on both. Free of CUDA headers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "cuda/kernel_args.h"
#include "cuda/launch_plans.h"
#include "ops/fused_program.h"

struct CUstream_st;

namespace copse::cuda {

// Opaque to the backend: each DeviceOps gives them its own meaning.
struct StreamObj;
struct EventObj;
struct FusedKernelObj;

enum class CopyKind { HostToDevice, DeviceToHost };

struct DeviceInfo {
  int ordinal = 0;
  std::string name;          // "NVIDIA H100 80GB HBM3"
  std::string arch;          // "sm_90", what generated kernels are compiled for
  int max_smem = 48 * 1024;  // opt-in dynamic shared memory per block
};

// What loading a generated kernel reports (NVRTC's time and log).
struct FusedLoadInfo {
  bool compiled = false;  // the compiler ran
  double seconds = 0;
  std::string log;  // why it did not compile, when it did not
};

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual const DeviceInfo& info() const = 0;

  // ---- resources; each has an owning handle below ----
  // Throws copse::Error naming the size asked and the memory free.
  virtual void* alloc(std::size_t bytes, const char* what) = 0;
  virtual void free(void* p) noexcept = 0;  // waits for the device first, as cudaFree
  virtual void* alloc_pinned(std::size_t bytes, const char* what) = 0;
  virtual void free_pinned(void* p) noexcept = 0;
  virtual StreamObj* create_stream() = 0;
  virtual void destroy_stream(StreamObj* s) noexcept = 0;
  virtual EventObj* create_event() = 0;
  virtual void destroy_event(EventObj* e) noexcept = 0;
  // The generated kernel of `prog` for this device with `smem` bytes of
  // dynamic shared memory per block; nullptr when it does not compile
  // (info->log says why). Throws when a compiled kernel cannot be loaded.
  virtual FusedKernelObj* load_fused(const ops::FusedProgram& prog, std::size_t smem,
                                     FusedLoadInfo* info) = 0;
  virtual void unload_fused(FusedKernelObj* k) noexcept = 0;

  // ---- streams: work queued on one stream runs in order ----
  virtual void copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                          StreamObj* s) = 0;
  virtual void memset_async(void* dst, int byte, std::size_t bytes, StreamObj* s) = 0;
  virtual void record(EventObj* e, StreamObj* s) = 0;
  virtual void wait(StreamObj* s, EventObj* e) = 0;  // s runs on once e has happened
  virtual void synchronize(StreamObj* s) = 0;        // the host waits for s
  virtual void synchronize(EventObj* e) = 0;         // ... for e
  // The CUDA stream behind `s` (nullptr on a device that is not CUDA's).
  virtual CUstream_st* native(StreamObj*) const { return nullptr; }

  // ---- BLAS, column-major as cuBLAS ----
  // C[m, n] = alpha op(A) op(B) + beta C (op(A) [m, k], op(B) [k, n]).
  virtual void sgemm(StreamObj* s, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                     const float* a, int lda, const float* b, int ldb, float beta, float* c,
                     int ldc) = 0;
  // y[m] = alpha A x + beta y (A [m, n], no transpose, unit strides).
  virtual void sgemv(StreamObj* s, int m, int n, float alpha, const float* a, int lda,
                     const float* x, float beta, float* y) = 0;

  // ---- kernels: cuda/kernel_launchers.inc says what each does; a launch
  // that fails throws copse::Error naming the kernel ----
  virtual void launch_fused(FusedKernelObj* k, const FusedShape& shape, int rows,
                            const kernels::FusedArgs& args, StreamObj* s) = 0;
  virtual void run_interpreter(StreamObj* s, const kernels::FusedArgs& args,
                               const kernels::DevReg* regs, int num_regs,
                               const kernels::DevInstr* code, int num_instr, int scratch_width,
                               int warps) = 0;
  virtual void gather_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                           const int* idx, float* dst, long ld_dst) = 0;
  virtual void scatter_add_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                                const int* idx, float* dst, long ld_dst) = 0;
  virtual void gather_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) = 0;
  virtual void scatter_add_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) = 0;
  virtual void segment_sum(StreamObj* s, int n, int width, const int* ptr, const float* src,
                           long ld_src, float* dst, long ld_dst, bool mean, bool accumulate) = 0;
  virtual void copy_rows(StreamObj* s, int rows, int width, const float* src, long ld_src,
                         float* dst, long ld_dst, bool accumulate) = 0;
  virtual void fill_rows(StreamObj* s, int rows, int width, float value, float* dst,
                         long ld_dst) = 0;
  virtual void scale_rows(StreamObj* s, int rows, int width, const float* scale, float* x,
                          long ld) = 0;
  virtual void scale_matrix(StreamObj* s, int m, int n, float beta, float* c, long ldc) = 0;
  virtual void scale(StreamObj* s, std::size_t n, float factor, float* x) = 0;
  virtual void fill_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float value,
                                float* base) = 0;
  virtual void scale_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float f,
                                 float* base) = 0;
  virtual void sum_squares(StreamObj* s, std::size_t n, const float* x, double* partial,
                           double* out) = 0;
  virtual void sum_squares_listed_rows(StreamObj* s, int n_rows, const int* rows, int width,
                                       const float* base, double* partial, double* out) = 0;
  virtual void softmax_xent(StreamObj* s, int rows, int classes, const float* logits, long ld,
                            const int* labels, float scale, float* dlogits, long ld_d, int* pred,
                            double* row_loss, int* row_hit, double* out, int* bad_label) = 0;
  virtual void optimizer_update(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                                float* w, const float* g, float* s0, float* s1) = 0;
  virtual void optimizer_update_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                                     const int* rows, int width, float* w, const float* g,
                                     float* s0, float* s1) = 0;
  virtual void optimizer_check(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                               const float* w, const float* g, const float* s0, const float* s1,
                               int tag, unsigned long long* first) = 0;
  virtual void optimizer_check_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                                    const int* rows, int width, const float* w, const float* g,
                                    const float* s0, const float* s1, int tag,
                                    unsigned long long* first) = 0;
};

// ---- owning handles: every resource the backend makes frees itself, on
// every path (a constructor that throws halfway included) ----
template <typename T, void (DeviceOps::*Release)(T*) noexcept>
struct DeviceRelease {
  DeviceOps* dev = nullptr;
  void operator()(T* p) const noexcept {
    if (p) (dev->*Release)(p);
  }
};
using DeviceMem = std::unique_ptr<void, DeviceRelease<void, &DeviceOps::free>>;
using PinnedMem = std::unique_ptr<void, DeviceRelease<void, &DeviceOps::free_pinned>>;
using Stream = std::unique_ptr<StreamObj, DeviceRelease<StreamObj, &DeviceOps::destroy_stream>>;
using Event = std::unique_ptr<EventObj, DeviceRelease<EventObj, &DeviceOps::destroy_event>>;
using FusedKernel =
    std::unique_ptr<FusedKernelObj, DeviceRelease<FusedKernelObj, &DeviceOps::unload_fused>>;

inline DeviceMem device_mem(DeviceOps& d, std::size_t bytes, const char* what) {
  return DeviceMem(d.alloc(bytes, what), {&d});
}
inline PinnedMem pinned_mem(DeviceOps& d, std::size_t bytes, const char* what) {
  return PinnedMem(d.alloc_pinned(bytes, what), {&d});
}
inline Stream make_stream(DeviceOps& d) { return Stream(d.create_stream(), {&d}); }
inline Event make_event(DeviceOps& d) { return Event(d.create_event(), {&d}); }

template <typename T>
T* as(const DeviceMem& m) {
  return static_cast<T*>(m.get());
}
template <typename T>
T* as(const PinnedMem& m) {
  return static_cast<T*>(m.get());
}

}  // namespace copse::cuda
