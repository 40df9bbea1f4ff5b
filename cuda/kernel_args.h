// The argument structs and constants of the CUDA kernels (cuda/kernels.h),
// free of CUDA headers: the fused-kernel generator and the host emulator
// (cuda/host_emu/) use them without the CUDA toolkit.
#pragma once

namespace copse::cuda::kernels {

// Up to kMaxRowJobs gathers or scatter-adds in one launch (blockIdx.y = job).
constexpr int kMaxRowJobs = 8;
struct RowJob {
  int n, width;
  const float* src;
  long long ld_src;
  const int* idx;
  float* dst;
  long long ld_dst;
};
struct RowJobs {
  int count, max_rows;
  RowJob job[kMaxRowJobs];
};

// Reductions write kReduceBlocks partial sums (doubles), then the result.
constexpr int kReduceBlocks = 256;

// Optimizer updates (ops/optimizer_cpu.h for the math).
struct OptimizerParams {
  int kind;  // 0 SGD, 1 Adagrad, 2 Adam
  float lr, momentum, beta1, beta2, eps, l2;
  float c1, c2;  // Adam bias corrections 1 / (1 - beta^t)
};

// The optimizer checks report the first bad element as
// (tag << kNonFiniteTagShift) | offset (cuda/kernel_launchers.inc).
constexpr int kNonFiniteTagShift = 40;

// ---- fused programs ----
// A program in device memory for the interpreter: registers and
// instructions as plain ints.
struct DevReg {
  int kind;  // 0 input, 1 output, 2 temp
  int ext;   // index into the call's views (inputs first, then outputs)
  int temp_offset;
};
struct DevInstr {
  int op, d_reg, d_col, a_reg, a_col, b_reg, b_col, width;
  float imm;
};
constexpr int kMaxViews = 64;
struct View {
  float* p;
  long long ld;
};
// Views: inputs [0, num_inputs), outputs after them.
struct FusedArgs {
  int rows;
  int pad;
  View v[kMaxViews];
};

}  // namespace copse::cuda::kernels
