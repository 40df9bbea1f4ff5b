// cuda/kernels_body.cuh compiled by the host compiler under the emulator's
// prelude: every kernel and launcher of the GPU build, run on the CPU.
#include "cuda/host_emu/host_kernels.h"

#include "cuda/host_emu/cuda_host_prelude.h"
#include "ops/fused_program.h"

namespace copse::cuda::host_kernels {

inline cudaError_t cudaGetLastError() { return cudaSuccess; }

namespace {
// The kernels' dynamic shared memory (`extern __shared__ float smem[]`).
alignas(64) float smem[emu::kMaxDynamicSmem / sizeof(float)];

// COPSE_LAUNCH(kernel, grid, block, smem bytes, stream)(args...): a launch
// on the emulator with the stream's options; the arguments are copied, as
// into a kernel's parameter space.
template <typename Kernel>
auto launcher(Kernel* kernel, const char* name, emu::Dim3 grid, emu::Dim3 block, std::size_t bytes,
              emu::Stream* stream) {
  return [=](auto... args) {
    emu::note_kernel(name);
    emu::launch(stream->options, grid, block, bytes, emu::SharedMemory{smem, sizeof(smem)},
                [&] { kernel(args...); });
  };
}
}  // namespace

#define COPSE_LAUNCH(kernel, grid, block, bytes, stream) \
  launcher(&kernel, #kernel, emu::Dim3(grid), emu::Dim3(block), bytes, stream)

#include "cuda/kernels_body.cuh"

}  // namespace copse::cuda::host_kernels
