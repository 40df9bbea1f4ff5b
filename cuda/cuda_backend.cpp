// CudaBackend (see cuda_backend.h): handles, memory, cuBLAS, the fused-kernel
// cache and the host side of every kernel of cuda/kernels.cu.
#include "cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "cuda/fused_codegen.h"
#include "cuda/launch_plans.h"
#include "cuda/kernels.h"
#include "cuda/nvrtc_compile.h"

namespace copse::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail("[cuda] {} failed: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("[cuda] cuBLAS {} failed: {} ({})", what, cublasGetStatusString(s),
         static_cast<int>(s));
}

// Frees without throwing (destructors).
void quiet(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "copse: [cuda] %s failed: %s\n", what, cudaGetErrorString(e));
}

double gib(std::size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }

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

// A fused program's kernels: the generated one (if it compiled) and the
// program in device memory for the interpreter.
struct FusedEntry {
  cudaLibrary_t lib = nullptr;
  cudaKernel_t kernel = nullptr;
  int warps = 8;
  std::size_t smem = 0;  // dynamic shared memory per block
  kernels::DevReg* regs = nullptr;
  kernels::DevInstr* code = nullptr;
  int num_regs = 0, num_instr = 0;
};

struct CudaBackend::Impl {
  CudaOptions opts;
  CudaStats stats;
  cudaDeviceProp prop{};
  std::string arch;
  int max_smem = 48 * 1024;  // opt-in dynamic shared memory per block
  cudaStream_t compute = nullptr, copy = nullptr;
  cublasHandle_t blas = nullptr;

  // upload_async: two pinned staging buffers, used in turn.
  void* pinned[2] = {nullptr, nullptr};
  std::size_t pinned_bytes[2] = {0, 0};
  cudaEvent_t copied[2] = {nullptr, nullptr};  // the copy out of pinned[k] is done
  cudaEvent_t compute_mark = nullptr;
  int next_pinned = 0;

  // Scratch for row lists, reductions and the softmax.
  int* rows_ws = nullptr;
  std::size_t rows_ws_n = 0;
  double* reduce_ws = nullptr;  // [kReduceBlocks partials, 2 results]
  double* row_loss = nullptr;
  int* row_hit = nullptr;
  int* pred_ws = nullptr;
  int* bad_label = nullptr;
  std::size_t softmax_rows = 0;
  double* host_result = nullptr;  // pinned [2]
  // The non-finite checks' word (~0 = none found) and its pinned host copy.
  unsigned long long* nonfinite = nullptr;
  unsigned long long* host_nonfinite = nullptr;
  float* ones = nullptr;          // [ones_n] of 1.0, for column sums as a GEMV
  std::size_t ones_n = 0;

  std::unordered_map<std::uint64_t, FusedEntry> fused;
  bool warned_nvrtc = false;

  void launched(cudaError_t e, const char* what) {
    check(e, what);
    ++stats.launches;
  }

  // Row lists go up through the pinned double buffer (see upload_async): a
  // copy from pageable memory would make the driver drain the stream first.
  int* upload_rows(CudaBackend& be, const int* rows, int n) {
    if (static_cast<std::size_t>(n) > rows_ws_n) {
      if (rows_ws) check(cudaFree(rows_ws), "cudaFree");
      rows_ws_n = std::max<std::size_t>(n, 2 * rows_ws_n);
      check(cudaMalloc(&rows_ws, sizeof(int) * rows_ws_n), "cudaMalloc (row list)");
    }
    be.upload_async(rows_ws, rows, sizeof(int) * n);
    return rows_ws;
  }

  const float* ones_for(std::size_t n) {
    if (n > ones_n) {
      if (ones) check(cudaFree(ones), "cudaFree");
      ones_n = std::max(n, 2 * ones_n);
      check(cudaMalloc(&ones, sizeof(float) * ones_n), "cudaMalloc (ones)");
      launched(kernels::fill_rows(compute, 1, static_cast<int>(ones_n), 1.f, ones,
                                  static_cast<long>(ones_n)),
               "fill_rows (ones)");
    }
    return ones;
  }

