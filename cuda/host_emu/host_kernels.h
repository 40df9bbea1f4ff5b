// The CUDA backend's hand-written kernels (cuda/kernels_body.cuh) built for
// the host emulator: the same launchers as cuda/kernels.h, with the same
// grids and blocks, in namespace host_kernels. A "stream" is an emu::Stream
// (its options pick the schedule); pointers are host memory.
#pragma once

#include <cstddef>

#include "cuda/host_emu/emulator.h"
#include "cuda/kernel_args.h"

namespace copse::cuda::host_kernels {

using namespace ::copse::cuda::kernels;  // the argument structs
using cudaStream_t = emu::Stream*;
enum cudaError_t { cudaSuccess = 0 };

#include "cuda/kernel_launchers.inc"

}  // namespace copse::cuda::host_kernels
