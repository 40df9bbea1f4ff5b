// Stands in for cuda/nccl_sync.cpp when copse is built without CUDA or NCCL.
#include "cuda/nccl_sync.h"

#include "common/error.h"

namespace copse::cuda {

std::unique_ptr<memory::GradSync<float>> make_nccl_grad_sync(memory::MpiGradSync<float>&) {
  fail(
      "--transport nccl: this copse was built without NCCL (it needs the CUDA toolkit, NCCL and "
      "MPI at build time; use --transport mpi)");
}

}  // namespace copse::cuda
