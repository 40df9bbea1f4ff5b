// The CUDA backend's hand-written kernels (cuda/kernels.cu), behind plain
// launch functions so that the backend itself (cuda/cuda_backend.cpp) is
// ordinary C++. Every launcher queues its kernel on `stream` and returns
// cudaGetLastError(); the caller checks it. Pointers are device pointers
// unless a parameter says otherwise; matrices are row-major with an explicit
// leading dimension, as in ops/backend.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace copse::cuda::kernels {

// ---- rows ----
cudaError_t gather_rows(cudaStream_t s, int n, int width, const float* src, long ld_src,
                        const int* idx, float* dst, long ld_dst);
// atomicAdd per element: exact and order-independent when the indices of one
// call are distinct (trees), order-dependent in the last bits when they repeat.
cudaError_t scatter_add_rows(cudaStream_t s, int n, int width, const float* src, long ld_src,
                             const int* idx, float* dst, long ld_dst);
cudaError_t segment_sum(cudaStream_t s, int n, int width, const int* ptr, const float* src,
                        long ld_src, float* dst, long ld_dst, bool mean, bool accumulate);
cudaError_t copy_rows(cudaStream_t s, int rows, int width, const float* src, long ld_src,
                      float* dst, long ld_dst, bool accumulate);
cudaError_t fill_rows(cudaStream_t s, int rows, int width, float value, float* dst, long ld_dst);
cudaError_t scale_rows(cudaStream_t s, int rows, int width, const float* scale, float* x,
                       long ld);
// C = beta * C over [m, n] (beta == 0 writes zeros whatever C held).
cudaError_t scale_matrix(cudaStream_t s, int m, int n, float beta, float* c, long ldc);

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
cudaError_t gather_rows_batched(cudaStream_t s, const RowJobs& jobs);
cudaError_t scatter_add_rows_batched(cudaStream_t s, const RowJobs& jobs);

// ---- flat buffers ----
cudaError_t scale(cudaStream_t s, std::size_t n, float factor, float* x);
// Listed rows (rows in device memory) of a [*, width] matrix.
cudaError_t fill_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width, float value,
                             float* base);
cudaError_t scale_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width, float f,
                              float* base);

// ---- reductions: out[0] = result, in double; `partial` holds
// kReduceBlocks doubles. Deterministic: fixed grid, fixed tree order. ----
constexpr int kReduceBlocks = 256;
cudaError_t sum_squares(cudaStream_t s, std::size_t n, const float* x, double* partial,
                        double* out);
cudaError_t sum_squares_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width,
                                    const float* base, double* partial, double* out);

// Softmax cross-entropy (see Backend::softmax_xent). Writes per-row loss and
// hit into row_loss / row_hit, then totals into out[0] (loss) and out[1]
// (hits, as a double); pred (device, may be null) gets the argmax; *bad_label
// (device int) is set to 1 + row of the first label >= classes, if any.
cudaError_t softmax_xent(cudaStream_t s, int rows, int classes, const float* logits, long ld,
                         const int* labels, float scale, float* dlogits, long ld_d,
                         int* pred, double* row_loss, int* row_hit, double* out, int* bad_label);

// ---- optimizer updates (ops/optimizer_cpu.h for the math) ----
struct OptimizerParams {
  int kind;  // 0 SGD, 1 Adagrad, 2 Adam
  float lr, momentum, beta1, beta2, eps, l2;
  float c1, c2;  // Adam bias corrections 1 / (1 - beta^t)
};
cudaError_t optimizer_update(cudaStream_t s, const OptimizerParams& p, std::size_t n, float* w,
                             const float* g, float* s0, float* s1);
cudaError_t optimizer_update_rows(cudaStream_t s, const OptimizerParams& p, int n_rows,
                                  const int* rows, int width, float* w, const float* g,
                                  float* s0, float* s1);

// Non-finite checks of the updates above with the same arguments (write
// nothing): an element whose new parameter or state value would be inf or
// NaN lowers *first (device, ~0 when clear) to (tag << kNonFiniteTagShift) |
// its offset from w (rows: row * width + column).
constexpr int kNonFiniteTagShift = 40;
cudaError_t optimizer_check(cudaStream_t s, const OptimizerParams& p, std::size_t n,
                            const float* w, const float* g, const float* s0, const float* s1,
                            int tag, unsigned long long* first);
cudaError_t optimizer_check_rows(cudaStream_t s, const OptimizerParams& p, int n_rows,
                                 const int* rows, int width, const float* w, const float* g,
                                 const float* s0, const float* s1, int tag,
                                 unsigned long long* first);

// ---- fused programs: the generic interpreter ----
// A program in device memory: registers and instructions as plain ints.
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
// One warp per row, `warps` rows per block, scratch_width floats of dynamic
// shared memory per warp.
cudaError_t run_interpreter(cudaStream_t s, const FusedArgs& args, const DevReg* regs,
                            int num_regs, const DevInstr* code, int num_instr, int scratch_width,
                            int warps);
// Lets the interpreter use up to `bytes` of dynamic shared memory per block.
cudaError_t interpreter_allow_shared(int bytes);

}  // namespace copse::cuda::kernels
