// NVRTC compilation (see nvrtc_compile.h).
#include "cuda/nvrtc_compile.h"

#include <fmt/format.h>
#include <nvrtc.h>

#include <chrono>

#include "common/error.h"

namespace copse::cuda {

namespace {

void check_nvrtc(nvrtcResult r, const char* what) {
  if (r != NVRTC_SUCCESS) fail("[cuda] NVRTC {} failed: {}", what, nvrtcGetErrorString(r));
}

}  // namespace

NvrtcResult nvrtc_compile(const std::string& source, const std::string& name,
                          const std::string& arch) {
  NvrtcResult res;
  const auto t0 = std::chrono::steady_clock::now();
  nvrtcProgram prog;
  check_nvrtc(
      nvrtcCreateProgram(&prog, source.c_str(), (name + ".cu").c_str(), 0, nullptr, nullptr),
      "nvrtcCreateProgram");
  const std::string arch_opt = "--gpu-architecture=" + arch;
  const char* opts[] = {arch_opt.c_str(), "--std=c++17", "--restrict"};
  const nvrtcResult r = nvrtcCompileProgram(prog, 3, opts);
  std::size_t log_size = 0;
  nvrtcGetProgramLogSize(prog, &log_size);
  if (log_size > 1) {
    res.log.resize(log_size);
    nvrtcGetProgramLog(prog, res.log.data());
    res.log.resize(log_size - 1);
  }
  if (r == NVRTC_SUCCESS) {
    const bool cubin = arch.rfind("sm_", 0) == 0;
    std::size_t size = 0;
    if (cubin) {
      check_nvrtc(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
      res.binary.resize(size);
      check_nvrtc(nvrtcGetCUBIN(prog, res.binary.data()), "nvrtcGetCUBIN");
    } else {
      check_nvrtc(nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
      res.binary.resize(size);
      check_nvrtc(nvrtcGetPTX(prog, res.binary.data()), "nvrtcGetPTX");
    }
    res.ok = true;
  } else if (res.log.empty()) {
    res.log = nvrtcGetErrorString(r);
  }
  nvrtcDestroyProgram(&prog);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return fmt::format("{}.{}", major, minor);
}

}  // namespace copse::cuda
