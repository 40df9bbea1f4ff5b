// CudaBackend: the Backend interface on one NVIDIA GPU (float).
//
// GEMMs through cuBLAS (row-major via the transpose identity; TF32 off
// unless asked, so the CPU and GPU backends agree to ~1e-6), fused
// elementwise programs as kernels generated from the IR and compiled at run
// time with NVRTC (cached per program content, with a generic interpreter
// kernel as fallback), hand-written row kernels (cuda/kernels.cu), optimizer
// updates over the flat parameter buffers, deterministic block reductions.
// Memory from cudaMalloc only (no managed memory). One compute stream for
// all kernels and a copy stream for the per-batch index upload, which goes
// through a double-buffered pinned staging buffer (upload_async).
//
// Every CUDA, cuBLAS and NVRTC call and every launch is checked; failures
// throw copse::Error naming the call (and, for allocations, the size asked
// and the memory free).
//
// What the backend decides (scratch sizes and growth, launch shapes, the
// batching of row jobs, which bytes cross between host and device and where
// the host waits) is cuda/cuda_backend.cpp and cuda/launch_plans.h; the calls
// that carry it out are a DeviceOps (cuda/device_ops.h): the CUDA runtime's
// (cuda/cuda_device.cpp), or the host emulator's (cuda/host_emu/emu_device.h),
// which runs this same backend on the CPU in the tests.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "ops/backend.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; this header stays free of CUDA's

namespace copse::cuda {

class DeviceOps;

// Usable GPUs; any error (no driver, driver too old) counts as none.
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" or the reason there is none.
std::string device_description(int device = 0);

struct CudaOptions {
  int device = 0;
  bool tf32 = false;               // allow TF32 tensor-core GEMMs (faster, ~1e-3 relative)
  bool generated_kernels = true;   // NVRTC kernels for fused programs; false: the interpreter
};

struct CudaStats {
  long launches = 0;          // kernels queued (cuBLAS calls count one each)
  long gemms = 0;
  long fused_generated = 0;   // fused programs run by generated kernels
  long fused_interpreted = 0; // ... and by the interpreter
  long nvrtc_compiles = 0;
  double nvrtc_seconds = 0;
  long syncs = 0;             // host waits (downloads, reductions, sync())
  std::size_t device_bytes = 0;       // allocated now through allocate()
  std::size_t peak_device_bytes = 0;
};

class CudaBackend final : public ops::Backend<float> {
 public:
  // On GPU opts.device through the CUDA runtime (cuda/cuda_device.cpp);
  // throws copse::Error saying why when there is no usable GPU.
  explicit CudaBackend(const CudaOptions& opts = {});
  // On `device` (opts.device is then only a label).
  CudaBackend(std::unique_ptr<DeviceOps> device, const CudaOptions& opts);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  const CudaOptions& options() const;
  // The stream every kernel and cuBLAS call of this backend is queued on, for
  // libraries whose work must stay in order with it (cuDNN in a benchmark);
  // nullptr on a device that is not CUDA's.
  CUstream_st* stream() const;
  DeviceOps& device() const;
  const CudaStats& stats() const;
  void reset_stats();

  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) override;
  void upload(void* dst, const void* src, std::size_t bytes) override;
  void download(void* dst, const void* src, std::size_t bytes) override;
  bool host_accessible() const override { return false; }
  void upload_async(void* dst, const void* src, std::size_t bytes) override;

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, long lda,
            const float* b, long ldb, float beta, float* c, long ldc) override;
  void gather_rows(int n, int width, const float* src, long ld_src, const int* idx, float* dst,
                   long ld_dst) override;
  void scatter_add_rows(int n, int width, const float* src, long ld_src, const int* idx,
                        float* dst, long ld_dst) override;
  void gather_rows_batched(const ops::RowJob<float>* jobs, int count) override;
  void scatter_add_rows_batched(const ops::RowJob<float>* jobs, int count) override;
  bool batch_row_jobs() const override { return true; }
  void segment_sum(int n, int width, const int* ptr, const float* src, long ld_src, float* dst,
                   long ld_dst, bool mean, bool accumulate) override;
  void copy_rows(int rows, int width, const float* src, long ld_src, float* dst, long ld_dst,
                 bool accumulate) override;
  void fill_rows(int rows, int width, float value, float* dst, long ld_dst) override;
  void colsum(int rows, int width, const float* x, long ld, float* y, bool accumulate) override;
  void run_fused(const ops::FusedProgram& prog, int rows, const ops::RowView<const float>* inputs,
                 const ops::RowView<float>* outputs) override;
  // Runs `prog` with the interpreter kernel whatever the options (tests).
  void run_fused_interpreted(const ops::FusedProgram& prog, int rows,
                             const ops::RowView<const float>* inputs,
                             const ops::RowView<float>* outputs);
  double softmax_xent(int rows, int classes, const float* logits, long ld, const int* labels,
                      float scale, float* dlogits, long ld_d, long* correct, int* pred) override;
  void scale_rows(int rows, int width, const float* scale, float* x, long ld) override;
  double sum_squares(std::size_t n, const float* x) override;
  void scale(std::size_t n, float s, float* x) override;

  void fill_listed_rows(int n_rows, const int* rows, int width, float value, float* base) override;
  double sum_squares_listed_rows(int n_rows, const int* rows, int width,
                                 const float* base) override;
  void scale_listed_rows(int n_rows, const int* rows, int width, float s, float* base) override;
  void optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n, float* p,
                        const float* g, float* s0, float* s1) override;
  void optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                             const int* rows, int width, float* p, const float* g, float* s0,
                             float* s1) override;
  void optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n, const float* p,
                       const float* g, const float* s0, const float* s1, int tag) override;
  void optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                            const int* rows, int width, const float* p, const float* g,
                            const float* s0, const float* s1, int tag) override;
  NonFinite take_nonfinite() override;  // one wait
  // The update kernels do not reduce what they write: never known.
  memory::WrittenBounds take_written_bounds() override {
    memory::WrittenBounds b;
    b.known = false;
    return b;
  }

  void sync() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace copse::cuda
