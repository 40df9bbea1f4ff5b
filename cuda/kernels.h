// The CUDA backend's hand-written kernels (cuda/kernels_body.cuh, built by
// cuda/kernels.cu), behind plain launch functions so that the backend itself
// (cuda/cuda_backend.cpp) is ordinary C++. The caller checks the
// cudaError_t each launcher returns.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/kernel_args.h"

namespace copse::cuda::kernels {

#include "cuda/kernel_launchers.inc"

// Lets the interpreter use up to `bytes` of dynamic shared memory per block.
cudaError_t interpreter_allow_shared(int bytes);

}  // namespace copse::cuda::kernels
