// The CUDA backend's hand-written kernels for the GPU: the kernels and their
// launchers are in cuda/kernels_body.cuh (shared with the host emulator).
#include "cuda/kernels.h"

#include <climits>

#include "ops/fused_program.h"

#define COPSE_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>

namespace copse::cuda::kernels {

#include "cuda/kernels_body.cuh"

cudaError_t interpreter_allow_shared(int bytes) {
  return cudaFuncSetAttribute(interpreter_k, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

}  // namespace copse::cuda::kernels
