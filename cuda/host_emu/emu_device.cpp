// EmuDevice (see emu_device.h): lazy per-stream queues over host memory,
// the emulator's kernels, a reference GEMM.
#include "cuda/host_emu/emu_device.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "cuda/fused_codegen.h"
#include "cuda/host_emu/host_kernels.h"

namespace copse::cuda::emu {

namespace hk = host_kernels;

struct EmuDevice::Queue {
  int id = 0;
  Stream stream;  // the emulator's stream: the launch options
  std::deque<std::pair<std::string, std::function<void()>>> ops;
  long queued = 0, done = 0;  // ops ever queued, ops run
  bool running = false;
};

struct EmuDevice::Mark {
  int id = 0;
  Queue* queue = nullptr;  // recorded on (nullptr: never recorded: complete)
  long ticket = 0;         // complete once queue->done reaches it
};

EmuDevice::EmuDevice(const EmuDeviceOptions& opts) : opts_(opts) {
  info_.name = "emulated sm_90";
  info_.arch = "sm_90";
  info_.max_smem = opts.max_smem;
}

EmuDevice::~EmuDevice() {
  if (opts_.on_destroy) opts_.on_destroy(*this);
  for (const auto& kv : live_)
    std::fprintf(stderr, "copse: [cuda emu] leaked at exit: %s\n", kv.second.c_str());
}

std::map<std::string, long> EmuDevice::live() const {
  std::map<std::string, long> m;
  for (const auto& kv : live_) ++m[kv.second];
  return m;
}
long EmuDevice::live_count() const { return static_cast<long>(live_.size()); }

void EmuDevice::note(const std::string& line) {
  if (opts_.trace) trace_.push_back(line);
}

// Counts the resource about to be made, and fails it if it is the chosen one.
void EmuDevice::made_one(const char* kind, const void* p) {
  if (!p) {
    ++made_;
    if (made_ == opts_.fail_at) fail("[cuda emu] injected failure: resource {} ({})", made_, kind);
    return;
  }
  live_[p] = kind;
}

void EmuDevice::gone(const void* p) noexcept { live_.erase(p); }

EmuDevice::Queue& EmuDevice::q(StreamObj* s) { return *queue_of(s); }

void EmuDevice::enqueue(StreamObj* s, const std::string& what, std::function<void()> op) {
  Queue& queue = q(s);
  note(fmt::format("{} s{}", what, queue.id));
  queue.ops.emplace_back(what, std::move(op));
  ++queue.queued;
}

void EmuDevice::drain(Queue& queue, long upto) {
  if (queue.done >= upto) return;
  if (queue.running)
    throw InternalError(fmt::format("[cuda emu] stream s{} waits for its own later work", queue.id));
  queue.running = true;
  try {
    while (queue.done < upto) {
      auto op = std::move(queue.ops.front());
      queue.ops.pop_front();
      try {
        op.second();
      } catch (...) {
        ++queue.done;  // it is off the queue: the tickets stay true
        throw;
      }
      ++queue.done;
    }
  } catch (...) {
    queue.running = false;
    throw;
  }
  queue.running = false;
}

// As cudaFree: the device is idle before memory goes.
void EmuDevice::drain_all() noexcept {
  for (const auto& kv : live_)
    if (kv.second == "stream") {
      Queue& queue = *static_cast<Queue*>(const_cast<void*>(kv.first));
      try {
        drain(queue, queue.queued);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "copse: [cuda emu] a queued operation failed: %s\n", e.what());
      }
    }
}

// ---- resources ----

void* EmuDevice::alloc(std::size_t bytes, const char* what) {
  made_one("device memory", nullptr);
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) fail("[cuda emu] out of memory: {} bytes ({})", bytes, what);
  std::memset(p, 0xff, rounded);  // NaN: read before written shows
  note(fmt::format("alloc {} {}", what, bytes));
  made_one("device memory", p);
  return p;
}

void EmuDevice::free(void* p) noexcept {
  if (!p) return;
  drain_all();
  note("free");
  gone(p);
  std::free(p);
}

