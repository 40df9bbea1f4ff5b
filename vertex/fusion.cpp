// Region -> FusedProgram (forward) and its adjoint program (backward).
//
// The backward program recomputes the region's forward values in scratch
// registers (cheaper than saving them), seeds the gradients of the region's
// outputs, then walks the forward instructions in reverse:
//   d = a + b : da += dd, db += dd         d = a * b : da += dd*b, db += dd*a
//   d = sig(a): da += dd*d*(1-d)           d = tanh(a): da += dd*(1-d*d)
//   d = relu(a): da += d > 0 ? dd : 0      d = copy(a) (concat part): da += dd
#include "vertex/fusion.h"

#include <map>

#include <fmt/format.h>

#include "common/error.h"
#include "ops/fused_optimize.h"

namespace copse::vertex {

using ops::EwArg;
using ops::EwInstr;
using ops::EwOp;
using ops::EwReg;
using ops::FusedProgram;
using ops::RegKind;

namespace {

int add_reg(FusedProgram& p, RegKind kind, int width, int ext) {
  EwReg r;
  r.kind = kind;
  r.width = width;
  r.ext = ext;
  p.regs.push_back(r);
  return static_cast<int>(p.regs.size()) - 1;
}

void emit(FusedProgram& p, EwOp op, EwArg d, EwArg a, EwArg b, int width) {
  p.code.push_back(ops::make_instr(op, d, a, b, width));
}

}  // namespace

void build_region_programs(Region& region, const VertexFunction& fn, const ExecPlan& plan,
                           size_t region_index, bool optimize) {
  const auto& nodes = fn.nodes;
  const int nin = static_cast<int>(region.inputs.size());
  std::map<int, int> out_index;  // node -> output index
  for (size_t k = 0; k < region.outputs.size(); ++k) out_index[region.outputs[k]] = static_cast<int>(k);
  (void)plan;

  // ---- forward -----------------------------------------------------------
  FusedProgram& f = region.fwd;
  f = FusedProgram();
  f.name = fmt::format("{}/region{}/fwd", fn.name, region_index);
  f.num_inputs = nin;
  f.num_outputs = static_cast<int>(region.outputs.size());
  std::map<int, EwArg> arg;  // node -> where its value is
  for (int i = 0; i < nin; ++i)
    arg[region.inputs[i]] = {add_reg(f, RegKind::Input, nodes[region.inputs[i]].width, i), 0};
  std::vector<int> fwd_reg_of_node;  // regs created for region nodes, in order
  for (int i : region.nodes) {
    const Node& nd = nodes[i];
    auto it = out_index.find(i);
    bool is_out = it != out_index.end();
    if (nd.op == Op::Slice && !is_out) {
      EwArg a = arg.at(nd.in[0]);
      arg[i] = {a.reg, a.col + nd.offset};
      continue;
    }
    int r = add_reg(f, is_out ? RegKind::Output : RegKind::Temp, nd.width, is_out ? it->second : -1);
    EwArg d{r, 0};
    arg[i] = d;
    switch (nd.op) {
      case Op::Add: emit(f, EwOp::Add, d, arg.at(nd.in[0]), arg.at(nd.in[1]), nd.width); break;
      case Op::Sub: emit(f, EwOp::Sub, d, arg.at(nd.in[0]), arg.at(nd.in[1]), nd.width); break;
      case Op::Mul: emit(f, EwOp::Mul, d, arg.at(nd.in[0]), arg.at(nd.in[1]), nd.width); break;
      case Op::Sigmoid: emit(f, EwOp::Sigmoid, d, arg.at(nd.in[0]), {}, nd.width); break;
      case Op::Tanh: emit(f, EwOp::Tanh, d, arg.at(nd.in[0]), {}, nd.width); break;
      case Op::Relu: emit(f, EwOp::Relu, d, arg.at(nd.in[0]), {}, nd.width); break;
      case Op::Slice: {
        EwArg a = arg.at(nd.in[0]);
        emit(f, EwOp::Copy, d, {a.reg, a.col + nd.offset}, {}, nd.width);
        break;
      }
      case Op::Concat: {
        int col = 0;
        for (int j : nd.in) {
          emit(f, EwOp::Copy, {r, col}, arg.at(j), {}, nodes[j].width);
          col += nodes[j].width;
        }
        break;
      }
      default:
        throw InternalError(fmt::format("{}: not elementwise", fn.describe(i)));
    }
  }
  f.finalize();

  // ---- backward ----------------------------------------------------------
  FusedProgram& b = region.bwd;
  b = FusedProgram();
  b.name = fmt::format("{}/region{}/bwd", fn.name, region_index);
  b.num_inputs = nin + static_cast<int>(region.outputs.size());
  b.num_outputs = nin;
  // Forward registers: inputs stay inputs, everything else is recomputed in scratch.
  std::vector<int> fmap(f.regs.size());
  for (size_t r = 0; r < f.regs.size(); ++r) {
    const EwReg& fr = f.regs[r];
    fmap[r] = fr.kind == RegKind::Input ? add_reg(b, RegKind::Input, fr.width, fr.ext)
                                        : add_reg(b, RegKind::Temp, fr.width, -1);
  }
  auto fwd_arg = [&](EwArg a) { return EwArg{a.reg < 0 ? -1 : fmap[a.reg], a.col}; };
  for (const EwInstr& in : f.code) {
    EwInstr c = in;
    c.d = fwd_arg(in.d);
    c.a = fwd_arg(in.a);
    c.b = in.b.reg < 0 ? in.b : fwd_arg(in.b);
    b.code.push_back(c);
  }
  // Gradient registers mirror the forward registers: input gradients are the
  // program's outputs, the others scratch. `written` tracks, per gradient
  // column, whether it holds a value yet: the first contribution assigns
  // (no zero fill), later ones add, and an adjoint whose incoming gradient was
  // never written is skipped (its contribution is zero).
  std::vector<int> gmap(f.regs.size(), -1);
  std::vector<std::vector<char>> written(f.regs.size());
  for (size_t r = 0; r < f.regs.size(); ++r) {
    const EwReg& fr = f.regs[r];
    written[r].assign(fr.width, 0);
    if (fr.kind == RegKind::Input) {
      gmap[r] = add_reg(b, RegKind::Output, fr.width, fr.ext);
      if (region.input_grad_accumulate.at(fr.ext)) written[r].assign(fr.width, 1);
    } else {
      gmap[r] = add_reg(b, RegKind::Temp, fr.width, -1);
      if (fr.kind == RegKind::Output) {
        int dout = add_reg(b, RegKind::Input, fr.width, nin + fr.ext);
        emit(b, EwOp::Copy, {gmap[r], 0}, {dout, 0}, {}, fr.width);
        written[r].assign(fr.width, 1);
      }
    }
  }
  auto g = [&](EwArg a) { return EwArg{gmap[a.reg], a.col}; };
  auto v = [&](EwArg a) { return fwd_arg(a); };
  // State of forward columns [a.col, a.col+w): 0 none written, 1 all, 2 some.
  auto state = [&](EwArg a, int w) {
    int n = 0;
    for (int j = 0; j < w; ++j) n += written[a.reg][a.col + j];
    return n == 0 ? 0 : n == w ? 1 : 2;
  };
  auto zero_unwritten = [&](EwArg a, int w) {
    for (int j = 0; j < w;) {
      if (written[a.reg][a.col + j]) {
        ++j;
        continue;
      }
      int k = j;
      while (k < w && !written[a.reg][a.col + k]) ++k;
      emit(b, EwOp::Zero, {gmap[a.reg], a.col + j}, {}, {}, k - j);
      for (int q = j; q < k; ++q) written[a.reg][a.col + q] = 1;
      j = k;
    }
  };
  // Emits d(target) (+)= op(src...) choosing the assigning form when target is
  // still unwritten. `acc` and `assign` are the two forms of the op.
  auto contribute = [&](EwArg target, EwOp acc, EwOp assign, EwArg a, EwArg bb, int w) {
    int st = state(target, w);
    if (st == 2) zero_unwritten(target, w), st = 1;
    emit(b, st == 0 ? assign : acc, g(target), a, bb, w);
    for (int j = 0; j < w; ++j) written[target.reg][target.col + j] = 1;
  };
  for (auto it = f.code.rbegin(); it != f.code.rend(); ++it) {
    const EwInstr& in = *it;
    const int w = in.width;
    int st = state(in.d, w);
    if (st == 0) continue;  // nothing flows back through this value
    if (st == 2) zero_unwritten(in.d, w);
    const EwArg gd = g(in.d);
    switch (in.op) {
      case EwOp::Copy: contribute(in.a, EwOp::AddTo, EwOp::Copy, gd, {}, w); break;
      case EwOp::Add:
        contribute(in.a, EwOp::AddTo, EwOp::Copy, gd, {}, w);
        contribute(in.b, EwOp::AddTo, EwOp::Copy, gd, {}, w);
        break;
      case EwOp::Sub:
        contribute(in.a, EwOp::AddTo, EwOp::Copy, gd, {}, w);
        contribute(in.b, EwOp::SubTo, EwOp::Neg, gd, {}, w);
        break;
      case EwOp::Mul:
        contribute(in.a, EwOp::MulAddTo, EwOp::Mul, gd, v(in.b), w);
        contribute(in.b, EwOp::MulAddTo, EwOp::Mul, gd, v(in.a), w);
        break;
      case EwOp::Sigmoid:
        contribute(in.a, EwOp::SigmoidGradAddTo, EwOp::SigmoidGrad, gd, v(in.d), w);
        break;
      case EwOp::Tanh: contribute(in.a, EwOp::TanhGradAddTo, EwOp::TanhGrad, gd, v(in.d), w); break;
      case EwOp::Relu: contribute(in.a, EwOp::ReluGradAddTo, EwOp::ReluGrad, gd, v(in.d), w); break;
      default:
        throw InternalError(fmt::format("{}: no adjoint for {}", b.name, ops::ew_op_name(in.op)));
    }
  }
  // Input gradients nobody contributed to are zero.
  for (size_t r = 0; r < f.regs.size(); ++r)
    if (f.regs[r].kind == RegKind::Input) zero_unwritten({static_cast<int>(r), 0}, f.regs[r].width);
  b.finalize();
  if (optimize) {
    ops::optimize_fused(f);
    ops::optimize_fused(b);
  }
}

}  // namespace copse::vertex
