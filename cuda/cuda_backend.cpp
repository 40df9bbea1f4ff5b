// CudaBackend (see cuda_backend.h): what the backend decides, in plain C++
// against DeviceOps: its streams, events and scratch buffers, the pinned
// staging of uploads, the cuBLAS argument order, the fused-kernel cache, and
// where the host waits. No CUDA header: the same code drives a GPU and the
// host emulator.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "common/error.h"
#include "cuda/device_ops.h"
#include "cuda/launch_plans.h"

namespace copse::cuda {

namespace {

// A fused program's kernels: the generated one (if it compiled) and the
// program in device memory for the interpreter. `program` is the host copy
// that regs and code were uploaded from (asynchronously, on the compute
// stream): it lives as long as the entry, so the copy never reads freed memory.
struct FusedEntry {
  FusedKernel kernel;
  FusedShape shape;
  InterpreterProgram program;
  DeviceMem regs, code;
};

// A device buffer of `T` that grows (grown_capacity) and keeps its contents
// only as far as the caller rewrites them.
template <typename T>
struct Scratch {
  DeviceMem mem;
  std::size_t n = 0;
  // True when it was reallocated.
  bool ensure(DeviceOps& dev, std::size_t need, const char* what) {
    if (need <= n) return false;
    const std::size_t want = grown_capacity(need, n);
    mem.reset();  // first: a failed allocation leaves it empty, not dangling
    n = 0;
    mem = device_mem(dev, sizeof(T) * want, what);
    n = want;
    return true;
  }
  T* get() const { return as<T>(mem); }
};

}  // namespace

struct CudaBackend::Impl {
  // First member, so destroyed last: every handle below releases through it.
  std::unique_ptr<DeviceOps> dev;
  CudaOptions opts;
  CudaStats stats;
  Stream compute, copy;

  // upload_async: two pinned staging buffers, used in turn.
  PinnedMem pinned[2];
  std::size_t pinned_bytes[2] = {0, 0};
  Event copied[2];  // the copy out of pinned[k] is done
  Event compute_mark;
  int next_pinned = 0;

  // Scratch for row lists, reductions and the softmax.
  Scratch<int> rows_ws;
  DeviceMem reduce_ws;  // [kReduceBlocks partials, 2 results] doubles
  Scratch<double> row_loss;
  Scratch<int> row_hit, pred_ws;
  DeviceMem bad_label;    // int
  PinnedMem host_result;  // [2] doubles
  PinnedMem host_bad_label;  // [1] int
  PinnedMem host_pred;       // [host_pred_n] ints: predictions, copied out once valid
  std::size_t host_pred_n = 0;
  // The non-finite checks' word (~0 = none found) and its pinned host copy.
  DeviceMem nonfinite;
  PinnedMem host_nonfinite;
  Scratch<float> ones;  // of 1.0, for column sums as a GEMV

  std::unordered_map<std::uint64_t, FusedEntry> fused;
  bool warned_nvrtc = false;

  StreamObj* cs() const { return compute.get(); }
  double* reduce_partial() const { return as<double>(reduce_ws); }
  double* reduce_out() const { return as<double>(reduce_ws) + kernels::kReduceBlocks; }

  // Row lists go up through the pinned double buffer (see upload_async): a
  // copy from pageable memory would make the driver drain the stream first.
  int* upload_rows(CudaBackend& be, const int* rows, int n) {
    rows_ws.ensure(*dev, static_cast<std::size_t>(n), "row list");
    be.upload_async(rows_ws.get(), rows, sizeof(int) * n);
    return rows_ws.get();
  }

  const float* ones_for(std::size_t n) {
    if (ones.ensure(*dev, n, "ones")) {
      dev->fill_rows(cs(), 1, static_cast<int>(ones.n), 1.f, ones.get(),
                     static_cast<long>(ones.n));
      ++stats.launches;
    }
    return ones.get();
  }

  void ensure_softmax(std::size_t rows) {
    row_loss.ensure(*dev, rows, "softmax");
    row_hit.ensure(*dev, rows, "softmax");
    pred_ws.ensure(*dev, rows, "softmax");
  }

  // Reads `count` doubles from the reductions' result slots (one host wait).
  const double* read_results(int count) {
    dev->copy_async(host_result.get(), reduce_out(), sizeof(double) * count,
                    CopyKind::DeviceToHost, cs());
    dev->synchronize(cs());
    ++stats.syncs;
    return as<double>(host_result);
  }

