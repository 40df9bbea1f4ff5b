// The host CUDA emulator: runs a kernel's grid on the CPU, one host thread
// (or fiber) per GPU thread, so that kernels written for the GPU execute and
// are checked without one. Blocks run one after another; the threads of a
// block run together, with a barrier at every __syncwarp (per warp) and
// __syncthreads (per block), warp shuffles through the warp, and atomics
// as std::atomic_ref. Two schedules:
//   Threads: one OS thread per lane (a reused pool), free to interleave
//     anywhere; ThreadSanitizer sees every access (the TSan build).
//   Fibers: one fiber per lane on the calling thread; at every barrier,
//     shuffle and atomic the next lane to run is drawn at random from those
//     that can (seeded: the same seed gives the same interleaving). Fast and
//     reproducible; a missing barrier shows up as a wrong value.
// Before each block, its dynamic shared memory is filled with NaN (0xff
// bytes): a kernel that reads scratch it did not write gives NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace copse::cuda::emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
  Dim3() = default;
  Dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}  // NOLINT
};

enum class Schedule { Threads, Fibers };

struct Options {
  Schedule schedule = Schedule::Fibers;
  std::uint64_t seed = 1;  // Fibers: which interleaving
};

// The emulator's stand-in for a cudaStream_t: launches on it use its options.
struct Stream {
  Options options;
};

// A block's dynamic shared memory: where the kernel's `extern __shared__`
// array lives in this process, and its size.
struct SharedMemory {
  void* base = nullptr;
  std::size_t capacity = 0;
};

// Limits of the emulated launch (those of sm_90).
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kMaxDynamicSmem = 232448;  // 227 KiB, the opt-in maximum

// Runs body(ctx) as every thread of every block of `grid`, `block`, with
// `smem_bytes` of dynamic shared memory (at most smem.capacity). Throws
// std::runtime_error for a launch a GPU would refuse (an empty grid, too many
// threads, too much shared memory), for a barrier that can never complete
// (a __syncthreads some threads skip) and for an exception from a lane.
void launch(const Options& opts, Dim3 grid, Dim3 block, std::size_t smem_bytes, SharedMemory smem,
            void (*body)(void*), void* ctx);

// The same with a callable run by every thread.
template <typename F>
void launch(const Options& opts, Dim3 grid, Dim3 block, std::size_t smem_bytes, SharedMemory smem,
            F&& f) {
  launch(
      opts, grid, block, smem_bytes, smem,
      [](void* c) { (*static_cast<std::remove_reference_t<F>*>(c))(); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Launches so far in this process, and the names of the kernels launched
// (launchers name theirs with note_kernel before the launch).
long launches();
void note_kernel(const std::string& name);
std::vector<std::string> kernels_launched();

}  // namespace copse::cuda::emu
