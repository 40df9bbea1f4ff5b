// What the CUDA backend decides for a launch, without CUDA calls: a fused
// program's block shape, kernel argument and interpreter copy, the packing
// of row jobs into batched launches, the optimizer's kernel parameters, how
// scratch buffers grow.
// Plain C++, shared by cuda/cuda_backend.cpp and the host emulator's tests,
// so that both launch alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "common/error.h"
#include "cuda/kernel_args.h"
#include "memory/optimizer.h"
#include "ops/backend.h"
#include "ops/fused_program.h"

namespace copse::cuda {

// A scratch buffer that must hold `need` elements and holds `have`: its new
// capacity, at least double the old, so rising sizes reallocate O(log n) times.
inline std::size_t grown_capacity(std::size_t need, std::size_t have) {
  return std::max(need, 2 * have);
}

struct FusedShape {
  int warps = 8;         // rows per block (one warp each)
  std::size_t smem = 0;  // dynamic shared memory per block: the warps' scratch rows
  int blocks(int rows) const { return (rows + warps - 1) / warps; }
  int threads() const { return 32 * warps; }
};

// Up to 8 warps per block, fewer when their scratch rows would not fit in
// `max_smem` bytes (the device's opt-in limit per block).
inline FusedShape fused_shape(const ops::FusedProgram& prog, int max_smem,
                              const std::string& device) {
  const std::size_t per_warp = sizeof(float) * static_cast<std::size_t>(prog.scratch_width);
  if (per_warp > static_cast<std::size_t>(max_smem))
    fail(
        "[cuda] fused program '{}' needs {} bytes of scratch per row; {} allows at most {} "
        "bytes of shared memory per block",
        prog.name, per_warp, device, max_smem);
  FusedShape s;
  s.warps = per_warp == 0 ? 8 : static_cast<int>(std::min<std::size_t>(8, max_smem / per_warp));
  s.smem = per_warp * s.warps;
  return s;
}

// The kernel's argument: the views, inputs first, then outputs.
inline kernels::FusedArgs fused_args(const ops::FusedProgram& prog, int rows,
                                     const ops::RowView<const float>* inputs,
                                     const ops::RowView<float>* outputs) {
  kernels::FusedArgs args{};
  args.rows = rows;
  for (int i = 0; i < prog.num_inputs; ++i)
    args.v[i] = {const_cast<float*>(inputs[i].ptr), inputs[i].ld};
  for (int o = 0; o < prog.num_outputs; ++o)
    args.v[prog.num_inputs + o] = {outputs[o].ptr, outputs[o].ld};
  return args;
}

// The interpreter's copy of a program: registers and instructions as ints.
struct InterpreterProgram {
  std::vector<kernels::DevReg> regs;
  std::vector<kernels::DevInstr> code;
};

inline InterpreterProgram interpreter_program(const ops::FusedProgram& prog) {
  InterpreterProgram out;
  for (std::size_t r = 0; r < prog.regs.size(); ++r) {
    const auto& reg = prog.regs[r];
    kernels::DevReg d{};
    d.kind = reg.kind == ops::RegKind::Input ? 0 : reg.kind == ops::RegKind::Output ? 1 : 2;
    d.ext = reg.kind == ops::RegKind::Output ? prog.num_inputs + reg.ext : reg.ext;
    d.temp_offset = prog.temp_offset[r];
    out.regs.push_back(d);
  }
  for (const auto& in : prog.code) {
    const int srcs = ops::ew_num_sources(in.op);
    out.code.push_back({static_cast<int>(in.op), in.d.reg, in.d.col, srcs >= 1 ? in.a.reg : -1,
                        in.a.col, srcs >= 2 ? in.b.reg : -1, in.b.col, in.width, in.imm});
  }
  return out;
}

// The jobs [begin, end) as one batched launch's argument (empty jobs dropped).
inline kernels::RowJobs pack_jobs(const ops::RowJob<float>* jobs, int begin, int end) {
  kernels::RowJobs p{};
  for (int k = begin; k < end; ++k) {
    const auto& j = jobs[k];
    if (j.n <= 0 || j.width <= 0) continue;
    p.job[p.count++] = {j.n, j.width, j.src, j.ld_src, j.idx, j.dst, j.ld_dst};
    p.max_rows = std::max(p.max_rows, j.n);
  }
  return p;
}

// The batched launches for `count` row jobs: the non-empty ones in order,
// kMaxRowJobs to a launch.
inline std::vector<kernels::RowJobs> row_job_launches(const ops::RowJob<float>* jobs, int count) {
  std::vector<kernels::RowJobs> out;
  for (int k = 0; k < count; ++k) {
    const auto& j = jobs[k];
    if (j.n <= 0 || j.width <= 0) continue;
    if (out.empty() || out.back().count == kernels::kMaxRowJobs) out.push_back({});
    kernels::RowJobs& p = out.back();
    p.job[p.count++] = {j.n, j.width, j.src, j.ld_src, j.idx, j.dst, j.ld_dst};
    p.max_rows = std::max(p.max_rows, j.n);
  }
  return out;
}

// The optimizer kernels' parameters for step t (as ops/optimizer_cpu.cpp:
// the Adam corrections in float from pow in double).
inline kernels::OptimizerParams optimizer_params(const memory::OptimizerConfig& c, long t) {
  kernels::OptimizerParams p{};
  using K = memory::OptimizerConfig;
  p.kind = c.kind == K::Sgd ? 0 : c.kind == K::Adagrad ? 1 : 2;
  p.lr = c.lr;
  p.momentum = c.momentum;
  p.beta1 = c.beta1;
  p.beta2 = c.beta2;
  p.eps = c.eps;
  p.l2 = c.l2;
  p.c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(p.beta1), t)));
  p.c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(p.beta2), t)));
  return p;
}

}  // namespace copse::cuda
