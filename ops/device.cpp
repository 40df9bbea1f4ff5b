// Backend selection (see device.h).
#include "ops/device.h"

#include "common/error.h"
#include "ops/cpu_backend.h"

#ifdef COPSE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace copse::ops {

bool cuda_built() {
#ifdef COPSE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int gpu_count() {
#ifdef COPSE_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::string gpu_description(int gpu) {
#ifdef COPSE_WITH_CUDA
  return cuda::device_description(gpu);
#else
  (void)gpu;
  return "no GPU support in this build (configure with -DCOPSE_WITH_CUDA=ON)";
#endif
}

std::string resolve_device(const std::string& device) {
  if (device == "cpu") return "cpu";
  if (device == "auto") return gpu_count() > 0 ? "cuda" : "cpu";
  if (device == "cuda" || device == "gpu") {
    if (!cuda_built())
      fail("--device cuda: this copse was built without the CUDA backend (configure with "
           "-DCOPSE_WITH_CUDA=ON and a CUDA toolkit)");
    if (gpu_count() == 0) fail("--device cuda: {}", gpu_description(0));
    return "cuda";
  }
  fail("--device '{}': expected cpu, cuda or auto", device);
}

std::unique_ptr<Backend<float>> make_backend(const DeviceOptions& opts) {
  const std::string d = resolve_device(opts.device);
#ifdef COPSE_WITH_CUDA
  if (d == "cuda") {
    cuda::CudaOptions co;
    co.device = opts.gpu;
    co.tf32 = opts.tf32;
    co.generated_kernels = opts.generated_kernels;
    return std::make_unique<cuda::CudaBackend>(co);
  }
#endif
  return std::make_unique<CpuBackend<float>>(opts.threads);
}

}  // namespace copse::ops
