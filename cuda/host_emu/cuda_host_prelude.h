// What CUDA device code needs to compile with the host compiler and run under
// the host emulator (cuda/host_emu/emulator.h): the built-in variables, the
// qualifiers, barriers, warp shuffles, atomics and the math functions the
// kernels use. Included before a kernel's source: the generated fused
// kernels' text (cuda/host_emu/host_compiler.cpp) and cuda/kernels_body.cuh
// (cuda/host_emu/host_kernels.cpp). Device code only; a `.cu`-style header.
#pragma once

#include <math.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cuda/host_emu/emulator.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Dynamic shared memory only (`extern __shared__ T name[];`): the includer
// defines the array, which the emulator fills with NaN before each block.
#define __shared__

namespace copse::cuda::emu {

// The running lane's built-in variables.
struct LaneInfo {
  Dim3 thread_idx, block_idx, block_dim, grid_dim;
};
const LaneInfo& lane_info();

void syncwarp(unsigned mask);
void syncthreads();
enum class ShuffleMode { Xor, Down, Up, Index };
// Every lane of the warp passes 8 bytes; returns those of the lane `arg`
// names (lane ^ arg, lane + arg, lane - arg or arg).
std::uint64_t shuffle(unsigned mask, std::uint64_t bits, int arg, ShuffleMode mode, int width);

float atomic_add(float* p, float v);
double atomic_add(double* p, double v);
int atomic_add(int* p, int v);
int atomic_cas(int* p, int compare, int v);
int atomic_min(int* p, int v);
unsigned long long atomic_min(unsigned long long* p, unsigned long long v);
int atomic_max(int* p, int v);

template <typename T>
T shuffle_value(unsigned mask, T v, int arg, ShuffleMode mode, int width) {
  static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle(mask, bits, arg, mode, width);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace copse::cuda::emu

using dim3 = ::copse::cuda::emu::Dim3;

#define threadIdx (::copse::cuda::emu::lane_info().thread_idx)
#define blockIdx (::copse::cuda::emu::lane_info().block_idx)
#define blockDim (::copse::cuda::emu::lane_info().block_dim)
#define gridDim (::copse::cuda::emu::lane_info().grid_dim)

inline void __syncwarp(unsigned mask = 0xffffffffu) { ::copse::cuda::emu::syncwarp(mask); }
inline void __syncthreads() { ::copse::cuda::emu::syncthreads(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::copse::cuda::emu::shuffle_value(mask, v, lane_mask, ::copse::cuda::emu::ShuffleMode::Xor,
                                           width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::copse::cuda::emu::shuffle_value(mask, v, static_cast<int>(delta),
                                           ::copse::cuda::emu::ShuffleMode::Down, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::copse::cuda::emu::shuffle_value(mask, v, static_cast<int>(delta),
                                           ::copse::cuda::emu::ShuffleMode::Up, width);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::copse::cuda::emu::shuffle_value(mask, v, src_lane,
                                           ::copse::cuda::emu::ShuffleMode::Index, width);
}

inline float atomicAdd(float* p, float v) { return ::copse::cuda::emu::atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return ::copse::cuda::emu::atomic_add(p, v); }
inline int atomicAdd(int* p, int v) { return ::copse::cuda::emu::atomic_add(p, v); }
inline int atomicCAS(int* p, int compare, int v) {
  return ::copse::cuda::emu::atomic_cas(p, compare, v);
}
inline int atomicMin(int* p, int v) { return ::copse::cuda::emu::atomic_min(p, v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  return ::copse::cuda::emu::atomic_min(p, v);
}
inline int atomicMax(int* p, int v) { return ::copse::cuda::emu::atomic_max(p, v); }