  void ensure_softmax(std::size_t rows) {
    if (rows <= softmax_rows) return;
    if (row_loss) check(cudaFree(row_loss), "cudaFree");
    if (row_hit) check(cudaFree(row_hit), "cudaFree");
    if (pred_ws) check(cudaFree(pred_ws), "cudaFree");
    softmax_rows = std::max(rows, 2 * softmax_rows);
    check(cudaMalloc(&row_loss, sizeof(double) * softmax_rows), "cudaMalloc (softmax)");
    check(cudaMalloc(&row_hit, sizeof(int) * softmax_rows), "cudaMalloc (softmax)");
    check(cudaMalloc(&pred_ws, sizeof(int) * softmax_rows), "cudaMalloc (softmax)");
  }

  // Reads `count` doubles from reduce_ws + kReduceBlocks (waits).
  void read_results(int count) {
    check(cudaMemcpyAsync(host_result, reduce_ws + kernels::kReduceBlocks, sizeof(double) * count,
                          cudaMemcpyDeviceToHost, compute),
          "cudaMemcpyAsync (result)");
    check(cudaStreamSynchronize(compute), "cudaStreamSynchronize");
    ++stats.syncs;
  }

  FusedEntry& entry(const ops::FusedProgram& prog) {
    auto it = fused.find(prog.fingerprint);
    if (it != fused.end()) return it->second;
    if (prog.temp_offset.size() != prog.regs.size())
      fail("[cuda] fused program '{}' was not finalized", prog.name);
    if (prog.num_inputs + prog.num_outputs > kernels::kMaxViews)
      fail("[cuda] fused program '{}' has {} inputs and outputs; at most {} are supported",
           prog.name, prog.num_inputs + prog.num_outputs, kernels::kMaxViews);
    FusedEntry e;
    const FusedShape shape = fused_shape(prog, max_smem, prop.name);
    e.warps = shape.warps;
    e.smem = shape.smem;
    // The interpreter's copy of the program.
    const InterpreterProgram ip = interpreter_program(prog);
    const auto& regs = ip.regs;
    const auto& code = ip.code;
    e.num_regs = static_cast<int>(regs.size());
    e.num_instr = static_cast<int>(code.size());
    check(cudaMalloc(&e.regs, sizeof(kernels::DevReg) * std::max<size_t>(1, regs.size())),
          "cudaMalloc (fused program)");
    check(cudaMalloc(&e.code, sizeof(kernels::DevInstr) * std::max<size_t>(1, code.size())),
          "cudaMalloc (fused program)");
    check(cudaMemcpy(e.regs, regs.data(), sizeof(kernels::DevReg) * regs.size(),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy (fused program)");
    check(cudaMemcpy(e.code, code.data(), sizeof(kernels::DevInstr) * code.size(),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy (fused program)");
    if (opts.generated_kernels) {
      const std::string name = fused_kernel_name(prog);
      NvrtcResult r = nvrtc_compile(fused_kernel_source(prog), name, arch);
      ++stats.nvrtc_compiles;
      stats.nvrtc_seconds += r.seconds;
      if (r.ok) {
        check(cudaLibraryLoadData(&e.lib, r.binary.data(), nullptr, nullptr, 0, nullptr, nullptr,
                                  0),
              "cudaLibraryLoadData (generated kernel)");
        check(cudaLibraryGetKernel(&e.kernel, e.lib, name.c_str()), "cudaLibraryGetKernel");
        if (e.smem > 48 * 1024)
          check(cudaFuncSetAttribute(reinterpret_cast<const void*>(e.kernel),
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(e.smem)),
                "cudaFuncSetAttribute (generated kernel)");
      } else if (!warned_nvrtc) {
        warned_nvrtc = true;
        std::fprintf(stderr,
                     "copse: [cuda] NVRTC could not compile fused program '%s' for %s; using the "
                     "interpreter kernel for it:\n%s\n",
                     prog.name.c_str(), arch.c_str(), r.log.c_str());
      }
    }
    return fused.emplace(prog.fingerprint, e).first->second;
  }

  void run_fused(const ops::FusedProgram& prog, int rows, const ops::RowView<const float>* inputs,
                 const ops::RowView<float>* outputs, bool interpret) {
    if (rows <= 0 || prog.code.empty()) return;
    FusedEntry& e = entry(prog);
    kernels::FusedArgs args = fused_args(prog, rows, inputs, outputs);
    if (e.kernel && !interpret) {
      void* params[] = {&args};
      const dim3 grid((rows + e.warps - 1) / e.warps), block(32 * e.warps);
      launched(cudaLaunchKernel(reinterpret_cast<const void*>(e.kernel), grid, block, params,
                                e.smem, compute),
               "launch of a generated fused kernel");
      ++stats.fused_generated;
    } else {
      launched(kernels::run_interpreter(compute, args, e.regs, e.num_regs, e.code, e.num_instr,
                                        prog.scratch_width, e.warps),
               "launch of the fused-program interpreter");
      ++stats.fused_interpreted;
    }
  }
};

CudaBackend::CudaBackend(const CudaOptions& opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opts = opts;
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
  check(cudaGetDeviceProperties(&m.prop, opts.device), "cudaGetDeviceProperties");
  m.arch = fmt::format("sm_{}{}", m.prop.major, m.prop.minor);
  check(cudaDeviceGetAttribute(&m.max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, opts.device),
        "cudaDeviceGetAttribute");
  check(kernels::interpreter_allow_shared(m.max_smem), "cudaFuncSetAttribute (interpreter)");
  check(cudaStreamCreateWithFlags(&m.compute, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaStreamCreateWithFlags(&m.copy, cudaStreamNonBlocking), "cudaStreamCreate");
  check_blas(cublasCreate(&m.blas), "cublasCreate");
  check_blas(cublasSetStream(m.blas, m.compute), "cublasSetStream");
  check_blas(cublasSetMathMode(m.blas, opts.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                 : CUBLAS_DEFAULT_MATH),
             "cublasSetMathMode");
  for (auto& ev : m.copied) check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&m.compute_mark, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaMalloc(&m.reduce_ws, sizeof(double) * (kernels::kReduceBlocks + 2)), "cudaMalloc");
  check(cudaMalloc(&m.bad_label, sizeof(int)), "cudaMalloc");
  check(cudaMallocHost(&m.host_result, sizeof(double) * 2), "cudaMallocHost");
  check(cudaMalloc(&m.nonfinite, sizeof(unsigned long long)), "cudaMalloc");
  check(cudaMemsetAsync(m.nonfinite, 0xff, sizeof(unsigned long long), m.compute),
        "cudaMemsetAsync");
  check(cudaMallocHost(&m.host_nonfinite, sizeof(unsigned long long)), "cudaMallocHost");
}

CudaBackend::~CudaBackend() {
  Impl& m = *impl_;
  if (m.compute) quiet(cudaStreamSynchronize(m.compute), "cudaStreamSynchronize");
  for (auto& kv : m.fused) {
    if (kv.second.lib) quiet(cudaLibraryUnload(kv.second.lib), "cudaLibraryUnload");
    quiet(cudaFree(kv.second.regs), "cudaFree");
    quiet(cudaFree(kv.second.code), "cudaFree");
  }
  for (int k = 0; k < 2; ++k) {
    if (m.copied[k]) quiet(cudaEventSynchronize(m.copied[k]), "cudaEventSynchronize");
    if (m.pinned[k]) quiet(cudaFreeHost(m.pinned[k]), "cudaFreeHost");
    if (m.copied[k]) quiet(cudaEventDestroy(m.copied[k]), "cudaEventDestroy");
  }
  if (m.compute_mark) quiet(cudaEventDestroy(m.compute_mark), "cudaEventDestroy");
  for (void* p : {static_cast<void*>(m.rows_ws), static_cast<void*>(m.reduce_ws),
                  static_cast<void*>(m.row_loss), static_cast<void*>(m.row_hit),
                  static_cast<void*>(m.pred_ws), static_cast<void*>(m.bad_label),
                  static_cast<void*>(m.ones), static_cast<void*>(m.nonfinite)})
    if (p) quiet(cudaFree(p), "cudaFree");
  if (m.host_result) quiet(cudaFreeHost(m.host_result), "cudaFreeHost");
  if (m.host_nonfinite) quiet(cudaFreeHost(m.host_nonfinite), "cudaFreeHost");
  if (m.blas) cublasDestroy(m.blas);
  if (m.copy) quiet(cudaStreamDestroy(m.copy), "cudaStreamDestroy");
  if (m.compute) quiet(cudaStreamDestroy(m.compute), "cudaStreamDestroy");
}

std::string CudaBackend::name() const {
  return fmt::format("cuda:{} ({})", impl_->opts.device, impl_->prop.name);
}
const CudaOptions& CudaBackend::options() const { return impl_->opts; }
CUstream_st* CudaBackend::stream() const { return impl_->compute; }
const CudaStats& CudaBackend::stats() const { return impl_->stats; }
void CudaBackend::reset_stats() {
  const std::size_t now = impl_->stats.device_bytes;
  impl_->stats = CudaStats();
  impl_->stats.device_bytes = impl_->stats.peak_device_bytes = now;
}

// ---- memory ----------------------------------------------------------------

void* CudaBackend::allocate(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(bytes, 256));
  if (e != cudaSuccess) {
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("[cuda] out of device memory: asked for {} bytes ({:.2f} GiB) on {}; {:.2f} GiB free "
         "of {:.2f} GiB ({})",
         bytes, gib(bytes), impl_->prop.name, gib(free_b), gib(total_b), cudaGetErrorString(e));
  }
  impl_->stats.device_bytes += bytes;
  impl_->stats.peak_device_bytes =
      std::max(impl_->stats.peak_device_bytes, impl_->stats.device_bytes);
  return p;
}

void CudaBackend::deallocate(void* p, std::size_t bytes) {
  if (!p) return;
  check(cudaFree(p), "cudaFree");
  impl_->stats.device_bytes -= std::min(bytes, impl_->stats.device_bytes);
}

void CudaBackend::upload(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->compute),
        "cudaMemcpyAsync (upload)");
  check(cudaStreamSynchronize(impl_->compute), "cudaStreamSynchronize (upload)");
  ++impl_->stats.syncs;
}

void CudaBackend::download(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl_->compute),
        "cudaMemcpyAsync (download)");
  check(cudaStreamSynchronize(impl_->compute), "cudaStreamSynchronize (download)");
  ++impl_->stats.syncs;
}

