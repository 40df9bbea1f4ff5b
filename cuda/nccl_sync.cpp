// NcclGradSync: dense gradients summed with ncclAllReduce (see nccl_sync.h).
// Host code only: CUDA runtime and NCCL calls, no kernels.
#include "cuda/nccl_sync.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include <cuda_runtime.h>
#include <nccl.h>

#include "common/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/nccl_plan.h"

namespace copse::cuda {

namespace {

void cuda_check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail("[nccl transport] {}: {}", call, cudaGetErrorString(e));
}

void nccl_check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess && r != ncclInProgress)
    fail("[nccl transport] {}: {}", call, ncclGetErrorString(r));
}

// [n] floats of device memory (cudaMalloc) or pinned host memory
// (cudaMallocHost), with one owner.
class Buffer {
 public:
  explicit Buffer(bool pinned) : pinned_(pinned) {}
  ~Buffer() {
    if (p_ && (pinned_ ? cudaFreeHost(p_) : cudaFree(p_)) != cudaSuccess)
      std::fprintf(stderr, "copse: [nccl transport] %s failed\n",
                   pinned_ ? "cudaFreeHost" : "cudaFree");
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* reserve(std::size_t n) {  // contents not kept
    if (n > n_) {
      if (p_)
        cuda_check(pinned_ ? cudaFreeHost(p_) : cudaFree(p_),
                   pinned_ ? "cudaFreeHost" : "cudaFree");
      p_ = nullptr;
      n_ = 0;
      if (pinned_)
        cuda_check(cudaMallocHost(&p_, n * sizeof(float)), "cudaMallocHost (bounce buffer)");
      else
        cuda_check(cudaMalloc(&p_, n * sizeof(float)), "cudaMalloc");
      n_ = n;
    }
    return static_cast<float*>(p_);
  }

 private:
  bool pinned_;
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

class Event {
 public:
  Event() { cuda_check(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() {
    if (cudaEventDestroy(e_) != cudaSuccess)
      std::fprintf(stderr, "copse: [nccl transport] cudaEventDestroy failed\n");
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class Stream {
 public:
  Stream() {
    cuda_check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~Stream() {
    if (cudaStreamDestroy(s_) != cudaSuccess)
      std::fprintf(stderr, "copse: [nccl transport] cudaStreamDestroy failed\n");
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

std::uint64_t hash(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

MemoryKind memory_kind(const void* p, int* device) {
  cudaPointerAttributes a{};
  cuda_check(cudaPointerGetAttributes(&a, p), "cudaPointerGetAttributes");
  *device = a.device;
  switch (a.type) {
    case cudaMemoryTypeDevice:
      return MemoryKind::Device;
    case cudaMemoryTypeManaged:
      return MemoryKind::Managed;
    case cudaMemoryTypeHost:
      return MemoryKind::Pinned;
    case cudaMemoryTypeUnregistered:
      break;
  }
  return MemoryKind::Pageable;
}

class NcclGradSync : public memory::GradSync<float> {
 public:
  explicit NcclGradSync(memory::MpiGradSync<float>& mpi) : mpi_(mpi) {
    // No GPU is an error on this rank; the others then fail at the broadcast
    // below within the deadline, or the CLI ends the job first.
    int devices = 0;
    cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
      cudaGetLastError();
      fail("--transport nccl needs a GPU, and rank {} has none ({})", mpi.rank(),
           e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
    }
    // One GPU per rank on a machine: this rank's index among its machine's
    // ranks (two ranks on one GPU: NCCL would refuse the communicator).
    const std::string host = host_name();
    const LocalRanks local = local_ranks(mpi.allgather(hash(host), "NCCL start-up"), mpi.rank());
    const NcclDevice d = nccl_device_for(local.index, local.count, devices, host);
    if (!d.error.empty()) fail("{}", d.error);
    device_ = d.device;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id{};
    if (mpi.rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi.broadcast(&id, sizeof(id), 0, "NCCL start-up");
    stream_ = std::make_unique<Stream>();
    // Non-blocking communicator: every wait below can give up on time.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    nccl_check(ncclCommInitRankConfig(&comm_, mpi.size(), id, mpi.rank(), &config),
               "ncclCommInitRankConfig");
    wait_comm("NCCL start-up", deadline());
  }

  ~NcclGradSync() override {
    if (!comm_) return;
    if (aborted_) return;  // ncclCommAbort already freed it
    if (ncclCommDestroy(comm_) != ncclSuccess)
      std::fprintf(stderr, "copse: [nccl transport] ncclCommDestroy failed\n");
  }

  // g = sum over ranks of g on [0, dense); embedding rows through MPI.
  void sync(memory::ParamStore<float>& store) override {
    if (aborted_) fail("[nccl transport] an earlier exchange failed; the job must end");
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t n = store.dense_elements();
    const int w = mpi_.size();
    long sent = 0;
    if (n > 0) {  // one rank too: the same path, a GPU session can test it
      cuda_check(cudaSetDevice(device_), "cudaSetDevice");
      const auto until = deadline();
      float* g = store.grads_flat();  // [n]
      int g_device = -1;
      const GradPlan plan = nccl_grad_plan(memory_kind(g, &g_device), g_device, device_);
      const cudaStream_t s = stream_->get();
      const std::size_t bytes = n * sizeof(float);
      // d: what the all-reduce sums; h: the host side of the copies; [n] each.
      float* d = g;
      float* h = plan.bounce ? bounce_.reserve(n) : g;
      if (plan.in_place) {
        after_compute_stream(store.backend());
      } else {
        d = buffer_.reserve(n);
        if (plan.bounce) std::memcpy(h, g, bytes);
        cuda_check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, s),
                   "cudaMemcpyAsync (gradients to the GPU)");
      }
      nccl_check(ncclAllReduce(d, d, n, ncclFloat, ncclSum, comm_, s), "ncclAllReduce");
      wait_comm("gradient sync (NCCL)", until);  // queued
      // Into pinned memory: the call returns at once.
      if (!plan.in_place)
        cuda_check(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, s),
                   "cudaMemcpyAsync (gradients from the GPU)");
      wait_stream("gradient sync (NCCL)", until);  // summed (and copied back)
      if (plan.bounce) std::memcpy(g, h, bytes);
      // A ring all-reduce sends 2 (W-1)/W of the buffer from every rank.
      sent = static_cast<long>(2.0 * (w - 1) / w * static_cast<double>(bytes));
    }
    const double dense_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    mpi_.sync_sparse(store);
    const double all_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    mpi_.count(all_s, dense_s, static_cast<long>(n * sizeof(float)), sent);
  }

 private:
  [[noreturn]] void give_up(const std::string& what) {
    ncclCommAbort(comm_);
    aborted_ = true;
    fail("rank {}: no reply from the other ranks within {:g} s during {}", mpi_.rank(),
         mpi_.timeout_s(), what);
  }

  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline() const {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(mpi_.timeout_s()));
  }

  // The CUDA backend's kernels wrote the gradients on its compute stream: the
  // transport's stream waits for them (an event, no host wait).
  void after_compute_stream(ops::Backend<float>& backend) {
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    if (!cuda)
      fail("[nccl transport] the gradients are in device memory, but backend {} has no CUDA stream",
           backend.name());
    if (!computed_) computed_ = std::make_unique<Event>();
    cuda_check(cudaEventRecord(computed_->get(), cuda->stream()), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_->get(), computed_->get(), 0), "cudaStreamWaitEvent");
  }

  // Until the communicator has no operation in progress (or fails / times out).
  void wait_comm(const std::string& what, Clock::time_point deadline) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      nccl_check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        ncclCommAbort(comm_);
        aborted_ = true;
        fail("[nccl transport] rank {}: {} failed: {}", mpi_.rank(), what,
             ncclGetErrorString(state));
      }
      if (std::chrono::steady_clock::now() >= deadline) give_up(what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // Until the stream's work is done, watching for NCCL errors and the deadline.
  void wait_stream(const std::string& what, Clock::time_point deadline) {
    for (;;) {
      cudaError_t e = cudaStreamQuery(stream_->get());
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) cuda_check(e, "cudaStreamQuery");
      ncclResult_t state = ncclSuccess;
      nccl_check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
      if (state != ncclSuccess && state != ncclInProgress) {
        ncclCommAbort(comm_);
        aborted_ = true;
        fail("[nccl transport] rank {}: {} failed: {}", mpi_.rank(), what,
             ncclGetErrorString(state));
      }
      if (std::chrono::steady_clock::now() >= deadline) give_up(what);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  memory::MpiGradSync<float>& mpi_;
  int device_ = 0;
  std::unique_ptr<Stream> stream_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  Buffer buffer_{false};             // [n] on the GPU (host gradients)
  Buffer bounce_{true};              // [n] pinned (pageable host gradients)
  std::unique_ptr<Event> computed_;  // on the backend's compute stream (device gradients)
};

}  // namespace

std::unique_ptr<memory::GradSync<float>> make_nccl_grad_sync(memory::MpiGradSync<float>& mpi) {
  return std::make_unique<NcclGradSync>(mpi);
}

}  // namespace copse::cuda
