// CUDA source for a FusedProgram (compiled by cuda/nvrtc_compile.h).
//
// The generated kernel has the interpreter's layout (cuda/kernels.h): one
// warp per row, lanes over columns, Temp registers in the warp's slice of
// dynamic shared memory, views passed as kernels::FusedArgs (inputs first,
// then outputs). Every instruction becomes one loop with its widths and
// column offsets as constants, so the compiler sees straight-line code; a
// __syncwarp() goes in only where an instruction reads or overwrites columns
// that an earlier one wrote (or read) at a different column offset, i.e.
// where a lane could touch another lane's element.
#pragma once

#include <string>

#include "ops/fused_program.h"

namespace copse::cuda {

// The name of the generated kernel for a program (from its fingerprint).
std::string fused_kernel_name(const ops::FusedProgram& prog);

// CUDA C++ source with one extern "C" __global__ kernel named
// fused_kernel_name(prog). Needs no headers (NVRTC compiles it alone).
std::string fused_kernel_source(const ops::FusedProgram& prog);

// How many __syncwarp() the generated kernel has (for tests of the hazard
// analysis).
int fused_kernel_syncs(const ops::FusedProgram& prog);

}  // namespace copse::cuda