// The copy stream waits for the compute work queued so far (the destination
// may be arena memory an earlier batch still reads), copies from the pinned
// buffer, and the compute stream waits for the copy. The host only waits if
// the pinned buffer's previous copy (two uploads ago) is still running.
void CudaBackend::upload_async(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  Impl& m = *impl_;
  const int k = m.next_pinned;
  m.next_pinned ^= 1;
  check(cudaEventSynchronize(m.copied[k]), "cudaEventSynchronize (staging buffer)");
  if (m.pinned_bytes[k] < bytes) {
    if (m.pinned[k]) check(cudaFreeHost(m.pinned[k]), "cudaFreeHost");
    m.pinned[k] = nullptr;
    const std::size_t want = std::max(bytes, 2 * m.pinned_bytes[k]);
    check(cudaMallocHost(&m.pinned[k], want), "cudaMallocHost (staging buffer)");
    m.pinned_bytes[k] = want;
  }
  std::memcpy(m.pinned[k], src, bytes);
  check(cudaEventRecord(m.compute_mark, m.compute), "cudaEventRecord");
  check(cudaStreamWaitEvent(m.copy, m.compute_mark, 0), "cudaStreamWaitEvent");
  check(cudaMemcpyAsync(dst, m.pinned[k], bytes, cudaMemcpyHostToDevice, m.copy),
        "cudaMemcpyAsync (batch upload)");
  check(cudaEventRecord(m.copied[k], m.copy), "cudaEventRecord");
  check(cudaStreamWaitEvent(m.compute, m.copied[k], 0), "cudaStreamWaitEvent");
}

