// Choosing a backend by name: "cpu", "cuda" or "auto" (the GPU when one is
// usable, else the CPU), for the command line and the benchmarks. Backends
// other than the CPU's live outside ops/ and register themselves here
// (cuda/register.cpp), so that ops/ never names them.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ops/backend.h"

namespace copse::ops {

// Which backend make_backend() builds, and its settings.
struct DeviceOptions {
  std::string device = "cpu";    // cpu | cuda | auto
  int threads = 1;               // CPU math threads
  int gpu = 0;                   // which GPU for cuda
  bool tf32 = false;             // cuda: allow TF32 GEMMs
  bool generated_kernels = true; // cuda: NVRTC kernels for fused programs (false: interpreter)
};

// A backend of devices: how many are usable, one line about device i (or
// why there is none), and a backend on one.
struct BackendProvider {
  std::function<int()> device_count;         // usable devices (0 on any error)
  std::function<std::string(int)> describe;  // one line about device i, or why there is none
  std::function<std::unique_ptr<Backend<float>>(const DeviceOptions&)> make;  // a backend on one
};
// Registers `provider` under `name` (before main, from a static object);
// throws InternalError for a name registered twice.
void register_backend(const std::string& name, BackendProvider provider);
// nullptr when no backend of that name is in this program.
const BackendProvider* find_backend(const std::string& name);

// Whether this build has the CUDA backend (registered as "cuda").
bool cuda_built();
// Usable GPUs (0 without the CUDA backend, or when the driver is missing or
// too old).
int gpu_count();
// One line about the GPU, or why there is none.
std::string gpu_description(int gpu = 0);

// "cpu" or "cuda" for a --device value; throws copse::Error for an unknown
// name, for "cuda" without the CUDA backend or without a usable GPU.
std::string resolve_device(const std::string& device);

// The backend opts.device names (resolved as resolve_device does).
std::unique_ptr<Backend<float>> make_backend(const DeviceOptions& opts);

}  // namespace copse::ops
