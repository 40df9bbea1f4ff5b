// NcclGradSync: dense gradients summed with ncclAllReduce (see nccl_sync.h).
// Host code only: CUDA runtime and NCCL calls, no kernels.
#include "cuda/nccl_sync.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <cuda_runtime.h>
#include <nccl.h>

#include "common/error.h"

namespace copse::cuda {

namespace {

void cuda_check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail("[nccl transport] {}: {}", call, cudaGetErrorString(e));
}

void nccl_check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess && r != ncclInProgress)
    fail("[nccl transport] {}: {}", call, ncclGetErrorString(r));
}

// Device memory with one owner.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (p_ && cudaFree(p_) != cudaSuccess)
      std::fprintf(stderr, "copse: [nccl transport] cudaFree failed\n");
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* reserve(std::size_t n) {  // [n] floats; contents not kept
    if (n > n_) {
      if (p_) cuda_check(cudaFree(p_), "cudaFree");
      p_ = nullptr;
      n_ = 0;
      cuda_check(cudaMalloc(&p_, n * sizeof(float)), "cudaMalloc");
      n_ = n;
    }
    return static_cast<float*>(p_);
  }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
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

std::uint64_t host_hash() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char* c = host; *c; ++c) h = (h ^ static_cast<unsigned char>(*c)) * 0x100000001b3ULL;
  return h;
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
    // One GPU per rank on a node: this rank's index among its node's ranks.
    const std::uint64_t me = host_hash();
    const auto hosts = mpi.allgather(me, "NCCL start-up");
    int local = 0;
    for (int r = 0; r < mpi.rank(); ++r) local += hosts[r] == me;
    device_ = local % devices;
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
    wait_comm("NCCL start-up");
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
      float* d = buffer_.reserve(n);  // [n]
      float* g = store.grads_flat();
      // Host parameters (CPU backend): through the device buffer. With the
      // parameters on the device this becomes one in-place all-reduce on g.
      cuda_check(cudaMemcpyAsync(d, g, n * sizeof(float), cudaMemcpyHostToDevice, stream_->get()),
                 "cudaMemcpyAsync (gradients to the GPU)");
      nccl_check(ncclAllReduce(d, d, n, ncclFloat, ncclSum, comm_, stream_->get()),
                 "ncclAllReduce");
      wait_comm("gradient sync (NCCL)");
      cuda_check(cudaMemcpyAsync(g, d, n * sizeof(float), cudaMemcpyDeviceToHost, stream_->get()),
                 "cudaMemcpyAsync (gradients from the GPU)");
      wait_stream("gradient sync (NCCL)");
      // A ring all-reduce sends 2 (W-1)/W of the buffer from every rank.
      sent = static_cast<long>(2.0 * (w - 1) / w * static_cast<double>(n * sizeof(float)));
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

  // Until the communicator has no operation in progress (or fails / times out).
  void wait_comm(const std::string& what) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(mpi_.timeout_s());
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
  void wait_stream(const std::string& what) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(mpi_.timeout_s());
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
  DeviceBuffer buffer_;
};

}  // namespace

std::unique_ptr<memory::GradSync<float>> make_nccl_grad_sync(memory::MpiGradSync<float>& mpi) {
  return std::make_unique<NcclGradSync>(mpi);
}

}  // namespace copse::cuda