void CudaBackend::sync() {
  check(cudaStreamSynchronize(impl_->compute), "cudaStreamSynchronize");
  ++impl_->stats.syncs;
}

// ---- gemm ------------------------------------------------------------------

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
// row-major matrix read column-major is its transpose: so cuBLAS gets B
// first, with the same transpose flags, and m and n swapped.
void CudaBackend::gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                       const float* a, long lda, const float* b, long ldb, float beta, float* c,
                       long ldc) {
  if (m < 0 || n < 0 || k < 0) fail("[cuda gemm] negative size m={} n={} k={}", m, n, k);
  if (m == 0 || n == 0) return;
  Impl& im = *impl_;
  if (k == 0 || alpha == 0.f) {
    im.launched(kernels::scale_matrix(im.compute, m, n, beta, c, ldc), "scale_matrix");
    return;
  }
  const long min_lda = trans_a ? m : k, min_ldb = trans_b ? k : n;
  if (lda < min_lda || ldb < min_ldb || ldc < n)
    fail("[cuda gemm] leading dimension too small: lda={} (>= {}), ldb={} (>= {}), ldc={} (>= {})",
         lda, min_lda, ldb, min_ldb, ldc, n);
  check_blas(cublasSgemm(im.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
                         static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c,
                         static_cast<int>(ldc)),
             "cublasSgemm");
  ++im.stats.launches;
  ++im.stats.gemms;
}