  FusedEntry& entry(const ops::FusedProgram& prog) {
    auto it = fused.find(prog.fingerprint);
    if (it != fused.end()) return it->second;
    if (prog.temp_offset.size() != prog.regs.size())
      fail("[cuda] fused program '{}' was not finalized", prog.name);
    if (prog.num_inputs + prog.num_outputs > kernels::kMaxViews)
      fail("[cuda] fused program '{}' has {} inputs and outputs; at most {} are supported",
           prog.name, prog.num_inputs + prog.num_outputs, kernels::kMaxViews);
    // Everything is built in `e` and only then cached: if a step throws, the
    // handles made so far free themselves.
    FusedEntry e;
    e.shape = fused_shape(prog, dev->info().max_smem, dev->info().name);
    e.program = interpreter_program(prog);
    const auto& regs = e.program.regs;
    const auto& code = e.program.code;
    e.regs = device_mem(*dev, sizeof(kernels::DevReg) * std::max<size_t>(1, regs.size()),
                        "fused program");
    e.code = device_mem(*dev, sizeof(kernels::DevInstr) * std::max<size_t>(1, code.size()),
                        "fused program");
    // On the compute stream, so that the interpreter's launches come after.
    dev->copy_async(e.regs.get(), regs.data(), sizeof(kernels::DevReg) * regs.size(),
                    CopyKind::HostToDevice, cs());
    dev->copy_async(e.code.get(), code.data(), sizeof(kernels::DevInstr) * code.size(),
                    CopyKind::HostToDevice, cs());
    if (opts.generated_kernels) {
      FusedLoadInfo info;
      e.kernel = FusedKernel(dev->load_fused(prog, e.shape.smem, &info), {dev.get()});
      if (info.compiled) {
        ++stats.nvrtc_compiles;
        stats.nvrtc_seconds += info.seconds;
      }
      if (!e.kernel && !warned_nvrtc) {
        warned_nvrtc = true;
        std::fprintf(stderr,
                     "copse: [cuda] NVRTC could not compile fused program '%s' for %s; using the "
                     "interpreter kernel for it:\n%s\n",
                     prog.name.c_str(), dev->info().arch.c_str(), info.log.c_str());
      }
    }
    return fused.emplace(prog.fingerprint, std::move(e)).first->second;
  }

  void run_fused(const ops::FusedProgram& prog, int rows, const ops::RowView<const float>* inputs,
                 const ops::RowView<float>* outputs, bool interpret) {
    if (rows <= 0 || prog.code.empty()) return;
    FusedEntry& e = entry(prog);
    const kernels::FusedArgs args = fused_args(prog, rows, inputs, outputs);
    if (e.kernel && !interpret) {
      dev->launch_fused(e.kernel.get(), e.shape, rows, args, cs());
      ++stats.fused_generated;
    } else {
      dev->run_interpreter(cs(), args, as<kernels::DevReg>(e.regs),
                           static_cast<int>(e.program.regs.size()), as<kernels::DevInstr>(e.code),
                           static_cast<int>(e.program.code.size()), prog.scratch_width,
                           e.shape.warps);
      ++stats.fused_interpreted;
    }
    ++stats.launches;
  }
};

// Every resource is an owning handle: when a step throws, those made so far
// are freed by ~Impl (through impl_, already constructed).
CudaBackend::CudaBackend(std::unique_ptr<DeviceOps> device, const CudaOptions& opts)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  COPSE_ASSERT(device != nullptr);
  m.dev = std::move(device);
  m.opts = opts;
  DeviceOps& d = *m.dev;
  m.compute = make_stream(d);
  m.copy = make_stream(d);
  for (auto& ev : m.copied) ev = make_event(d);
  m.compute_mark = make_event(d);
  m.reduce_ws = device_mem(d, sizeof(double) * (kernels::kReduceBlocks + 2), "reductions");
  m.bad_label = device_mem(d, sizeof(int), "softmax");
  m.host_result = pinned_mem(d, sizeof(double) * 2, "results");
  m.host_bad_label = pinned_mem(d, sizeof(int), "softmax");
  m.nonfinite = device_mem(d, sizeof(unsigned long long), "non-finite check");
  d.memset_async(m.nonfinite.get(), 0xff, sizeof(unsigned long long), m.cs());
  m.host_nonfinite = pinned_mem(d, sizeof(unsigned long long), "non-finite check");
}

