// Registers what cuda/ provides with the generic layers, which never name
// it: the "cuda" backend (ops/device.h) and, with NCCL, the "nccl" gradient
// exchange (memory/grad_sync_registry.h). CMake links this object file into
// every program that links copse_cuda (not through the static library, whose
// unreferenced members the linker would drop with the registrar).
#include <memory>

#include "cuda/cuda_backend.h"
#include "memory/grad_sync_registry.h"
#include "ops/device.h"
#ifdef COPSE_HAVE_NCCL
#include "cuda/nccl_sync.h"
#endif

namespace copse::cuda {
namespace {

[[maybe_unused]] const bool registered = [] {
  ops::register_backend(
      "cuda", {device_count, device_description, [](const ops::DeviceOptions& o) {
                 CudaOptions co;
                 co.device = o.gpu;
                 co.tf32 = o.tf32;
                 co.generated_kernels = o.generated_kernels;
                 return std::unique_ptr<ops::Backend<float>>(std::make_unique<CudaBackend>(co));
               }});
#ifdef COPSE_HAVE_NCCL
  memory::register_mpi_grad_sync("nccl", make_nccl_grad_sync);
#endif
  return true;
}();

}  // namespace
}  // namespace copse::cuda
