// The generated fused kernels of every cell, compiled by the host compiler
// from the exact text fused_kernel_source writes and run on the host
// emulator with CudaBackend's launch geometry, against the CPU backend's
// run_fused; and two broken variants of one kernel (a required __syncwarp
// removed, a column offset shifted) that the check must catch.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cuda/fused_codegen.h"
#include "cuda/host_emu/host_compiler.h"
#include "cuda/host_emu/host_kernels.h"
#include "cuda/launch_plans.h"
#include "models/cells.h"
#include "ops/cpu_backend.h"
#include "tests/cuda_host/emu_test_util.h"
#include "tests/random_fused_program.h"
#include "vertex/plan.h"

namespace copse {
namespace {

using emutest::Vec;
namespace emu = cuda::emu;

struct Program {
  std::string cell;
  ops::FusedProgram prog;
};

// Every non-empty fused program (fwd, bwd, bwd_views) of every cell, at
// widths that are not multiples of 32; plus random programs (slices, shifted
// offsets, in-place updates, outputs accumulated into).
const std::vector<Program>& programs() {
  static const std::vector<Program> all = [] {
    std::vector<Program> v;
    std::set<std::uint64_t> seen;  // programs of equal content are one kernel
    auto add = [&](const std::string& cell, const ops::FusedProgram& p) {
      if (!p.code.empty() && seen.insert(p.fingerprint).second) v.push_back({cell, p});
    };
    for (const std::string& name : models::cell_names()) {
      vertex::ExecPlan plan = vertex::compile(models::make_cell(name, 29, 37), {});
      for (const auto& reg : plan.regions)
        for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd, &reg.bwd_views}) add(name, *p);
    }
    for (std::uint32_t seed = 1; seed <= 12; ++seed)
      add("random", ops::fusedtest::RandomProgram(seed).make());
    return v;
  }();
  return all;
}

std::vector<emu::KernelSource> sources(const std::vector<Program>& ps) {
  std::vector<emu::KernelSource> s;
  for (const Program& p : ps)
    s.push_back({cuda::fused_kernel_name(p.prog), cuda::fused_kernel_source(p.prog)});
  return s;
}

const emu::HostKernelLibrary& zoo_library() {
  static const emu::HostKernelLibrary lib(sources(programs()));
  return lib;
}

bool accumulating(ops::EwOp op) { return ops::fusedtest::accumulating(op); }

// Outputs that are only accumulated into: the executor may give two of them
// the same memory (bwd_views of a vertex whose children are one vertex).
std::vector<int> accumulate_only_outputs(const ops::FusedProgram& p) {
  std::vector<int> state(p.num_outputs, 0);  // 0 unwritten, 1 accumulated only, 2 other
  for (const auto& in : p.code) {
    const auto& reg = p.regs[in.d.reg];
    if (reg.kind != ops::RegKind::Output) continue;
    state[reg.ext] = accumulating(in.op) && state[reg.ext] != 2 ? 1 : 2;
  }
  std::vector<int> out;
  for (int o = 0; o < p.num_outputs; ++o)
    if (state[o] == 1) out.push_back(o);
  return out;
}

// One call's data: inputs and outputs as strided row views of their own
// buffers (optionally one broadcast input and two aliased outputs).
struct Case {
  int rows;
  std::vector<int> in_w, out_w;
  std::vector<long> in_ld, out_ld;
  std::vector<Vec> ins, outs;
  std::vector<int> out_buffer;  // which buffer of `outs` output o uses
};

// Floats after each buffer's last row: a broken kernel (the shifted column
// below) reads past a row without leaving the allocation, and outputs must
// leave them as they were.
constexpr int kSlack = 32;