// ---- rows ------------------------------------------------------------------

void CudaBackend::gather_rows(int n, int width, const float* src, long ld_src, const int* idx,
                              float* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  impl_->launched(kernels::gather_rows(impl_->compute, n, width, src, ld_src, idx, dst, ld_dst),
                  "gather_rows");
}

void CudaBackend::scatter_add_rows(int n, int width, const float* src, long ld_src,
                                   const int* idx, float* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  impl_->launched(
      kernels::scatter_add_rows(impl_->compute, n, width, src, ld_src, idx, dst, ld_dst),
      "scatter_add_rows");
}

void CudaBackend::gather_rows_batched(const ops::RowJob<float>* jobs, int count) {
  for (int k = 0; k < count; k += kernels::kMaxRowJobs) {
    const kernels::RowJobs p = pack_jobs(jobs, k, std::min(count, k + kernels::kMaxRowJobs));
    if (p.count > 0)
      impl_->launched(kernels::gather_rows_batched(impl_->compute, p), "gather_rows_batched");
  }
}

void CudaBackend::scatter_add_rows_batched(const ops::RowJob<float>* jobs, int count) {
  for (int k = 0; k < count; k += kernels::kMaxRowJobs) {
    const kernels::RowJobs p = pack_jobs(jobs, k, std::min(count, k + kernels::kMaxRowJobs));
    if (p.count > 0)
      impl_->launched(kernels::scatter_add_rows_batched(impl_->compute, p),
                      "scatter_add_rows_batched");
  }
}

void CudaBackend::segment_sum(int n, int width, const int* ptr, const float* src, long ld_src,
                              float* dst, long ld_dst, bool mean, bool accumulate) {
  if (n <= 0 || width <= 0) return;
  impl_->launched(kernels::segment_sum(impl_->compute, n, width, ptr, src, ld_src, dst, ld_dst,
                                       mean, accumulate),
                  "segment_sum");
}

