// CUDA device discovery. The CUDA backend itself is a separate piece of work;
// this target proves the toolkit compiles and links with the project.
#include <cuda_runtime.h>

namespace copse::cuda {

// Number of usable GPUs; any error (no driver, driver too old) counts as none.
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace copse::cuda