void* EmuDevice::alloc_pinned(std::size_t bytes, const char* what) {
  made_one("pinned memory", nullptr);
  void* p = std::aligned_alloc(64, (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64);
  if (!p) fail("[cuda emu] out of memory: {} pinned bytes ({})", bytes, what);
  note(fmt::format("pinned {} {}", what, bytes));
  made_one("pinned memory", p);
  return p;
}

void EmuDevice::free_pinned(void* p) noexcept {
  if (!p) return;
  drain_all();
  note("free pinned");
  gone(p);
  std::free(p);
}

StreamObj* EmuDevice::create_stream() {
  made_one("stream", nullptr);
  auto* queue = new Queue;
  queue->id = streams_++;
  queue->stream.options = opts_.launch;
  made_one("stream", queue);
  return reinterpret_cast<StreamObj*>(queue);
}

void EmuDevice::destroy_stream(StreamObj* s) noexcept {
  Queue* queue = queue_of(s);
  try {
    drain(*queue, queue->queued);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "copse: [cuda emu] a queued operation failed: %s\n", e.what());
  }
  gone(queue);
  delete queue;
}

EventObj* EmuDevice::create_event() {
  made_one("event", nullptr);
  auto* mark = new Mark;
  mark->id = events_++;
  made_one("event", mark);
  return reinterpret_cast<EventObj*>(mark);
}

void EmuDevice::destroy_event(EventObj* e) noexcept {
  gone(e);
  delete reinterpret_cast<Mark*>(e);
}

FusedKernelObj* EmuDevice::load_fused(const ops::FusedProgram& prog, std::size_t smem,
                                      FusedLoadInfo* info) {
  made_one("generated kernel", nullptr);
  const std::string name = fused_kernel_name(prog);
  const HostKernel* k = opts_.library ? opts_.library->find(name) : nullptr;
  if (!k) {
    compiled_.push_back(std::make_unique<HostKernelLibrary>(
        std::vector<KernelSource>{{name, fused_kernel_source(prog)}}));
    info->compiled = compiled_.back()->compiled();
    k = &compiled_.back()->kernel(name);
  }
  if (smem > k->smem.capacity)
    fail("[cuda emu] kernel {} asks for {} bytes of shared memory; it has {}", name, smem,
         k->smem.capacity);
  note("load " + name);
  made_one("generated kernel", k);
  return reinterpret_cast<FusedKernelObj*>(const_cast<HostKernel*>(k));
}

void EmuDevice::unload_fused(FusedKernelObj* k) noexcept { gone(k); }

// ---- streams ----

void EmuDevice::copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                           StreamObj* s) {
  if (!bytes) return;
  enqueue(s, fmt::format("{} {}", kind == CopyKind::HostToDevice ? "h2d" : "d2h", bytes),
          [=] { std::memcpy(dst, src, bytes); });
}

void EmuDevice::memset_async(void* dst, int byte, std::size_t bytes, StreamObj* s) {
  enqueue(s, "memset", [=] { std::memset(dst, byte, bytes); });
}

void EmuDevice::record(EventObj* e, StreamObj* s) {
  Mark& m = *reinterpret_cast<Mark*>(e);
  m.queue = queue_of(s);
  m.ticket = m.queue->queued;
  note(fmt::format("record e{} s{}", m.id, m.queue->id));
}

// The waiting stream's later work runs after what `e` marks: a marker op
// that, when reached, runs the marked stream up to the mark.
void EmuDevice::wait(StreamObj* s, EventObj* e) {
  const Mark m = *reinterpret_cast<Mark*>(e);
  enqueue(s, fmt::format("wait e{}", m.id), [this, m] {
    if (m.queue) drain(*m.queue, m.ticket);
  });
}

void EmuDevice::synchronize(StreamObj* s) {
  note(fmt::format("sync s{}", q(s).id));
  drain(q(s), q(s).queued);
}

void EmuDevice::synchronize(EventObj* e) {
  const Mark& m = *reinterpret_cast<Mark*>(e);
  note(fmt::format("sync e{}", m.id));
  if (m.queue) drain(*m.queue, m.ticket);
}

