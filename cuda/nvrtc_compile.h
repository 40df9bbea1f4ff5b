// Compilation of CUDA source with NVRTC (the generated fused kernels).
#pragma once

#include <string>
#include <vector>

namespace copse::cuda {

struct NvrtcResult {
  bool ok = false;
  std::string log;           // NVRTC's log (errors, warnings)
  std::vector<char> binary;  // cubin for "sm_XX", PTX for "compute_XX"
  double seconds = 0;
};

// Compiles `source` with NVRTC for `arch` ("sm_90" gives a cubin,
// "compute_90" PTX). Works without a GPU.
NvrtcResult nvrtc_compile(const std::string& source, const std::string& name,
                          const std::string& arch);

// NVRTC's version as "major.minor".
std::string nvrtc_version();

}  // namespace copse::cuda
