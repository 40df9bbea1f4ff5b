// FusedProgram: scratch layout, operand validation and a readable dump.
#include "ops/fused_program.h"

#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace copse::ops {

const char* ew_op_name(EwOp op) {
  switch (op) {
    case EwOp::Copy: return "copy";
    case EwOp::Zero: return "zero";
    case EwOp::Add: return "add";
    case EwOp::Sub: return "sub";
    case EwOp::Mul: return "mul";
    case EwOp::Sigmoid: return "sigmoid";
    case EwOp::Tanh: return "tanh";
    case EwOp::Relu: return "relu";
    case EwOp::AddTo: return "add_to";
    case EwOp::SubTo: return "sub_to";
    case EwOp::MulAddTo: return "mul_add_to";
    case EwOp::SigmoidGradAddTo: return "sigmoid_grad_add_to";
    case EwOp::TanhGradAddTo: return "tanh_grad_add_to";
    case EwOp::ReluGradAddTo: return "relu_grad_add_to";
    case EwOp::ScaleAddTo: return "scale_add_to";
    case EwOp::Neg: return "neg";
    case EwOp::SigmoidGrad: return "sigmoid_grad";
    case EwOp::TanhGrad: return "tanh_grad";
    case EwOp::ReluGrad: return "relu_grad";
  }
  return "unknown";
}

namespace {

// How many source operands (a, then b) an op reads; -1 for an unknown op.
int num_sources(EwOp op) {
  switch (op) {
    case EwOp::Zero: return 0;
    case EwOp::Copy:
    case EwOp::Sigmoid:
    case EwOp::Tanh:
    case EwOp::Relu:
    case EwOp::AddTo:
    case EwOp::SubTo:
    case EwOp::ScaleAddTo:
    case EwOp::Neg: return 1;
    case EwOp::Add:
    case EwOp::Sub:
    case EwOp::Mul:
    case EwOp::MulAddTo:
    case EwOp::SigmoidGradAddTo:
    case EwOp::TanhGradAddTo:
    case EwOp::ReluGradAddTo:
    case EwOp::SigmoidGrad:
    case EwOp::TanhGrad:
    case EwOp::ReluGrad: return 2;
  }
  return -1;
}

const char* kind_name(RegKind kind) {
  switch (kind) {
    case RegKind::Input: return "input";
    case RegKind::Output: return "output";
    case RegKind::Temp: return "temp";
  }
  return "unknown";
}

std::string arg_string(const EwArg& arg, int width) {
  return fmt::format("r{}[{}:{}]", arg.reg, arg.col, arg.col + width);
}

std::string instr_string(const EwInstr& in) {
  std::string s = fmt::format("{} {}", ew_op_name(in.op), arg_string(in.d, in.width));
  const int srcs = num_sources(in.op);
  if (srcs >= 1) s += fmt::format(", {}", arg_string(in.a, in.width));
  if (srcs >= 2) s += fmt::format(", {}", arg_string(in.b, in.width));
  if (in.op == EwOp::ScaleAddTo) s += fmt::format(", imm={}", in.imm);
  return s;
}

}  // namespace

int ew_num_sources(EwOp op) { return num_sources(op); }

// FNV-1a over everything that defines what the program computes.
static std::uint64_t content_hash(const FusedProgram& p) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  for (unsigned char c : p.name) mix(c);
  mix(p.regs.size());
  for (const EwReg& r : p.regs) {
    mix(static_cast<std::uint64_t>(r.kind));
    mix(static_cast<std::uint64_t>(r.width));
    mix(static_cast<std::uint64_t>(r.ext));
  }
  mix(p.code.size());
  for (const EwInstr& in : p.code) {
    mix(static_cast<std::uint64_t>(in.op));
    for (const EwArg* a : {&in.d, &in.a, &in.b}) {
      mix(static_cast<std::uint64_t>(a->reg));
      mix(static_cast<std::uint64_t>(a->col));
    }
    mix(static_cast<std::uint64_t>(in.width));
    std::uint32_t bits;
    std::memcpy(&bits, &in.imm, sizeof bits);
    mix(bits);
  }
  mix(static_cast<std::uint64_t>(p.num_inputs));
  mix(static_cast<std::uint64_t>(p.num_outputs));
  return h;
}

