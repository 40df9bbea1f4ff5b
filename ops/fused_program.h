// FusedProgram: a row-wise elementwise program, the unit of kernel fusion.
//
// The compiler (vertex/) turns each maximal elementwise region of a vertex
// function, and its derived backward, into one FusedProgram. A backend runs a
// program over a range of rows: for every row, each instruction reads and
// writes `width` contiguous columns of registers. Input registers alias rows
// of external buffers (read-only), output registers alias rows of external
// buffers (written), the rest are per-row scratch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace copse::ops {

// The elementwise instructions of a fused program (per row, per column).
enum class EwOp : std::uint8_t {
  Copy,         // d = a
  Zero,         // d = 0
  Add,          // d = a + b
  Sub,          // d = a - b
  Mul,          // d = a * b
  Sigmoid,      // d = 1 / (1 + exp(-a))
  Tanh,         // d = tanh(a)
  Relu,         // d = max(a, 0)
  AddTo,        // d += a
  SubTo,        // d -= a
  MulAddTo,     // d += a * b
  SigmoidGradAddTo,  // d += a * b * (1 - b)   (a = dy, b = y = sigmoid(x))
  TanhGradAddTo,     // d += a * (1 - b * b)   (a = dy, b = y = tanh(x))
  ReluGradAddTo,     // d += b > 0 ? a : 0     (a = dy, b = y = relu(x))
  ScaleAddTo,        // d += imm * a
  Neg,               // d = -a
  SigmoidGrad,       // d = a * b * (1 - b)   (first contribution: no zero fill)
  TanhGrad,          // d = a * (1 - b * b)
  ReluGrad,          // d = b > 0 ? a : 0
};

// The op's lower-case name, for to_string() and messages.
const char* ew_op_name(EwOp op);
// How many of the operands a, b the op reads (0, 1 or 2; -1 for an unknown op).
int ew_num_sources(EwOp op);

// An operand: register `reg`, starting at column `col`.
struct EwArg {
  int reg = -1;  // index into FusedProgram::regs, -1: unused
  int col = 0;   // first column in it
};

// One instruction: `op` over `width` columns of its operands.
struct EwInstr {
  EwOp op = EwOp::Copy;  // what it computes
  EwArg d;               // the destination
  EwArg a;               // the first source
  EwArg b;               // the second source
  int width = 0;         // columns
  float imm = 0.f;       // ScaleAddTo's constant
};

// An instruction from its fields.
inline EwInstr make_instr(EwOp op, EwArg d, EwArg a = {}, EwArg b = {}, int width = 0,
                          float imm = 0.f) {
  EwInstr in;
  in.op = op;
  in.d = d;
  in.a = a;
  in.b = b;
  in.width = width;
  in.imm = imm;
  return in;
}

// Where a register lives: a call's input rows, its output rows, or scratch.
enum class RegKind : std::uint8_t { Input, Output, Temp };

// A register of a fused program: a row of `width` columns.
struct EwReg {
  RegKind kind = RegKind::Temp;  // input, output or scratch
  int width = 0;                 // columns
  int ext = -1;  // index into the inputs (Input) or outputs (Output) of a call
};

// A straight-line elementwise program run on every row of a call
// (Backend::run_fused): the fused regions of a compiled vertex function.
struct FusedProgram {
  std::string name;            // for profiles and errors ("tree_lstm/region0/fwd")
  std::vector<EwReg> regs;     // its registers
  std::vector<EwInstr> code;   // its instructions, in order
  int num_inputs = 0;          // input row views a call passes
  int num_outputs = 0;         // output row views a call passes
  int scratch_width = 0;       // sum of Temp register widths (floats per row)
  std::vector<int> temp_offset;  // per register: column of a Temp in the scratch row, else -1
  std::uint64_t fingerprint = 0;  // hash of the content (backends key kernel caches by it)

  // Fills scratch_width, temp_offset and fingerprint; checks operands are in range.
  void finalize();
  // The program, readable, for debugging and tests.
  std::string to_string() const;
};

// A strided view of rows: row r of the view starts at ptr + r * ld.
// ld == 0 broadcasts one row to every row (a bias vector).
template <typename T>
struct RowView {
  T* ptr = nullptr;  // row 0
  long ld = 0;       // elements between rows (0: a broadcast row)
};

}  // namespace copse::ops