void CudaBackend::copy_rows(int rows, int width, const float* src, long ld_src, float* dst,
                            long ld_dst, bool accumulate) {
  if (rows <= 0 || width <= 0) return;
  impl_->launched(
      kernels::copy_rows(impl_->compute, rows, width, src, ld_src, dst, ld_dst, accumulate),
      "copy_rows");
}

void CudaBackend::fill_rows(int rows, int width, float value, float* dst, long ld_dst) {
  if (rows <= 0 || width <= 0) return;
  impl_->launched(kernels::fill_rows(impl_->compute, rows, width, value, dst, ld_dst),
                  "fill_rows");
}

void CudaBackend::colsum(int rows, int width, const float* x, long ld, float* y,
                         bool accumulate) {
  if (width <= 0) return;
  if (rows <= 0) {
    if (!accumulate) fill_rows(1, width, 0.f, y, width);
    return;
  }
  // y = x^T 1 (+ y): the column-major view of row-major x is x^T [width, rows].
  // cuBLAS's GEMV is deterministic and uses the whole GPU for tall x.
  Impl& m = *impl_;
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  check_blas(cublasSgemv(m.blas, CUBLAS_OP_N, width, rows, &one, x, static_cast<int>(ld),
                         m.ones_for(rows), 1, &beta, y, 1),
             "cublasSgemv (colsum)");
  ++m.stats.launches;
}

void CudaBackend::scale_rows(int rows, int width, const float* scale, float* x, long ld) {
  if (rows <= 0 || width <= 0) return;
  impl_->launched(kernels::scale_rows(impl_->compute, rows, width, scale, x, ld), "scale_rows");
}

// ---- fused -----------------------------------------------------------------

void CudaBackend::run_fused(const ops::FusedProgram& prog, int rows,
                            const ops::RowView<const float>* inputs,
                            const ops::RowView<float>* outputs) {
  impl_->run_fused(prog, rows, inputs, outputs, false);
}

void CudaBackend::run_fused_interpreted(const ops::FusedProgram& prog, int rows,
                                        const ops::RowView<const float>* inputs,
                                        const ops::RowView<float>* outputs) {
  impl_->run_fused(prog, rows, inputs, outputs, true);
}

// ---- losses and reductions -------------------------------------------------

double CudaBackend::softmax_xent(int rows, int classes, const float* logits, long ld,
                                 const int* labels, float scale, float* dlogits, long ld_d,
                                 long* correct, int* pred) {
  if (rows <= 0) {
    if (correct) *correct = 0;
    return 0.0;
  }
  Impl& m = *impl_;
  m.ensure_softmax(rows);
  double* out = m.reduce_ws + kernels::kReduceBlocks;
  m.launched(kernels::softmax_xent(m.compute, rows, classes, logits, ld, labels, scale, dlogits,
                                   ld_d, pred ? m.pred_ws : nullptr, m.row_loss, m.row_hit, out,
                                   m.bad_label),
             "softmax_xent");
  m.stats.launches += 2;  // its label check and finishing reduction
  // The lowest row with a bad label, INT_MAX if none; with one the kernels
  // wrote nothing, and neither do we (pred, correct), as on the CPU.
  int bad = INT_MAX;
  check(cudaMemcpyAsync(&bad, m.bad_label, sizeof(int), cudaMemcpyDeviceToHost, m.compute),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(m.compute), "cudaStreamSynchronize");
  ++m.stats.syncs;
  if (bad != INT_MAX) {
    int label = 0;
    check(cudaMemcpyAsync(&label, labels + bad, sizeof(int), cudaMemcpyDeviceToHost, m.compute),
          "cudaMemcpyAsync (label)");
    check(cudaStreamSynchronize(m.compute), "cudaStreamSynchronize");
    throw Error(ops::softmax_label_error(bad, label, classes));
  }
  if (pred)
    check(cudaMemcpyAsync(pred, m.pred_ws, sizeof(int) * rows, cudaMemcpyDeviceToHost, m.compute),
          "cudaMemcpyAsync (predictions)");
  m.read_results(2);
  if (correct) *correct = std::lround(m.host_result[1]);
  return m.host_result[0];
}