void FusedProgram::finalize() {
  const int nregs = static_cast<int>(regs.size());
  if (num_inputs < 0 || num_outputs < 0)
    fail("[fused] program '{}': negative input/output count ({}, {})", name, num_inputs,
         num_outputs);

  temp_offset.assign(regs.size(), -1);
  scratch_width = 0;
  for (int r = 0; r < nregs; ++r) {
    const EwReg& reg = regs[r];
    if (reg.width < 0) fail("[fused] program '{}': register r{} has width {}", name, r, reg.width);
    switch (reg.kind) {
      case RegKind::Input:
        if (reg.ext < 0 || reg.ext >= num_inputs)
          fail("[fused] program '{}': input register r{} names input {} of {}", name, r, reg.ext,
               num_inputs);
        break;
      case RegKind::Output:
        if (reg.ext < 0 || reg.ext >= num_outputs)
          fail("[fused] program '{}': output register r{} names output {} of {}", name, r,
               reg.ext, num_outputs);
        break;
      case RegKind::Temp:
        temp_offset[r] = scratch_width;
        scratch_width += reg.width;
        break;
      default:
        fail("[fused] program '{}': register r{} has an unknown kind", name, r);
    }
  }

  for (int i = 0; i < static_cast<int>(code.size()); ++i) {
    const EwInstr& in = code[i];
    const int srcs = num_sources(in.op);
    if (srcs < 0)
      fail("[fused] program '{}': instruction {} has unknown op {}", name, i,
           static_cast<int>(in.op));
    if (in.width < 0)
      fail("[fused] program '{}': instruction {} ({}): negative width", name, i,
           instr_string(in));
    auto check = [&](const EwArg& arg, const char* which) {
      if (arg.reg < 0 || arg.reg >= nregs)
        fail("[fused] program '{}': instruction {} ({}): operand {} names register r{} of {}",
             name, i, instr_string(in), which, arg.reg, nregs);
      const int reg_width = regs[arg.reg].width;
      if (arg.col < 0 || arg.col + in.width > reg_width)
        fail("[fused] program '{}': instruction {} ({}): operand {} columns [{}, {}) outside "
             "register r{} of width {}",
             name, i, instr_string(in), which, arg.col, arg.col + in.width, arg.reg, reg_width);
    };
    check(in.d, "d");
    if (regs[in.d.reg].kind == RegKind::Input)
      fail("[fused] program '{}': instruction {} ({}): writes input register r{}", name, i,
           instr_string(in), in.d.reg);
    const EwArg* sources[2] = {&in.a, &in.b};
    const char* names[2] = {"a", "b"};
    for (int s = 0; s < srcs; ++s) {
      const EwArg& src = *sources[s];
      check(src, names[s]);
      // The loops are elementwise: d may be a source exactly, but a shifted
      // overlap would make the result depend on the evaluation order.
      if (src.reg == in.d.reg && src.col != in.d.col &&
          src.col < in.d.col + in.width && in.d.col < src.col + in.width)
        fail("[fused] program '{}': instruction {} ({}): operand {} partially overlaps d", name,
             i, instr_string(in), names[s]);
    }
  }
  fingerprint = content_hash(*this);
}

std::string FusedProgram::to_string() const {
  std::string s = fmt::format("program '{}': {} inputs, {} outputs, {} registers, scratch {}\n",
                              name, num_inputs, num_outputs, regs.size(), scratch_width);
  for (std::size_t r = 0; r < regs.size(); ++r) {
    const EwReg& reg = regs[r];
    s += fmt::format("  r{}: {} width {}", r, kind_name(reg.kind), reg.width);
    if (reg.kind == RegKind::Temp) {
      if (r < temp_offset.size()) s += fmt::format(" at scratch {}", temp_offset[r]);
    } else {
      s += fmt::format(" ext {}", reg.ext);
    }
    s += "\n";
  }
  for (std::size_t i = 0; i < code.size(); ++i)
    s += fmt::format("  {:3}: {}\n", i, instr_string(code[i]));
  return s;
}

}  // namespace copse::ops