Case make_case(const ops::FusedProgram& p, int rows, std::uint32_t seed, bool broadcast,
               bool alias) {
  Case c;
  c.rows = rows;
  c.in_w.assign(p.num_inputs, 0);
  c.out_w.assign(p.num_outputs, 0);
  for (const auto& r : p.regs) {
    if (r.kind == ops::RegKind::Input) c.in_w[r.ext] = std::max(c.in_w[r.ext], r.width);
    if (r.kind == ops::RegKind::Output) c.out_w[r.ext] = std::max(c.out_w[r.ext], r.width);
  }
  for (int i = 0; i < p.num_inputs; ++i) {
    const long ld = broadcast && i == 0 ? 0 : c.in_w[i] + (seed + i) % 5;
    c.in_ld.push_back(ld);
    c.ins.push_back(
        emutest::random_vec((rows - 1) * ld + c.in_w[i] + kSlack, seed * 31 + i, -2.f, 2.f));
  }
  for (int o = 0; o < p.num_outputs; ++o) {
    c.out_ld.push_back(c.out_w[o] + (seed + 2 * o) % 7);
    c.outs.push_back(
        emutest::random_vec((rows - 1) * c.out_ld[o] + c.out_w[o] + kSlack, seed * 57 + o));
    c.out_buffer.push_back(o);
  }
  const std::vector<int> acc = accumulate_only_outputs(p);
  if (alias && acc.size() >= 2 && c.out_w[acc[0]] == c.out_w[acc[1]]) {
    c.out_buffer[acc[1]] = acc[0];
    c.out_ld[acc[1]] = c.out_ld[acc[0]];
  }
  return c;
}

// Runs the program on `outs` (a copy of the case's) with the CPU backend,
// the generated kernel k, or (interpret) the interpreter kernel; returns the
// output buffers.
std::vector<Vec> run(const ops::FusedProgram& p, const Case& c, const emu::HostKernel* k,
                     const emu::Options& opts, bool interpret = false) {
  std::vector<Vec> outs = c.outs;
  std::vector<ops::RowView<const float>> vin;
  std::vector<ops::RowView<float>> vout;
  for (int i = 0; i < p.num_inputs; ++i) vin.push_back({c.ins[i].data(), c.in_ld[i]});
  for (int o = 0; o < p.num_outputs; ++o)
    vout.push_back({outs[c.out_buffer[o]].data(), c.out_ld[o]});
  if (interpret) {  // as CudaBackend::run_fused_interpreted launches it
    const cuda::InterpreterProgram ip = cuda::interpreter_program(p);
    const cuda::FusedShape shape =
        cuda::fused_shape(p, static_cast<int>(emu::kMaxDynamicSmem), "sm_90");
    emu::Stream stream{opts};
    cuda::host_kernels::run_interpreter(
        &stream, cuda::fused_args(p, c.rows, vin.data(), vout.data()), ip.regs.data(),
        static_cast<int>(ip.regs.size()), ip.code.data(), static_cast<int>(ip.code.size()),
        p.scratch_width, shape.warps);
  } else if (k) {
    emu::run_fused_on_host(*k, p, c.rows, vin.data(), vout.data(), opts);
  } else {
    ops::CpuBackend<float> cpu(1);
    cpu.run_fused(p, c.rows, vin.data(), vout.data());
  }
  return outs;
}

// Runs every case of a program on the host kernel under `opts`; the first
// mismatch with the CPU backend, or success.
::testing::AssertionResult matches_cpu(const ops::FusedProgram& p, const emu::HostKernel* k,
                                       const emu::Options& opts, int* launches = nullptr) {
  int n = 0;
  for (int rows : {1, 9, 45}) {
    for (int variant = 0; variant < 2; ++variant) {
      const Case c = make_case(p, rows, static_cast<std::uint32_t>(rows * 7 + variant),
                               variant == 1, variant == 1);
      const std::vector<Vec> ref = run(p, c, nullptr, opts);
      const std::vector<Vec> got = run(p, c, k, opts, k == nullptr);
      ++n;
      for (std::size_t b = 0; b < ref.size(); ++b) {
        auto r = emutest::close(
            got[b], ref[b], 1e-6,
            fmt::format("{} rows {} variant {} buffer {} ({}, {})", p.name, rows, variant, b,
                        k ? "generated" : "interpreter", emutest::describe(opts)));
        if (!r) return r;
      }
    }
  }
  if (launches) *launches += n;
  return ::testing::AssertionSuccess();
}

TEST(CudaOnHost, GeneratedKernelOfEveryFusedProgramMatchesCpu) {
  const emu::HostKernelLibrary& lib = zoo_library();
  int kernels = 0, zoo = 0, launches = 0;
  for (const Program& p : programs()) {
    const emu::HostKernel& k = lib.kernel(cuda::fused_kernel_name(p.prog));
    for (const emu::Options& o : emutest::schedules())
      EXPECT_TRUE(matches_cpu(p.prog, &k, o, &launches)) << p.cell;
    ++kernels;
    zoo += p.cell != "random";
  }
  std::printf("generated kernels run on the host: %d (%d of the cells, %d random), %d launches\n",
              kernels, zoo, kernels - zoo, launches);
  EXPECT_GE(zoo, 2 * static_cast<int>(models::cell_names().size()));
}