// The queued work finishes before anything is freed (the handles, in ~Impl).
CudaBackend::~CudaBackend() {
  Impl& m = *impl_;
  for (StreamObj* s : {m.compute.get(), m.copy.get()}) {
    if (!s) continue;
    try {
      m.dev->synchronize(s);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "copse: [cuda] at exit: %s\n", e.what());
    }
  }
}

std::string CudaBackend::name() const {
  return fmt::format("cuda:{} ({})", impl_->opts.device, impl_->dev->info().name);
}
const CudaOptions& CudaBackend::options() const { return impl_->opts; }
CUstream_st* CudaBackend::stream() const { return impl_->dev->native(impl_->cs()); }
DeviceOps& CudaBackend::device() const { return *impl_->dev; }
const CudaStats& CudaBackend::stats() const { return impl_->stats; }
void CudaBackend::reset_stats() {
  const std::size_t now = impl_->stats.device_bytes;
  impl_->stats = CudaStats();
  impl_->stats.device_bytes = impl_->stats.peak_device_bytes = now;
}

// ---- memory ----------------------------------------------------------------

void* CudaBackend::allocate(std::size_t bytes) {
  void* p = impl_->dev->alloc(std::max<std::size_t>(bytes, 256), "tensor");
  impl_->stats.device_bytes += bytes;
  impl_->stats.peak_device_bytes =
      std::max(impl_->stats.peak_device_bytes, impl_->stats.device_bytes);
  return p;
}

void CudaBackend::deallocate(void* p, std::size_t bytes) {
  if (!p) return;
  impl_->dev->free(p);
  impl_->stats.device_bytes -= std::min(bytes, impl_->stats.device_bytes);
}

void CudaBackend::upload(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  Impl& m = *impl_;
  m.dev->copy_async(dst, src, bytes, CopyKind::HostToDevice, m.cs());
  m.dev->synchronize(m.cs());
  ++m.stats.syncs;
}

void CudaBackend::download(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  Impl& m = *impl_;
  m.dev->copy_async(dst, src, bytes, CopyKind::DeviceToHost, m.cs());
  m.dev->synchronize(m.cs());
  ++m.stats.syncs;
}

// The copy stream waits for the compute work queued so far (the destination
// may be arena memory an earlier batch still reads), copies from the pinned
// buffer, and the compute stream waits for the copy. The host only waits if
// the pinned buffer's previous copy (two uploads ago) is still running.
void CudaBackend::upload_async(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  Impl& m = *impl_;
  DeviceOps& d = *m.dev;
  const int k = m.next_pinned;
  m.next_pinned ^= 1;
  d.synchronize(m.copied[k].get());
  if (m.pinned_bytes[k] < bytes) {
    const std::size_t want = grown_capacity(bytes, m.pinned_bytes[k]);
    m.pinned[k].reset();
    m.pinned_bytes[k] = 0;
    m.pinned[k] = pinned_mem(d, want, "staging buffer");
    m.pinned_bytes[k] = want;
  }
  std::memcpy(m.pinned[k].get(), src, bytes);
  d.record(m.compute_mark.get(), m.cs());
  d.wait(m.copy.get(), m.compute_mark.get());
  d.copy_async(dst, m.pinned[k].get(), bytes, CopyKind::HostToDevice, m.copy.get());
  d.record(m.copied[k].get(), m.copy.get());
  d.wait(m.cs(), m.copied[k].get());
}

void CudaBackend::sync() {
  impl_->dev->synchronize(impl_->cs());
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
    im.dev->scale_matrix(im.cs(), m, n, beta, c, ldc);
    ++im.stats.launches;
    return;
  }
  const long min_lda = trans_a ? m : k, min_ldb = trans_b ? k : n;
  if (lda < min_lda || ldb < min_ldb || ldc < n)
    fail("[cuda gemm] leading dimension too small: lda={} (>= {}), ldb={} (>= {}), ldc={} (>= {})",
         lda, min_lda, ldb, min_ldb, ldc, n);
  im.dev->sgemm(im.cs(), trans_b, trans_a, n, m, k, alpha, b, static_cast<int>(ldb), a,
                static_cast<int>(lda), beta, c, static_cast<int>(ldc));
  ++im.stats.launches;
  ++im.stats.gemms;
}

