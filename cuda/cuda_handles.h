// Owning handles of the CUDA runtime's and cuBLAS's resources, one
// unique_ptr-with-deleter type each: whatever path leaves a scope (an error
// halfway through a constructor included) frees what was made. Deleters never
// throw; a failure to free is logged.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <memory>
#include <type_traits>

namespace copse::cuda {

inline void log_failure(cudaError_t e, const char* what) noexcept {
  if (e != cudaSuccess)
    std::fprintf(stderr, "copse: [cuda] %s failed: %s\n", what, cudaGetErrorString(e));
}

struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept {
    log_failure(cudaStreamDestroy(s), "cudaStreamDestroy");
  }
};
struct EventDestroy {
  void operator()(cudaEvent_t e) const noexcept {
    log_failure(cudaEventDestroy(e), "cudaEventDestroy");
  }
};
struct BlasDestroy {
  void operator()(cublasHandle_t h) const noexcept {
    if (cublasDestroy(h) != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "copse: [cuda] cublasDestroy failed\n");
  }
};
struct LibraryUnload {
  void operator()(cudaLibrary_t l) const noexcept {
    log_failure(cudaLibraryUnload(l), "cudaLibraryUnload");
  }
};
struct DeviceFree {
  void operator()(void* p) const noexcept { log_failure(cudaFree(p), "cudaFree"); }
};
struct PinnedFree {
  void operator()(void* p) const noexcept { log_failure(cudaFreeHost(p), "cudaFreeHost"); }
};

// cudaStream_t & co. are pointers to opaque structs: the handle owns the struct.
using UniqueStream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using UniqueEvent = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDestroy>;
using UniqueBlas = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, BlasDestroy>;
using UniqueLibrary = std::unique_ptr<std::remove_pointer_t<cudaLibrary_t>, LibraryUnload>;
using UniqueDeviceMem = std::unique_ptr<void, DeviceFree>;
using UniquePinnedMem = std::unique_ptr<void, PinnedFree>;

}  // namespace copse::cuda