// ---- BLAS: column-major references, accumulated in double ----

void EmuDevice::sgemm(StreamObj* s, bool ta, bool tb, int m, int n, int k, float alpha,
                      const float* a, int lda, const float* b, int ldb, float beta, float* c,
                      int ldc) {
  enqueue(s, fmt::format("sgemm {}{} {} {} {}", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k), [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l)
          acc += static_cast<double>(ta ? a[l + static_cast<long>(i) * lda]
                                        : a[i + static_cast<long>(l) * lda]) *
                 (tb ? b[j + static_cast<long>(l) * ldb] : b[l + static_cast<long>(j) * ldb]);
        float& out = c[i + static_cast<long>(j) * ldc];
        out = static_cast<float>(alpha * acc + (beta == 0.f ? 0.0 : double(beta) * out));
      }
  });
}

void EmuDevice::sgemv(StreamObj* s, int m, int n, float alpha, const float* a, int lda,
                      const float* x, float beta, float* y) {
  enqueue(s, fmt::format("sgemv {} {}", m, n), [=] {
    for (int i = 0; i < m; ++i) {
      double acc = 0;
      for (int j = 0; j < n; ++j) acc += double(a[i + static_cast<long>(j) * lda]) * x[j];
      y[i] = static_cast<float>(alpha * acc + (beta == 0.f ? 0.0 : double(beta) * y[i]));
    }
  });
}

// ---- kernels: queued, run by the emulator when the stream is drained ----

