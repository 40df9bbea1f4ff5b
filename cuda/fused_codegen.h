// CUDA source for a FusedProgram, and its compilation with NVRTC.
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
#include <vector>

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

struct NvrtcResult {
  bool ok = false;
  std::string log;            // NVRTC's log (errors, warnings)
  std::vector<char> binary;   // cubin for "sm_XX", PTX for "compute_XX"
  double seconds = 0;
};

// Compiles `source` with NVRTC for `arch` ("sm_90" gives a cubin,
// "compute_90" PTX). Works without a GPU.
NvrtcResult nvrtc_compile(const std::string& source, const std::string& name,
                          const std::string& arch);

// NVRTC's version as "major.minor".
std::string nvrtc_version();

}  // namespace copse::cuda
