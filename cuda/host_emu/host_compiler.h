// The generated fused kernels (cuda/fused_codegen.h) compiled by the host
// compiler, as NVRTC compiles them for the GPU: the exact text of
// fused_kernel_source, after the emulator's prelude, built into one shared
// object per set of kernels (cached on disk by content, so a test process
// runs the compiler only the first time) and loaded with dlopen.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/host_emu/emulator.h"
#include "cuda/kernel_args.h"
#include "ops/fused_program.h"

namespace copse::cuda::emu {

struct HostKernel {
  std::string name;
  void (*fn)(kernels::FusedArgs) = nullptr;
  SharedMemory smem;  // the kernel's `extern __shared__ float smem[]`
};

struct KernelSource {
  std::string name;    // the extern "C" kernel in `source`
  std::string source;  // as fused_kernel_source writes it
};

class HostKernelLibrary {
 public:
  // Compiles and loads the kernels; throws copse::Error with the compiler's
  // output if they do not compile. `cache_dir` empty: the default
  // (COPSE_EMU_CACHE, else the build directory's emu_cache/).
  explicit HostKernelLibrary(const std::vector<KernelSource>& kernels,
                             const std::string& cache_dir = "");
  ~HostKernelLibrary();
  HostKernelLibrary(const HostKernelLibrary&) = delete;
  HostKernelLibrary& operator=(const HostKernelLibrary&) = delete;

  const HostKernel& kernel(const std::string& name) const;
  const HostKernel* find(const std::string& name) const;  // nullptr: not in it
  bool compiled() const { return compiled_; }  // false: loaded from the cache
  const std::string& path() const { return path_; }

 private:
  void* handle_ = nullptr;
  std::string path_;
  bool compiled_ = false;
  std::unordered_map<std::string, HostKernel> kernels_;
};

// Runs a generated kernel over `rows` rows the way CudaBackend::run_fused
// launches it (cuda/launch_plans.h: its warps per block, its shared memory,
// its views), for a device allowing `max_smem` bytes of shared memory per
// block.
void run_fused_on_host(const HostKernel& k, const ops::FusedProgram& prog, int rows,
                       const ops::RowView<const float>* inputs, const ops::RowView<float>* outputs,
                       const Options& opts, int max_smem = static_cast<int>(kMaxDynamicSmem));

}  // namespace copse::cuda::emu
