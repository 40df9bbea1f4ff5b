// Resources of every GPU kernel on sm_90, without a GPU: the kernels of
// cuda/kernels.cu (its PTX, built by nvcc) and every generated fused kernel
// of the cells (NVRTC to PTX) go through `ptxas -arch=sm_90 -v`; registers,
// spills, stack and shared memory, with the launch block size the backend
// uses, give the occupancy. A spill or a launch that could not run fails.
// The table printed is the one in benchmarks/RESULTS.md.
#include <gtest/gtest.h>

#ifdef COPSE_WITH_CUDA

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/fused_codegen.h"
#include "cuda/kernel_args.h"
#include "cuda/launch_plans.h"
#include "cuda/nvrtc_compile.h"
#include "models/cells.h"
#include "vertex/plan.h"

namespace copse {
namespace {

struct Usage {
  int regs = -1, stack = 0, spill_stores = 0, spill_loads = 0;
  long smem = 0;  // static shared memory
};

// The build's ptxas, or a reason to skip (a bundle copied to another machine).
std::string missing_tools() {
  if (!std::filesystem::exists(COPSE_PTXAS)) return std::string("no ptxas at ") + COPSE_PTXAS;
  return "";
}

// ptxas -v on a PTX file: per entry function (demangled enough to read).
std::map<std::string, Usage> ptxas_usage(const std::string& ptx_path) {
  const std::string log = ptx_path + ".ptxas.log";
  const std::string cmd = fmt::format("\"{}\" -arch=sm_90 -v \"{}\" -o \"{}.cubin\" > \"{}\" 2>&1",
                                      COPSE_PTXAS, ptx_path, ptx_path, log);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(log);
  std::map<std::string, Usage> out;
  std::string line, current;
  const std::regex entry("Compiling entry function '([^']+)'");
  const std::regex frame(
      "(\\d+) bytes stack frame, (\\d+) bytes spill stores, (\\d+) bytes spill loads");
  const std::regex used("Used (\\d+) registers");
  const std::regex smem("(\\d+) bytes smem");
  const std::regex short_name("(\\d+)([a-z_]+_k)E");  // copse::cuda::kernels::(anon)::NAME
  std::smatch m;
  while (std::getline(f, line)) {
    if (std::regex_search(line, m, entry)) {
      current = m[1];
      const std::string mangled = current;
      for (std::sregex_iterator it(mangled.begin(), mangled.end(), short_name), end; it != end;
           ++it)
        if (std::stol((*it)[1]) == (*it)[2].length()) current = (*it)[2];
    } else if (!current.empty() && std::regex_search(line, m, frame)) {
      out[current].stack = std::stoi(m[1]);
      out[current].spill_stores = std::stoi(m[2]);
      out[current].spill_loads = std::stoi(m[3]);
    } else if (!current.empty() && std::regex_search(line, m, used)) {
      out[current].regs = std::stoi(m[1]);
      if (std::regex_search(line, m, smem)) out[current].smem = std::stol(m[1]);
    }
  }
  return out;
}

// sm_90 (H100): per SM 64K registers (allocated per warp in units of 256),
// 64 warps, 32 blocks, 228 KiB of shared memory (227 KiB per block, 1 KiB
// reserved per block, 128-byte units).
struct Occupancy {
  bool runs = false;
  std::string why;
  int blocks_per_sm = 0;
  double occupancy = 0;
};

Occupancy occupancy(const Usage& u, int threads, long dynamic_smem) {
  Occupancy o;
  const int warps = (threads + 31) / 32;
  const long smem = u.smem + dynamic_smem;
  if (threads > 1024)
    o.why = "more than 1024 threads";
  else if (u.regs > 255)
    o.why = "more than 255 registers";
  else if (static_cast<long>(u.regs) * threads > 65536)
    o.why = "registers x threads > 64K";
  else if (smem > 232448)
    o.why = "shared memory > 227 KiB";
  if (!o.why.empty()) return o;
  const int regs_per_warp = (std::max(u.regs, 1) * 32 + 255) / 256 * 256;
  const int by_regs = 65536 / regs_per_warp / warps;
  const int by_warps = 64 / warps;
  const long smem_alloc = (smem + 1024 + 127) / 128 * 128;
  const int by_smem = static_cast<int>(233472 / smem_alloc);
  o.blocks_per_sm = std::min({by_regs, by_warps, by_smem, 32});
  o.runs = o.blocks_per_sm > 0;
  if (!o.runs) o.why = "no block fits on an SM";
  o.occupancy = static_cast<double>(o.blocks_per_sm * warps) / 64.0;
  return o;
}

struct Launch {
  std::string kernel;
  int threads;
  long dynamic_smem;
  std::string label;  // what the table calls it (the kernel's name if empty)
};

void check_and_print(const std::string& title, const std::map<std::string, Usage>& usage,
                     const std::vector<Launch>& launches) {
  std::printf(
      "\n%s\n\n| kernel | threads | registers | spill st/ld (B) | stack (B) | static smem "
      "(B) | dynamic smem (B) | blocks/SM | occupancy |\n|---|---|---|---|---|---|---|---|"
      "---|\n",
      title.c_str());
  for (const Launch& l : launches) {
    auto it = usage.find(l.kernel);
    ASSERT_NE(it, usage.end()) << "ptxas did not report " << l.kernel;
    const Usage& u = it->second;
    const Occupancy o = occupancy(u, l.threads, l.dynamic_smem);
    std::printf("| %s | %d | %d | %d/%d | %d | %ld | %ld | %d | %.0f%% |\n",
                (l.label.empty() ? l.kernel : l.label).c_str(), l.threads, u.regs, u.spill_stores,
                u.spill_loads, u.stack, u.smem, l.dynamic_smem, o.blocks_per_sm, 100 * o.occupancy);
    EXPECT_GE(u.regs, 1) << l.kernel;
    EXPECT_EQ(u.spill_stores + u.spill_loads, 0) << l.kernel << " spills";
    EXPECT_EQ(u.stack, 0) << l.kernel << " uses local memory";
    EXPECT_TRUE(o.runs) << l.kernel << " cannot launch with " << l.threads << " threads: " << o.why;
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

TEST(CudaResources, KernelsOfKernelsCuFitSm90WithoutSpills) {
  if (!missing_tools().empty()) GTEST_SKIP() << missing_tools();
  std::string ptx;
  for (const std::string& p : split(COPSE_KERNELS_PTX, ':'))
    if (p.find("kernels") != std::string::npos) ptx = p;
  ASSERT_TRUE(std::filesystem::exists(ptx)) << "no PTX of cuda/kernels.cu: " << COPSE_KERNELS_PTX;
  const std::map<std::string, Usage> usage = ptxas_usage(ptx);
  // The launch shapes of cuda/kernels_body.cuh: 8 warps per block; the
  // reductions with kWarps doubles of dynamic shared memory.
  std::vector<Launch> launches;
  std::set<std::string> reductions = {"sum_squares_k", "sum_squares_listed_k", "finish_sum_k",
                                      "softmax_labels_k", "softmax_finish_k"};
  for (const auto& [name, u] : usage) {
    if (name == "interpreter_k") continue;
    launches.push_back({name, 256, reductions.count(name) ? 8 * 8L : 0L, ""});
  }
  // The interpreter: the shape of each cell's largest program at h = 150.
  long worst_smem = 0;
  int worst_warps = 8;
  for (const std::string& name : models::cell_names()) {
    vertex::ExecPlan plan = vertex::compile(models::make_cell(name, 300, 150), {});
    for (const auto& reg : plan.regions)
      for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd, &reg.bwd_views}) {
        const cuda::FusedShape s = cuda::fused_shape(*p, 232448, "sm_90");
        if (static_cast<long>(s.smem) > worst_smem) worst_smem = s.smem, worst_warps = s.warps;
      }
  }
  launches.push_back({"interpreter_k", 32 * worst_warps, worst_smem,
                      "interpreter_k (largest scratch of the cells at h150)"});
  // Every __global__ of the source is in the table.
  std::ifstream body(std::string(COPSE_SOURCE_DIR) + "/cuda/kernels_body.cuh");
  const std::string text((std::istreambuf_iterator<char>(body)), std::istreambuf_iterator<char>());
  std::size_t globals = 0;
  for (std::size_t at = text.find("__global__ void"); at != std::string::npos;
       at = text.find("__global__ void", at + 1))
    ++globals;
  EXPECT_EQ(launches.size(), globals);
  check_and_print("Kernels of cuda/kernels.cu (sm_90, ptxas -v)", usage, launches);
}

TEST(CudaResources, GeneratedKernelsOfEveryCellFitSm90WithoutSpills) {
  if (!missing_tools().empty()) GTEST_SKIP() << missing_tools();
  // Every kernel in one NVRTC program, each text in a namespace of its own.
  std::string all;
  std::vector<Launch> launches;
  std::set<std::uint64_t> seen;
  for (const std::string& name : models::cell_names()) {
    vertex::ExecPlan plan = vertex::compile(models::make_cell(name, 300, 150), {});
    for (const auto& reg : plan.regions)
      for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd, &reg.bwd_views}) {
        if (p->code.empty() || !seen.insert(p->fingerprint).second) continue;
        all +=
            fmt::format("namespace k{} {{\n{}}}\n", launches.size(), cuda::fused_kernel_source(*p));
        const cuda::FusedShape s = cuda::fused_shape(*p, 232448, "sm_90");
        launches.push_back(
            {cuda::fused_kernel_name(*p), s.threads(), static_cast<long>(s.smem), p->name});
      }
  }
  const cuda::NvrtcResult r = cuda::nvrtc_compile(all, "copse_fused_all", "compute_90");
  ASSERT_TRUE(r.ok) << r.log;
  const std::string dir = std::string(COPSE_BINARY_DIR) + "/resources";
  std::filesystem::create_directories(dir);
  const std::string ptx = dir + "/generated.ptx";
  std::ofstream(ptx) << std::string(r.binary.data());  // without NVRTC's trailing NUL
  const std::map<std::string, Usage> usage = ptxas_usage(ptx);
  check_and_print("Generated fused kernels of the cells at e300/h150 (sm_90, NVRTC + ptxas -v)",
                  usage, launches);
}

}  // namespace
}  // namespace copse

#endif  // COPSE_WITH_CUDA
