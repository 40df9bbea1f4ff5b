// How the CUDA backend launches a fused program (generated kernel or
// interpreter): the block shape for its scratch and the kernel's argument.
// Plain C++, shared by cuda/cuda_backend.cpp and the host emulator's tests,
// so that both launch with the same geometry.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "common/error.h"
#include "cuda/kernel_args.h"
#include "ops/fused_program.h"

namespace copse::cuda {

struct FusedShape {
  int warps = 8;         // rows per block (one warp each)
  std::size_t smem = 0;  // dynamic shared memory per block: the warps' scratch rows
  int blocks(int rows) const { return (rows + warps - 1) / warps; }
  int threads() const { return 32 * warps; }
};

// Up to 8 warps per block, fewer when their scratch rows would not fit in
// `max_smem` bytes (the device's opt-in limit per block).
inline FusedShape fused_shape(const ops::FusedProgram& prog, int max_smem,
                              const std::string& device) {
  const std::size_t per_warp = sizeof(float) * static_cast<std::size_t>(prog.scratch_width);
  if (per_warp > static_cast<std::size_t>(max_smem))
    fail(
        "[cuda] fused program '{}' needs {} bytes of scratch per row; {} allows at most {} "
        "bytes of shared memory per block",
        prog.name, per_warp, device, max_smem);
  FusedShape s;
  s.warps = per_warp == 0 ? 8 : static_cast<int>(std::min<std::size_t>(8, max_smem / per_warp));
  s.smem = per_warp * s.warps;
  return s;
}

// The kernel's argument: the views, inputs first, then outputs.
inline kernels::FusedArgs fused_args(const ops::FusedProgram& prog, int rows,
                                     const ops::RowView<const float>* inputs,
                                     const ops::RowView<float>* outputs) {
  kernels::FusedArgs args{};
  args.rows = rows;
  for (int i = 0; i < prog.num_inputs; ++i)
    args.v[i] = {const_cast<float*>(inputs[i].ptr), inputs[i].ld};
  for (int o = 0; o < prog.num_outputs; ++o)
    args.v[prog.num_inputs + o] = {outputs[o].ptr, outputs[o].ld};
  return args;
}

}  // namespace copse::cuda
