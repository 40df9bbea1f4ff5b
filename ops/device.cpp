// Backend selection and the registry of backends (see device.h).
#include "ops/device.h"

#include <map>

#include "common/error.h"
#include "ops/cpu_backend.h"

namespace copse::ops {

namespace {

// A function's static: filled by static registrars in other translation
// units, whatever their order of initialisation.
std::map<std::string, BackendProvider>& registry() {
  static std::map<std::string, BackendProvider> r;
  return r;
}

}  // namespace

void register_backend(const std::string& name, BackendProvider provider) {
  COPSE_ASSERT(provider.device_count && provider.describe && provider.make);
  const bool added = registry().emplace(name, std::move(provider)).second;
  COPSE_ASSERT(added);
}

const BackendProvider* find_backend(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

bool cuda_built() { return find_backend("cuda") != nullptr; }

int gpu_count() {
  const BackendProvider* p = find_backend("cuda");
  return p ? p->device_count() : 0;
}

std::string gpu_description(int gpu) {
  const BackendProvider* p = find_backend("cuda");
  if (!p) return "no GPU support in this build (configure with -DCOPSE_WITH_CUDA=ON)";
  return p->describe(gpu);
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
  if (d == "cuda") return find_backend("cuda")->make(opts);
  return std::make_unique<CpuBackend<float>>(opts.threads);
}

}  // namespace copse::ops