#define COPSE_EMU_KERNEL(name, ...)                                                    \
  do {                                                                                 \
    Queue* queue_ = &q(s);                                                             \
    enqueue(s, "launch " #name, [=] { hk::name(&queue_->stream, __VA_ARGS__); });      \
  } while (0)

void EmuDevice::launch_fused(FusedKernelObj* k, const FusedShape& shape, int rows,
                             const kernels::FusedArgs& args, StreamObj* s) {
  const HostKernel* kern = reinterpret_cast<const HostKernel*>(k);
  const Options launch_opts = q(s).stream.options;
  enqueue(s, "launch " + kern->name, [=] {
    note_kernel(kern->name);
    launch(launch_opts, Dim3(shape.blocks(rows)), Dim3(shape.threads()), shape.smem, kern->smem,
           [&] { kern->fn(args); });
  });
}
void EmuDevice::run_interpreter(StreamObj* s, const kernels::FusedArgs& args,
                                const kernels::DevReg* regs, int num_regs,
                                const kernels::DevInstr* code, int num_instr, int scratch_width,
                                int warps) {
  COPSE_EMU_KERNEL(run_interpreter, args, regs, num_regs, code, num_instr, scratch_width, warps);
}
void EmuDevice::gather_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                            const int* idx, float* dst, long ld_dst) {
  COPSE_EMU_KERNEL(gather_rows, n, width, src, ld_src, idx, dst, ld_dst);
}
void EmuDevice::scatter_add_rows(StreamObj* s, int n, int width, const float* src, long ld_src,
                                 const int* idx, float* dst, long ld_dst) {
  COPSE_EMU_KERNEL(scatter_add_rows, n, width, src, ld_src, idx, dst, ld_dst);
}
void EmuDevice::gather_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) {
  COPSE_EMU_KERNEL(gather_rows_batched, jobs);
}
void EmuDevice::scatter_add_rows_batched(StreamObj* s, const kernels::RowJobs& jobs) {
  COPSE_EMU_KERNEL(scatter_add_rows_batched, jobs);
}
void EmuDevice::segment_sum(StreamObj* s, int n, int width, const int* ptr, const float* src,
                            long ld_src, float* dst, long ld_dst, bool mean, bool accumulate) {
  COPSE_EMU_KERNEL(segment_sum, n, width, ptr, src, ld_src, dst, ld_dst, mean, accumulate);
}
void EmuDevice::copy_rows(StreamObj* s, int rows, int width, const float* src, long ld_src,
                          float* dst, long ld_dst, bool accumulate) {
  COPSE_EMU_KERNEL(copy_rows, rows, width, src, ld_src, dst, ld_dst, accumulate);
}
void EmuDevice::fill_rows(StreamObj* s, int rows, int width, float value, float* dst,
                          long ld_dst) {
  COPSE_EMU_KERNEL(fill_rows, rows, width, value, dst, ld_dst);
}
void EmuDevice::scale_rows(StreamObj* s, int rows, int width, const float* scale, float* x,
                           long ld) {
  COPSE_EMU_KERNEL(scale_rows, rows, width, scale, x, ld);
}
void EmuDevice::scale_matrix(StreamObj* s, int m, int n, float beta, float* c, long ldc) {
  COPSE_EMU_KERNEL(scale_matrix, m, n, beta, c, ldc);
}
void EmuDevice::scale(StreamObj* s, std::size_t n, float factor, float* x) {
  COPSE_EMU_KERNEL(scale, n, factor, x);
}
void EmuDevice::fill_listed_rows(StreamObj* s, int n_rows, const int* rows, int width,
                                 float value, float* base) {
  COPSE_EMU_KERNEL(fill_listed_rows, n_rows, rows, width, value, base);
}
void EmuDevice::scale_listed_rows(StreamObj* s, int n_rows, const int* rows, int width, float f,
                                  float* base) {
  COPSE_EMU_KERNEL(scale_listed_rows, n_rows, rows, width, f, base);
}
void EmuDevice::sum_squares(StreamObj* s, std::size_t n, const float* x, double* partial,
                            double* out) {
  COPSE_EMU_KERNEL(sum_squares, n, x, partial, out);
}
void EmuDevice::sum_squares_listed_rows(StreamObj* s, int n_rows, const int* rows, int width,
                                        const float* base, double* partial, double* out) {
  COPSE_EMU_KERNEL(sum_squares_listed_rows, n_rows, rows, width, base, partial, out);
}
void EmuDevice::softmax_xent(StreamObj* s, int rows, int classes, const float* logits, long ld,
                             const int* labels, float scale, float* dlogits, long ld_d, int* pred,
                             double* row_loss, int* row_hit, double* out, int* bad_label) {
  COPSE_EMU_KERNEL(softmax_xent, rows, classes, logits, ld, labels, scale, dlogits, ld_d, pred,
                   row_loss, row_hit, out, bad_label);
}
void EmuDevice::optimizer_update(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                                 float* w, const float* g, float* s0, float* s1) {
  COPSE_EMU_KERNEL(optimizer_update, p, n, w, g, s0, s1);
}
void EmuDevice::optimizer_update_rows(StreamObj* s, const kernels::OptimizerParams& p,
                                      int n_rows, const int* rows, int width, float* w,
                                      const float* g, float* s0, float* s1) {
  COPSE_EMU_KERNEL(optimizer_update_rows, p, n_rows, rows, width, w, g, s0, s1);
}
void EmuDevice::optimizer_check(StreamObj* s, const kernels::OptimizerParams& p, std::size_t n,
                                const float* w, const float* g, const float* s0, const float* s1,
                                int tag, unsigned long long* first) {
  COPSE_EMU_KERNEL(optimizer_check, p, n, w, g, s0, s1, tag, first);
}
void EmuDevice::optimizer_check_rows(StreamObj* s, const kernels::OptimizerParams& p, int n_rows,
                                     const int* rows, int width, const float* w, const float* g,
                                     const float* s0, const float* s1, int tag,
                                     unsigned long long* first) {
  COPSE_EMU_KERNEL(optimizer_check_rows, p, n_rows, rows, width, w, g, s0, s1, tag, first);
}

#undef COPSE_EMU_KERNEL

std::unique_ptr<CudaBackend> emulated_backend(const EmuDeviceOptions& dev,
                                              const CudaOptions& opts) {
  return std::make_unique<CudaBackend>(std::make_unique<EmuDevice>(dev), opts);
}

}  // namespace copse::cuda::emu