// The interpreter kernel of cuda/kernels_body.cuh (the fallback when NVRTC
// cannot compile for the device) on the same programs and cases.
TEST(CudaOnHost, InterpreterKernelOnEveryFusedProgramMatchesCpu) {
  for (const Program& p : programs())
    for (const emu::Options& o : emutest::fiber_schedules(1))
      EXPECT_TRUE(matches_cpu(p.prog, nullptr, o)) << p.cell;
}

// ---------------------------------------------------------------------------
// The check can fail.

// A zoo program whose kernel needs a __syncwarp (the binary Tree-LSTM's
// backward).
const Program& program_with_sync() {
  for (const Program& p : programs())
    if (p.cell == "tree-lstm" && cuda::fused_kernel_syncs(p.prog) > 0) return p;
  throw std::runtime_error("no tree-lstm program with a __syncwarp");
}

std::string without_first_sync(std::string src) {
  const std::string sync = "  __syncwarp();\n";
  const auto at = src.find(sync);
  if (at == std::string::npos) throw std::runtime_error("no __syncwarp in the source");
  return src.erase(at, sync.size());
}

// Source with the first `A = rN + C;` read at column C + 1.
std::string with_shifted_offset(std::string src) {
  const std::string key = "const float* A = r";
  const auto at = src.find(key);
  const auto plus = src.find(" + ", at);
  const auto semi = src.find(';', plus);
  const int col = std::stoi(src.substr(plus + 3, semi - plus - 3));
  return src.replace(plus + 3, semi - plus - 3, std::to_string(col + 1));
}

TEST(CudaOnHost, KernelWithoutARequiredSyncwarpDiffersFromCpu) {
  if (emutest::kThreadSanitizer)
    GTEST_SKIP() << "a race on OS threads: CudaOnHostDeathTest checks that TSan reports it";
  const Program& p = program_with_sync();
  const std::string name = cuda::fused_kernel_name(p.prog);
  const std::string src = cuda::fused_kernel_source(p.prog);
  const emu::HostKernelLibrary good({{name, src}});
  const emu::HostKernelLibrary bad({{name, without_first_sync(src)}});
  const emu::Options fibers{emu::Schedule::Fibers, 1};
  EXPECT_TRUE(matches_cpu(p.prog, &good.kernel(name), fibers));
  const ::testing::AssertionResult r = matches_cpu(p.prog, &bad.kernel(name), fibers);
  EXPECT_FALSE(r) << p.prog.name << ": removing its first __syncwarp went unnoticed";
  std::printf("without its first __syncwarp: %s\n", r.message());
}

TEST(CudaOnHost, KernelWithAShiftedColumnOffsetDiffersFromCpu) {
  const Program& p = program_with_sync();
  const std::string name = cuda::fused_kernel_name(p.prog);
  const emu::HostKernelLibrary bad(
      {{name, with_shifted_offset(cuda::fused_kernel_source(p.prog))}});
  for (const emu::Options& o : emutest::schedules()) {
    const ::testing::AssertionResult r = matches_cpu(p.prog, &bad.kernel(name), o);
    EXPECT_FALSE(r) << emutest::describe(o) << ": a shifted column went unnoticed";
    std::printf("with a shifted column: %s\n", r.message());
  }
}

#if defined(__SANITIZE_THREAD__)
// Under ThreadSanitizer (scripts/tsan.sh), the kernel without its
// __syncwarp run on OS threads is a reported data race; the child process
// of the death test runs it with TSan stopping at the first report.
TEST(CudaOnHostDeathTest, ThreadSanitizerReportsTheRaceOfAMissingSyncwarp) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Program& p = program_with_sync();
  const std::string name = cuda::fused_kernel_name(p.prog);
  const emu::HostKernelLibrary bad({{name, without_first_sync(cuda::fused_kernel_source(p.prog))}});
  setenv("TSAN_OPTIONS", "halt_on_error=1:exitcode=66", 1);
  // One run does not always interleave the racing lanes (seen once in CI):
  // the child runs the kernel up to 50 times; TSan stops it at the first report.
  EXPECT_EXIT(
      {
        for (int k = 0; k < 50; ++k) matches_cpu(p.prog, &bad.kernel(name), {emu::Schedule::Threads, 0});
        std::exit(0);
      },
      ::testing::ExitedWithCode(66), "ThreadSanitizer: data race");
}
#endif

}  // namespace
}  // namespace copse
