// Host compilation and loading of generated kernels (see host_compiler.h).
#include "cuda/host_emu/host_compiler.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "cuda/launch_plans.h"

namespace copse::cuda::emu {

namespace {

// What the loader reads from the shared object: one entry per kernel.
struct Entry {
  const char* name;
  void* fn;
  void* smem;
  std::size_t smem_bytes;
};

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string default_cache_dir() {
  if (const char* env = std::getenv("COPSE_EMU_CACHE")) return env;
  return std::string(COPSE_EMU_BINARY_DIR) + "/emu_cache";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

HostKernelLibrary::HostKernelLibrary(const std::vector<KernelSource>& kernels,
                                     const std::string& cache_dir) {
  // One translation unit: each kernel's text in a namespace of its own (the
  // sources each define View and FusedArgs), with its shared memory array.
  std::string tu = "#include \"cuda/host_emu/cuda_host_prelude.h\"\n";
  for (std::size_t k = 0; k < kernels.size(); ++k) {
    tu += fmt::format("namespace copse_k{} {{\nalignas(64) float smem[{}];\n", k,
                      kMaxDynamicSmem / sizeof(float));
    tu += kernels[k].source;
    tu += fmt::format("}}  // namespace copse_k{}\n", k);
  }
  tu += "struct CopseHostKernel { const char* name; void* fn; void* smem; std::size_t bytes; };\n";
  tu +=
      "extern \"C\" __attribute__((visibility(\"default\"))) const CopseHostKernel "
      "copse_host_kernels[] = {\n";
  for (std::size_t k = 0; k < kernels.size(); ++k)
    tu += fmt::format(
        "  {{\"{0}\", reinterpret_cast<void*>(&copse_k{1}::{0}), copse_k{1}::smem, "
        "sizeof(copse_k{1}::smem)}},\n",
        kernels[k].name, k);
  tu += "  {nullptr, nullptr, nullptr, 0}};\n";

  const std::string command_head =
      fmt::format("\"{}\" -std=c++17 -O1 -fPIC -shared -fvisibility=hidden {} -I\"{}\"",
                  COPSE_EMU_CXX, COPSE_EMU_CXX_FLAGS, COPSE_EMU_SOURCE_DIR);
  const std::string dir = cache_dir.empty() ? default_cache_dir() : cache_dir;
  std::filesystem::create_directories(dir);
  const std::string stem = fmt::format("{}/kernels_{:016x}", dir, fnv1a(command_head + tu));
  path_ = stem + ".so";
  if (!std::filesystem::exists(path_)) {
    const std::string tmp = fmt::format("{}.{}", stem, getpid());
    {
      std::ofstream f(tmp + ".cpp");
      f << tu;
      if (!f) fail("[cuda emu] cannot write {}.cpp", tmp);
    }
    const std::string cmd =
        fmt::format("{} -o \"{}.so\" \"{}.cpp\" > \"{}.log\" 2>&1", command_head, tmp, tmp, tmp);
    const int rc = std::system(cmd.c_str());
    if (rc != 0)
      fail("[cuda emu] the host compiler failed on generated kernels ({}):\n{}\n{}", rc, cmd,
           read_file(tmp + ".log"));
    std::filesystem::rename(tmp + ".so", path_);  // atomic: parallel tests may race here
    std::filesystem::remove(tmp + ".cpp");
    std::filesystem::remove(tmp + ".log");
    compiled_ = true;
  }
  handle_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) fail("[cuda emu] dlopen {}: {}", path_, dlerror());
  const auto* table = static_cast<const Entry*>(dlsym(handle_, "copse_host_kernels"));
  if (!table) fail("[cuda emu] {} has no kernel table", path_);
  for (; table->name; ++table)
    kernels_[table->name] =
        HostKernel{table->name, reinterpret_cast<void (*)(kernels::FusedArgs)>(table->fn),
                   SharedMemory{table->smem, table->smem_bytes}};
}

HostKernelLibrary::~HostKernelLibrary() {
  if (handle_) dlclose(handle_);
}

const HostKernel& HostKernelLibrary::kernel(const std::string& name) const {
  auto it = kernels_.find(name);
  if (it == kernels_.end()) fail("[cuda emu] no kernel {} in {}", name, path_);
  return it->second;
}

const HostKernel* HostKernelLibrary::find(const std::string& name) const {
  auto it = kernels_.find(name);
  return it == kernels_.end() ? nullptr : &it->second;
}

void run_fused_on_host(const HostKernel& k, const ops::FusedProgram& prog, int rows,
                       const ops::RowView<const float>* inputs, const ops::RowView<float>* outputs,
                       const Options& opts, int max_smem) {
  if (rows <= 0 || prog.code.empty()) return;  // as CudaBackend::run_fused
  const FusedShape shape = fused_shape(prog, max_smem, "sm_90");
  const kernels::FusedArgs args = fused_args(prog, rows, inputs, outputs);
  note_kernel(k.name);
  launch(opts, Dim3(shape.blocks(rows)), Dim3(shape.threads()), shape.smem, k.smem,
         [&] { k.fn(args); });
}

}  // namespace copse::cuda::emu
