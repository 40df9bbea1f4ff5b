// CUDA source generation for fused programs (no CUDA toolkit needed: the
// host emulator compiles the same text with the host compiler).
#include "cuda/fused_codegen.h"

#include <fmt/format.h>

#include "common/error.h"
#include "cuda/kernel_args.h"

namespace copse::cuda {

namespace {

using ops::EwArg;
using ops::EwInstr;
using ops::EwOp;
using ops::FusedProgram;
using ops::RegKind;

// The expression an op computes for column j (operands a, b are pointers
// named A, B; D is the destination).
std::string op_expr(const EwInstr& in) {
  switch (in.op) {
    case EwOp::Copy: return "D[j] = A[j];";
    case EwOp::Zero: return "D[j] = 0.f;";
    case EwOp::Add: return "D[j] = A[j] + B[j];";
    case EwOp::Sub: return "D[j] = A[j] - B[j];";
    case EwOp::Mul: return "D[j] = A[j] * B[j];";
    case EwOp::Sigmoid: return "D[j] = 1.f / (1.f + expf(-A[j]));";
    case EwOp::Tanh: return "D[j] = tanhf(A[j]);";
    case EwOp::Relu: return "D[j] = A[j] < 0.f ? 0.f : A[j];";
    case EwOp::AddTo: return "D[j] += A[j];";
    case EwOp::SubTo: return "D[j] -= A[j];";
    case EwOp::MulAddTo: return "D[j] += A[j] * B[j];";
    case EwOp::SigmoidGradAddTo: return "{ const float y = B[j]; D[j] += A[j] * y * (1.f - y); }";
    case EwOp::TanhGradAddTo: return "{ const float y = B[j]; D[j] += A[j] * (1.f - y * y); }";
    case EwOp::ReluGradAddTo: return "D[j] += B[j] > 0.f ? A[j] : 0.f;";
    case EwOp::ScaleAddTo:
      return fmt::format("D[j] += {:a}f * A[j];", in.imm);  // hex float: exact
    case EwOp::Neg: return "D[j] = -A[j];";
    case EwOp::SigmoidGrad: return "{ const float y = B[j]; D[j] = A[j] * y * (1.f - y); }";
    case EwOp::TanhGrad: return "{ const float y = B[j]; D[j] = A[j] * (1.f - y * y); }";
    case EwOp::ReluGrad: return "D[j] = B[j] > 0.f ? A[j] : 0.f;";
  }
  fail("[cuda codegen] unknown op {}", static_cast<int>(in.op));
}

// Column accesses since the last __syncwarp: register, column range, and the
// offset that maps loop index j to the column (col = offset + j).
struct Access {
  int reg, begin, end, offset;
};

bool conflicts(const std::vector<Access>& list, const Access& x) {
  for (const Access& a : list)
    if (a.reg == x.reg && a.begin < x.end && x.begin < a.end && a.offset != x.offset) return true;
  return false;
}

struct Generated {
  std::string body;
  int syncs = 0;
};

Generated generate_body(const FusedProgram& p) {
  if (p.temp_offset.size() != p.regs.size())
    fail("[cuda codegen] program '{}' was not finalized", p.name);
  if (p.num_inputs + p.num_outputs > kernels::kMaxViews)
    fail("[cuda codegen] program '{}' has {} inputs and outputs; the CUDA backend takes at most {}",
         p.name, p.num_inputs + p.num_outputs, kernels::kMaxViews);
  Generated g;
  std::string& s = g.body;
  // Register base pointers for this row.
  for (size_t r = 0; r < p.regs.size(); ++r) {
    const auto& reg = p.regs[r];
    switch (reg.kind) {
      case RegKind::Input:
        s += fmt::format("  const float* __restrict__ r{} = a.v[{}].p + row * a.v[{}].ld;\n", r,
                         reg.ext, reg.ext);
        break;
      case RegKind::Output: {
        const int v = p.num_inputs + reg.ext;
        s += fmt::format("  float* __restrict__ r{} = a.v[{}].p + row * a.v[{}].ld;\n", r, v, v);
        break;
      }
      case RegKind::Temp:
        s += fmt::format("  float* r{} = t + {};\n", r, p.temp_offset[r]);
        break;
    }
  }
  std::vector<Access> reads, writes;
  for (size_t i = 0; i < p.code.size(); ++i) {
    const EwInstr& in = p.code[i];
    const int srcs = ops::ew_num_sources(in.op);
    std::vector<Access> my_reads;
    const EwArg* ops_[2] = {&in.a, &in.b};
    for (int k = 0; k < srcs; ++k)
      my_reads.push_back({ops_[k]->reg, ops_[k]->col, ops_[k]->col + in.width, ops_[k]->col});
    const Access my_write{in.d.reg, in.d.col, in.d.col + in.width, in.d.col};
    bool sync = conflicts(reads, my_write) || conflicts(writes, my_write);
    for (const Access& r : my_reads) sync = sync || conflicts(writes, r);
    if (sync) {
      s += "  __syncwarp();\n";
      ++g.syncs;
      reads.clear();
      writes.clear();
    }
    reads.insert(reads.end(), my_reads.begin(), my_reads.end());
    writes.push_back(my_write);
    s += fmt::format("  {{  // {}: {}\n", i, ops::ew_op_name(in.op));
    s += fmt::format("    float* D = r{} + {};\n", in.d.reg, in.d.col);
    if (srcs >= 1) s += fmt::format("    const float* A = r{} + {};\n", in.a.reg, in.a.col);
    if (srcs >= 2) s += fmt::format("    const float* B = r{} + {};\n", in.b.reg, in.b.col);
    s += fmt::format("    for (int j = lane; j < {}; j += 32) {}\n", in.width, op_expr(in));
    s += "  }\n";
  }
  return g;
}

}  // namespace

std::string fused_kernel_name(const FusedProgram& prog) {
  return fmt::format("copse_fused_{:016x}", prog.fingerprint);
}

int fused_kernel_syncs(const FusedProgram& prog) { return generate_body(prog).syncs; }

std::string fused_kernel_source(const FusedProgram& prog) {
  const Generated g = generate_body(prog);
  std::string s;
  s += fmt::format("// Generated by copse from fused program '{}' ({} instructions).\n",
                   prog.name, prog.code.size());
  s += fmt::format(
      "struct View {{ float* p; long long ld; }};\n"
      "struct FusedArgs {{ int rows; int pad; View v[{}]; }};\n",
      kernels::kMaxViews);
  s += fmt::format("extern \"C\" __global__ void {}(const FusedArgs a) {{\n",
                   fused_kernel_name(prog));
  s += "  extern __shared__ float smem[];\n"
       "  const int warps = blockDim.x >> 5;\n"
       "  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;\n"
       "  const int row_i = blockIdx.x * warps + w;\n"
       "  if (row_i >= a.rows) return;\n"
       "  const long long row = row_i;\n";
  s += fmt::format("  float* t = smem + w * {};\n", prog.scratch_width);
  s += "  (void)t;\n";
  s += g.body;
  s += "}\n";
  return s;
}

}  // namespace copse::cuda
