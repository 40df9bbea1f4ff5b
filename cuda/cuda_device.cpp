// DeviceOps on a GPU (see device_ops.h): each call one checked CUDA runtime,
// cuBLAS or NVRTC call or kernel launch; and the CudaBackend constructor
// that opens a GPU with it.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_handles.h"
#include "cuda/device_ops.h"
#include "cuda/fused_codegen.h"
#include "cuda/kernels.h"
#include "cuda/nvrtc_compile.h"

namespace copse::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // a launch error is sticky until read
    fail("[cuda] {} failed: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e));
  }
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("[cuda] cuBLAS {} failed: {} ({})", what, cublasGetStatusString(s),
         static_cast<int>(s));
}

double gib(std::size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }

cudaStream_t cu(StreamObj* s) { return reinterpret_cast<cudaStream_t>(s); }
cudaEvent_t cu(EventObj* e) { return reinterpret_cast<cudaEvent_t>(e); }

// A generated kernel: its loaded library and the kernel in it.
struct LoadedKernel {
  UniqueLibrary lib;
  cudaKernel_t kernel = nullptr;
};

class CudaDevice final : public DeviceOps {
 public:
  explicit CudaDevice(const CudaOptions& opts) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("[cuda] no usable GPU: {} (run with --device cpu)", cudaGetErrorString(e));
    }
    if (n == 0) fail("[cuda] no GPU found (run with --device cpu)");
    if (opts.device < 0 || opts.device >= n)
      fail("[cuda] GPU {} asked for, but this machine has {} (0 to {})", opts.device, n, n - 1);
    check(cudaSetDevice(opts.device), "cudaSetDevice");
    check(cudaGetDeviceProperties(&prop_, opts.device), "cudaGetDeviceProperties");
    info_.ordinal = opts.device;
    info_.name = prop_.name;
    info_.arch = fmt::format("sm_{}{}", prop_.major, prop_.minor);
    check(cudaDeviceGetAttribute(&info_.max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                 opts.device),
          "cudaDeviceGetAttribute");
    check(kernels::interpreter_allow_shared(info_.max_smem), "cudaFuncSetAttribute (interpreter)");
    cublasHandle_t h = nullptr;
    check_blas(cublasCreate(&h), "cublasCreate");
    blas_.reset(h);
    check_blas(cublasSetMathMode(blas_.get(), opts.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                        : CUBLAS_DEFAULT_MATH),
               "cublasSetMathMode");
  }

  const DeviceInfo& info() const override { return info_; }

  void* alloc(std::size_t bytes, const char* what) override {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      std::size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail("[cuda] out of device memory: asked for {} bytes ({:.2f} GiB, {}) on {}; {:.2f} GiB "
           "free of {:.2f} GiB ({})",
           bytes, gib(bytes), what, prop_.name, gib(free_b), gib(total_b), cudaGetErrorString(e));
    }
    return p;
  }
  void free(void* p) noexcept override { DeviceFree{}(p); }
  void* alloc_pinned(std::size_t bytes, const char* what) override {
    void* p = nullptr;
    const cudaError_t e = cudaMallocHost(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("[cuda] cudaMallocHost of {} bytes ({}) failed: {}", bytes, what, cudaGetErrorString(e));
    }
    return p;
  }
  void free_pinned(void* p) noexcept override { PinnedFree{}(p); }
  StreamObj* create_stream() override {
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    return reinterpret_cast<StreamObj*>(s);
  }
  void destroy_stream(StreamObj* s) noexcept override { StreamDestroy{}(cu(s)); }
  EventObj* create_event() override {
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    return reinterpret_cast<EventObj*>(e);
  }
  void destroy_event(EventObj* e) noexcept override { EventDestroy{}(cu(e)); }

  FusedKernelObj* load_fused(const ops::FusedProgram& prog, std::size_t smem,
                             FusedLoadInfo* info) override {
    const std::string name = fused_kernel_name(prog);
    NvrtcResult r = nvrtc_compile(fused_kernel_source(prog), name, info_.arch);
    info->compiled = true;
    info->seconds = r.seconds;
    if (!r.ok) {
      info->log = r.log;
      return nullptr;
    }
    auto k = std::make_unique<LoadedKernel>();
    cudaLibrary_t lib = nullptr;
    check(cudaLibraryLoadData(&lib, r.binary.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
          "cudaLibraryLoadData (generated kernel)");
    k->lib.reset(lib);
    check(cudaLibraryGetKernel(&k->kernel, k->lib.get(), name.c_str()), "cudaLibraryGetKernel");
    if (smem > 48 * 1024)
      check(cudaFuncSetAttribute(reinterpret_cast<const void*>(k->kernel),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem)),
            "cudaFuncSetAttribute (generated kernel)");
    return reinterpret_cast<FusedKernelObj*>(k.release());
  }
  void unload_fused(FusedKernelObj* k) noexcept override {
    delete reinterpret_cast<LoadedKernel*>(k);
  }

  void copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                  StreamObj* s) override {
    if (!bytes) return;
    check(cudaMemcpyAsync(dst, src, bytes,
                          kind == CopyKind::HostToDevice ? cudaMemcpyHostToDevice
                                                         : cudaMemcpyDeviceToHost,
                          cu(s)),
          kind == CopyKind::HostToDevice ? "cudaMemcpyAsync (to the device)"
                                         : "cudaMemcpyAsync (to the host)");
  }
  void memset_async(void* dst, int byte, std::size_t bytes, StreamObj* s) override {
    check(cudaMemsetAsync(dst, byte, bytes, cu(s)), "cudaMemsetAsync");
  }
  void record(EventObj* e, StreamObj* s) override {
    check(cudaEventRecord(cu(e), cu(s)), "cudaEventRecord");
  }
  void wait(StreamObj* s, EventObj* e) override {
    check(cudaStreamWaitEvent(cu(s), cu(e), 0), "cudaStreamWaitEvent");
  }
  void synchronize(StreamObj* s) override {
    check(cudaStreamSynchronize(cu(s)), "cudaStreamSynchronize");
  }
  void synchronize(EventObj* e) override {
    check(cudaEventSynchronize(cu(e)), "cudaEventSynchronize");
  }
  CUstream_st* native(StreamObj* s) const override { return cu(s); }

  void sgemm(StreamObj* s, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
             const float* a, int lda, const float* b, int ldb, float beta, float* c,
             int ldc) override {
    on_stream(s);
    check_blas(cublasSgemm(blas_.get(), trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                           trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, lda, b, ldb,
                           &beta, c, ldc),
               "cublasSgemm");
  }
  void sgemv(StreamObj* s, int m, int n, float alpha, const float* a, int lda, const float* x,
             float beta, float* y) override {
    on_stream(s);
    check_blas(cublasSgemv(blas_.get(), CUBLAS_OP_N, m, n, &alpha, a, lda, x, 1, &beta, y, 1),
               "cublasSgemv");
  }

  void launch_fused(FusedKernelObj* k, const FusedShape& shape, int rows,
                    const kernels::FusedArgs& args, StreamObj* s) override {
    kernels::FusedArgs a = args;
    void* params[] = {&a};
    check(cudaLaunchKernel(reinterpret_cast<const void*>(reinterpret_cast<LoadedKernel*>(k)->kernel),
                           dim3(shape.blocks(rows)), dim3(shape.threads()), params, shape.smem,
                           cu(s)),
          "launch of a generated fused kernel");
  }
  void run_interpreter(StreamObj* s, const kernels::FusedArgs& args, const kernels::DevReg* regs,
                       int num_regs, const kernels::DevInstr* code, int num_instr,
                       int scratch_width, int warps) override {
    check(kernels::run_interpreter(cu(s), args, regs, num_regs, code, num_instr, scratch_width,
                                   warps),
          "launch of the fused-program interpreter");
  }
  void gather_rows(StreamObj* s, int n, int width, const float* src, long ld_src, const int* idx,
                   float* dst, long ld_dst) override {
    check(kernels::gather_rows(cu(s), n, width, src, ld_src, idx, dst, ld_dst), "gather_rows");
  }
  void scatter_add_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                        const int* idx, float* dst, long ld_dst) override {
    check(kernels::scatter_add_rows(cu(s), n, width, src, ld_src, idx, dst, ld_dst),
          "scatter_add_rows");
  }
  void gather_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) override {
    check(kernels::gather_rows_batched(cu(s), jobs), "gather_rows_batched");
  }
  void scatter_add_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) override {
    check(kernels::scatter_add_rows_batched(cu(s), jobs), "scatter_add_rows_batched");
  }
  void segment_sum(StreamObj* s, int n, int width, const int* ptr, const float* src, long ld_src,
                   float* dst, long ld_dst, bool mean, bool accumulate) override {
    check(kernels::segment_sum(cu(s), n, width, ptr, src, ld_src, dst, ld_dst, mean, accumulate),
          "segment_sum");
  }
  void copy_rows(StreamObj* s, int rows, int width, const float* src, long ld_src, float* dst,
                 long ld_dst, bool accumulate) override {
    check(kernels::copy_rows(cu(s), rows, width, src, ld_src, dst, ld_dst, accumulate),
          "copy_rows");
  }
  void fill_rows(StreamObj* s, int rows, int width, float value, float* dst,
                 long ld_dst) override {
    check(kernels::fill_rows(cu(s), rows, width, value, dst, ld_dst), "fill_rows");
  }
  void scale_rows(StreamObj* s, int rows, int width, const float* scale, float* x,
                  long ld) override {
    check(kernels::scale_rows(cu(s), rows, width, scale, x, ld), "scale_rows");
  }
  void scale_matrix(StreamObj* s, int m, int n, float beta, float* c, long ldc) override {
    check(kernels::scale_matrix(cu(s), m, n, beta, c, ldc), "scale_matrix");
  }
  void scale(StreamObj* s, std::size_t n, float factor, float* x) override {
    check(kernels::scale(cu(s), n, factor, x), "scale");
  }
  void fill_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float value,
                        float* base) override {
    check(kernels::fill_listed_rows(cu(s), n_rows, rows, width, value, base), "fill_listed_rows");
  }
  void scale_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float f,
                         float* base) override {
    check(kernels::scale_listed_rows(cu(s), n_rows, rows, width, f, base), "scale_listed_rows");
  }
  void sum_squares(StreamObj* s, std::size_t n, const float* x, double* partial,
                   double* out) override {
    check(kernels::sum_squares(cu(s), n, x, partial, out), "sum_squares");
  }
  void sum_squares_listed_rows(StreamObj* s, int n_rows, const int* rows, int width,
                               const float* base, double* partial, double* out) override {
    check(kernels::sum_squares_listed_rows(cu(s), n_rows, rows, width, base, partial, out),
          "sum_squares_listed_rows");
  }
  void softmax_xent(StreamObj* s, int rows, int classes, const float* logits, long ld,
                    const int* labels, float scale, float* dlogits, long ld_d, int* pred,
                    double* row_loss, int* row_hit, double* out, int* bad_label) override {
    check(kernels::softmax_xent(cu(s), rows, classes, logits, ld, labels, scale, dlogits, ld_d,
                                pred, row_loss, row_hit, out, bad_label),
          "softmax_xent");
  }
  void optimizer_update(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n, float* w,
                        const float* g, float* s0, float* s1) override {
    check(kernels::optimizer_update(cu(s), p, n, w, g, s0, s1), "optimizer_update");
  }
  void optimizer_update_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                             const int* rows, int width, float* w, const float* g, float* s0,
                             float* s1) override {
    check(kernels::optimizer_update_rows(cu(s), p, n_rows, rows, width, w, g, s0, s1),
          "optimizer_update_rows");
  }
  void optimizer_check(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                       const float* w, const float* g, const float* s0, const float* s1, int tag,
                       unsigned long long* first) override {
    check(kernels::optimizer_check(cu(s), p, n, w, g, s0, s1, tag, first), "optimizer_check");
  }
  void optimizer_check_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                            const int* rows, int width, const float* w, const float* g,
                            const float* s0, const float* s1, int tag,
                            unsigned long long* first) override {
    check(kernels::optimizer_check_rows(cu(s), p, n_rows, rows, width, w, g, s0, s1, tag, first),
          "optimizer_check_rows");
  }

 private:
  void on_stream(StreamObj* s) {
    if (s == blas_stream_) return;
    check_blas(cublasSetStream(blas_.get(), cu(s)), "cublasSetStream");
    blas_stream_ = s;
  }

  cudaDeviceProp prop_{};
  DeviceInfo info_;
  UniqueBlas blas_;
  StreamObj* blas_stream_ = nullptr;
};

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
}

std::string device_description(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable GPU ({})", cudaGetErrorString(e));
  }
  if (device < 0 || device >= n) return fmt::format("no GPU {} (this machine has {})", device, n);
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return "GPU (properties unavailable)";
  return fmt::format("{} (sm_{}{}, {:.1f} GiB)", p.name, p.major, p.minor, gib(p.totalGlobalMem));
}

CudaBackend::CudaBackend(const CudaOptions& opts)
    : CudaBackend(std::make_unique<CudaDevice>(opts), opts) {}

}  // namespace copse::cuda