double CudaBackend::sum_squares(std::size_t n, const float* x) {
  if (n == 0) return 0.0;
  Impl& m = *impl_;
  m.launched(kernels::sum_squares(m.compute, n, x, m.reduce_ws,
                                  m.reduce_ws + kernels::kReduceBlocks),
             "sum_squares");
  ++m.stats.launches;
  m.read_results(1);
  return m.host_result[0];
}

void CudaBackend::scale(std::size_t n, float s, float* x) {
  if (n == 0) return;
  impl_->launched(kernels::scale(impl_->compute, n, s, x), "scale");
}

void CudaBackend::fill_listed_rows(int n_rows, const int* rows, int width, float value,
                                   float* base) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.launched(kernels::fill_listed_rows(m.compute, n_rows, d, width, value, base),
             "fill_listed_rows");
}

double CudaBackend::sum_squares_listed_rows(int n_rows, const int* rows, int width,
                                            const float* base) {
  if (n_rows <= 0 || width <= 0) return 0.0;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.launched(kernels::sum_squares_listed_rows(m.compute, n_rows, d, width, base, m.reduce_ws,
                                              m.reduce_ws + kernels::kReduceBlocks),
             "sum_squares_listed_rows");
  ++m.stats.launches;
  m.read_results(1);
  return m.host_result[0];
}

void CudaBackend::scale_listed_rows(int n_rows, const int* rows, int width, float s,
                                    float* base) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.launched(kernels::scale_listed_rows(m.compute, n_rows, d, width, s, base),
             "scale_listed_rows");
}

void CudaBackend::optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                   float* p, const float* g, float* s0, float* s1) {
  if (n == 0) return;
  impl_->launched(
      kernels::optimizer_update(impl_->compute, optimizer_params(cfg, t), n, p, g, s0, s1),
      "optimizer_update");
}

void CudaBackend::optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                        const int* rows, int width, float* p, const float* g,
                                        float* s0, float* s1) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.launched(kernels::optimizer_update_rows(m.compute, optimizer_params(cfg, t), n_rows, d,
                                            width, p, g, s0, s1),
             "optimizer_update_rows");
}

void CudaBackend::optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                  const float* p, const float* g, const float* s0,
                                  const float* s1, int tag) {
  if (n == 0) return;
  impl_->launched(kernels::optimizer_check(impl_->compute, optimizer_params(cfg, t), n, p, g, s0,
                                           s1, tag, impl_->nonfinite),
                  "optimizer_check");
}

void CudaBackend::optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                       const int* rows, int width, const float* p,
                                       const float* g, const float* s0, const float* s1,
                                       int tag) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.launched(kernels::optimizer_check_rows(m.compute, optimizer_params(cfg, t), n_rows, d, width,
                                           p, g, s0, s1, tag, m.nonfinite),
             "optimizer_check_rows");
}

ops::Backend<float>::NonFinite CudaBackend::take_nonfinite() {
  Impl& m = *impl_;
  check(cudaMemcpyAsync(m.host_nonfinite, m.nonfinite, sizeof(unsigned long long),
                        cudaMemcpyDeviceToHost, m.compute),
        "cudaMemcpyAsync (non-finite check)");
  check(cudaMemsetAsync(m.nonfinite, 0xff, sizeof(unsigned long long), m.compute),
        "cudaMemsetAsync");
  check(cudaStreamSynchronize(m.compute), "cudaStreamSynchronize");
  ++m.stats.syncs;
  const unsigned long long v = *m.host_nonfinite;
  NonFinite r;
  if (v != ~0ull) {
    r.tag = static_cast<int>(v >> kernels::kNonFiniteTagShift);
    r.offset = static_cast<long>(v & ((1ull << kernels::kNonFiniteTagShift) - 1));
  }
  return r;
}

}  // namespace copse::cuda
