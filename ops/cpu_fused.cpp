// CpuBackend::run_fused: a row interpreter for FusedProgram. Per row, the
// switch picks an instruction's loop once; the loop over its columns is
// plain elementwise code that GCC vectorizes, or for sigmoid and tanh an
// array kernel with AVX2 intrinsics (ops/fast_math_arrays.h). `ivdep` drops
// GCC's runtime alias checks: FusedProgram::finalize rejects operands that
// partly overlap the destination, and exact aliasing is safe for elementwise
// loops (and for the array kernels).
#include <omp.h>

#include <vector>

#include "common/error.h"
#include "ops/cpu_backend.h"
#include "ops/fast_math_arrays.h"

namespace copse::ops {

namespace {

// Runs one instruction on one row. base[r] is register r's first column in
// this row (Input registers are never written: FusedProgram::finalize checks).
template <typename T>
void exec_instr(const EwInstr& in, T* const* base) {
  const int w = in.width;
  T* d = base[in.d.reg] + in.d.col;
  // Operands a and b are only formed for the ops that read them.
  auto arg = [&](const EwArg& x) -> const T* { return base[x.reg] + x.col; };
  switch (in.op) {
    case EwOp::Copy: {
      const T* a = arg(in.a);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j];
      break;
    }
    case EwOp::Zero:
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = T(0);
      break;
    case EwOp::Add: {
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] + b[j];
      break;
    }
    case EwOp::Sub: {
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] - b[j];
      break;
    }
    case EwOp::Mul: {
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] * b[j];
      break;
    }
    case EwOp::Sigmoid:  // d = 1 / (1 + exp(-a))
      sigmoid_n(arg(in.a), d, w);
      break;
    case EwOp::Tanh:  // d = tanh(a)
      tanh_n(arg(in.a), d, w);
      break;
    case EwOp::Relu: {  // d = max(a, 0), NaN stays NaN
      const T* a = arg(in.a);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] < T(0) ? T(0) : a[j];
      break;
    }
    case EwOp::AddTo: {
      const T* a = arg(in.a);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += a[j];
      break;
    }
    case EwOp::SubTo: {
      const T* a = arg(in.a);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] -= a[j];
      break;
    }
    case EwOp::MulAddTo: {
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += a[j] * b[j];
      break;
    }
    case EwOp::SigmoidGradAddTo: {  // d += dy * y * (1 - y)
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += a[j] * b[j] * (T(1) - b[j]);
      break;
    }
    case EwOp::TanhGradAddTo: {  // d += dy * (1 - y^2)
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += a[j] * (T(1) - b[j] * b[j]);
      break;
    }
    case EwOp::ReluGradAddTo: {  // d += y > 0 ? dy : 0
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += b[j] > T(0) ? a[j] : T(0);
      break;
    }
    case EwOp::Neg: {  // d = -a
      const T* a = arg(in.a);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = -a[j];
      break;
    }
    case EwOp::SigmoidGrad: {  // d = dy * y * (1 - y)
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] * b[j] * (T(1) - b[j]);
      break;
    }
    case EwOp::TanhGrad: {  // d = dy * (1 - y^2)
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = a[j] * (T(1) - b[j] * b[j]);
      break;
    }
    case EwOp::ReluGrad: {  // d = y > 0 ? dy : 0
      const T *a = arg(in.a), *b = arg(in.b);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] = b[j] > T(0) ? a[j] : T(0);
      break;
    }
    case EwOp::ScaleAddTo: {  // d += imm * a
      const T* a = arg(in.a);
      const T s = static_cast<T>(in.imm);
      #pragma GCC ivdep
      for (int j = 0; j < w; ++j) d[j] += s * a[j];
      break;
    }
  }
}

}  // namespace

template <typename T>
void CpuBackend<T>::run_fused(const FusedProgram& prog, int rows, const RowView<const T>* inputs,
                              const RowView<T>* outputs) {
  COPSE_ASSERT(prog.temp_offset.size() == prog.regs.size());  // finalize() ran
  if (rows <= 0 || prog.code.empty()) return;
  const int nregs = static_cast<int>(prog.regs.size());
  std::size_t row_work = 0;
  for (const EwInstr& in : prog.code) row_work += static_cast<std::size_t>(in.width);
  const int nt = threads_for(static_cast<std::size_t>(rows) * row_work);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    // Per-thread scratch row and register table, kept across calls.
    thread_local std::vector<T> scratch;
    thread_local std::vector<T*> base;
    if (scratch.size() < static_cast<std::size_t>(prog.scratch_width))
      scratch.resize(prog.scratch_width);
    base.assign(nregs, nullptr);
    for (int r = 0; r < nregs; ++r)
      if (prog.regs[r].kind == RegKind::Temp) base[r] = scratch.data() + prog.temp_offset[r];

#pragma omp for schedule(static)
    for (int row = 0; row < rows; ++row) {
      for (int r = 0; r < nregs; ++r) {
        const EwReg& reg = prog.regs[r];
        if (reg.kind == RegKind::Input)
          base[r] = const_cast<T*>(inputs[reg.ext].ptr) + row * inputs[reg.ext].ld;
        else if (reg.kind == RegKind::Output)
          base[r] = outputs[reg.ext].ptr + row * outputs[reg.ext].ld;
      }
      for (const EwInstr& in : prog.code) exec_instr(in, base.data());
    }
  }
}

template void CpuBackend<float>::run_fused(const FusedProgram&, int, const RowView<const float>*,
                                           const RowView<float>*);
template void CpuBackend<double>::run_fused(const FusedProgram&, int,
                                            const RowView<const double>*,
                                            const RowView<double>*);

}  // namespace copse::ops