// ---- rows ------------------------------------------------------------------

void CudaBackend::gather_rows(int n, int width, const float* src, long ld_src, const int* idx,
                              float* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  impl_->dev->gather_rows(impl_->cs(), n, width, src, ld_src, idx, dst, ld_dst);
  ++impl_->stats.launches;
}

void CudaBackend::scatter_add_rows(int n, int width, const float* src, long ld_src,
                                   const int* idx, float* dst, long ld_dst) {
  if (n <= 0 || width <= 0) return;
  impl_->dev->scatter_add_rows(impl_->cs(), n, width, src, ld_src, idx, dst, ld_dst);
  ++impl_->stats.launches;
}

void CudaBackend::gather_rows_batched(const ops::RowJob<float>* jobs, int count) {
  for (const kernels::RowJobs& p : row_job_launches(jobs, count)) {
    impl_->dev->gather_rows_batched(impl_->cs(), p);
    ++impl_->stats.launches;
  }
}

void CudaBackend::scatter_add_rows_batched(const ops::RowJob<float>* jobs, int count) {
  for (const kernels::RowJobs& p : row_job_launches(jobs, count)) {
    impl_->dev->scatter_add_rows_batched(impl_->cs(), p);
    ++impl_->stats.launches;
  }
}

void CudaBackend::segment_sum(int n, int width, const int* ptr, const float* src, long ld_src,
                              float* dst, long ld_dst, bool mean, bool accumulate) {
  if (n <= 0 || width <= 0) return;
  impl_->dev->segment_sum(impl_->cs(), n, width, ptr, src, ld_src, dst, ld_dst, mean, accumulate);
  ++impl_->stats.launches;
}

void CudaBackend::copy_rows(int rows, int width, const float* src, long ld_src, float* dst,
                            long ld_dst, bool accumulate) {
  if (rows <= 0 || width <= 0) return;
  impl_->dev->copy_rows(impl_->cs(), rows, width, src, ld_src, dst, ld_dst, accumulate);
  ++impl_->stats.launches;
}

void CudaBackend::fill_rows(int rows, int width, float value, float* dst, long ld_dst) {
  if (rows <= 0 || width <= 0) return;
  impl_->dev->fill_rows(impl_->cs(), rows, width, value, dst, ld_dst);
  ++impl_->stats.launches;
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
  m.dev->sgemv(m.cs(), width, rows, 1.f, x, static_cast<int>(ld), m.ones_for(rows),
               accumulate ? 1.f : 0.f, y);
  ++m.stats.launches;
}

void CudaBackend::scale_rows(int rows, int width, const float* scale, float* x, long ld) {
  if (rows <= 0 || width <= 0) return;
  impl_->dev->scale_rows(impl_->cs(), rows, width, scale, x, ld);
  ++impl_->stats.launches;
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
  DeviceOps& d = *m.dev;
  m.ensure_softmax(rows);
  d.softmax_xent(m.cs(), rows, classes, logits, ld, labels, scale, dlogits, ld_d,
                 pred ? m.pred_ws.get() : nullptr, m.row_loss.get(), m.row_hit.get(),
                 m.reduce_out(), as<int>(m.bad_label));
  m.stats.launches += 3;  // the label check, the loss kernel and its finishing reduction
  // The lowest row with a bad label, INT_MAX if none; with one the kernels
  // wrote nothing, and neither do we (pred, correct), as on the CPU.
  // The verdict, the predictions (into pinned staging, so that the caller's
  // buffer is written only when valid) and the totals: one host wait.
  d.copy_async(m.host_bad_label.get(), m.bad_label.get(), sizeof(int), CopyKind::DeviceToHost,
               m.cs());
  if (pred) {
    if (m.host_pred_n < static_cast<std::size_t>(rows)) {
      m.host_pred_n = grown_capacity(rows, m.host_pred_n);
      m.host_pred.reset();
      m.host_pred = pinned_mem(d, sizeof(int) * m.host_pred_n, "softmax predictions");
    }
    d.copy_async(m.host_pred.get(), m.pred_ws.get(), sizeof(int) * rows, CopyKind::DeviceToHost,
                 m.cs());
  }
  const double* res = m.read_results(2);
  const int bad = *as<int>(m.host_bad_label);
  if (bad != INT_MAX) {
    int label = 0;  // the error's detail: a second wait, on the failure path only
    d.copy_async(&label, labels + bad, sizeof(int), CopyKind::DeviceToHost, m.cs());
    d.synchronize(m.cs());
    throw Error(ops::softmax_label_error(bad, label, classes));
  }
  if (pred) std::memcpy(pred, as<int>(m.host_pred), sizeof(int) * rows);
  if (correct) *correct = std::lround(res[1]);
  return res[0];
}

