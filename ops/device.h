// Choosing a backend by name: "cpu", "cuda" or "auto" (the GPU when one is
// usable, else the CPU), for the command line and the benchmarks.
#pragma once

#include <memory>
#include <string>

#include "ops/backend.h"

namespace copse::ops {

struct DeviceOptions {
  std::string device = "cpu";    // cpu | cuda | auto
  int threads = 1;               // CPU math threads
  int gpu = 0;                   // which GPU for cuda
  bool tf32 = false;             // cuda: allow TF32 GEMMs
  bool generated_kernels = true; // cuda: NVRTC kernels for fused programs (false: interpreter)
};

// Whether this build has the CUDA backend.
bool cuda_built();
// Usable GPUs (0 without the CUDA backend, or when the driver is missing or
// too old).
int gpu_count();
// One line about the GPU, or why there is none.
std::string gpu_description(int gpu = 0);

// "cpu" or "cuda" for a --device value; throws copse::Error for an unknown
// name, for "cuda" without the CUDA backend or without a usable GPU.
std::string resolve_device(const std::string& device);

std::unique_ptr<Backend<float>> make_backend(const DeviceOptions& opts);

}  // namespace copse::ops