double CudaBackend::sum_squares(std::size_t n, const float* x) {
  if (n == 0) return 0.0;
  Impl& m = *impl_;
  m.dev->sum_squares(m.cs(), n, x, m.reduce_partial(), m.reduce_out());
  m.stats.launches += 2;
  return m.read_results(1)[0];
}

void CudaBackend::scale(std::size_t n, float s, float* x) {
  if (n == 0) return;
  impl_->dev->scale(impl_->cs(), n, s, x);
  ++impl_->stats.launches;
}

void CudaBackend::fill_listed_rows(int n_rows, const int* rows, int width, float value,
                                   float* base) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.dev->fill_listed_rows(m.cs(), n_rows, d, width, value, base);
  ++m.stats.launches;
}

double CudaBackend::sum_squares_listed_rows(int n_rows, const int* rows, int width,
                                            const float* base) {
  if (n_rows <= 0 || width <= 0) return 0.0;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.dev->sum_squares_listed_rows(m.cs(), n_rows, d, width, base, m.reduce_partial(),
                                 m.reduce_out());
  m.stats.launches += 2;
  return m.read_results(1)[0];
}

void CudaBackend::scale_listed_rows(int n_rows, const int* rows, int width, float s,
                                    float* base) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.dev->scale_listed_rows(m.cs(), n_rows, d, width, s, base);
  ++m.stats.launches;
}

void CudaBackend::optimizer_update(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                   float* p, const float* g, float* s0, float* s1) {
  if (n == 0) return;
  impl_->dev->optimizer_update(impl_->cs(), optimizer_params(cfg, t), n, p, g, s0, s1);
  ++impl_->stats.launches;
}

void CudaBackend::optimizer_update_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                        const int* rows, int width, float* p, const float* g,
                                        float* s0, float* s1) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.dev->optimizer_update_rows(m.cs(), optimizer_params(cfg, t), n_rows, d, width, p, g, s0, s1);
  ++m.stats.launches;
}

void CudaBackend::optimizer_check(const memory::OptimizerConfig& cfg, long t, std::size_t n,
                                  const float* p, const float* g, const float* s0,
                                  const float* s1, int tag) {
  if (n == 0) return;
  Impl& m = *impl_;
  m.dev->optimizer_check(m.cs(), optimizer_params(cfg, t), n, p, g, s0, s1, tag,
                         as<unsigned long long>(m.nonfinite));
  ++m.stats.launches;
}

void CudaBackend::optimizer_check_rows(const memory::OptimizerConfig& cfg, long t, int n_rows,
                                       const int* rows, int width, const float* p,
                                       const float* g, const float* s0, const float* s1,
                                       int tag) {
  if (n_rows <= 0 || width <= 0) return;
  Impl& m = *impl_;
  int* d = m.upload_rows(*this, rows, n_rows);
  m.dev->optimizer_check_rows(m.cs(), optimizer_params(cfg, t), n_rows, d, width, p, g, s0, s1,
                              tag, as<unsigned long long>(m.nonfinite));
  ++m.stats.launches;
}

ops::Backend<float>::NonFinite CudaBackend::take_nonfinite() {
  Impl& m = *impl_;
  DeviceOps& d = *m.dev;
  d.copy_async(m.host_nonfinite.get(), m.nonfinite.get(), sizeof(unsigned long long),
               CopyKind::DeviceToHost, m.cs());
  d.memset_async(m.nonfinite.get(), 0xff, sizeof(unsigned long long), m.cs());
  d.synchronize(m.cs());
  ++m.stats.syncs;
  const unsigned long long v = *as<unsigned long long>(m.host_nonfinite);
  NonFinite r;
  if (v != ~0ull) {
    r.tag = static_cast<int>(v >> kernels::kNonFiniteTagShift);
    r.offset = static_cast<long>(v & ((1ull << kernels::kNonFiniteTagShift) - 1));
  }
  return r;
}

}  // namespace copse::cuda
