// The CUDA backend's hand-written kernels and their launchers (declared in
// cuda/kernel_launchers.inc), written once for two compilers: nvcc builds
// them for the GPU (cuda/kernels.cu), the host compiler with the host
// emulator's prelude (cuda/host_emu/host_kernels.cpp), so that every kernel
// runs and is checked on the CPU with the grids and blocks computed here.
// The includer opens the namespace and defines COPSE_LAUNCH(kernel, grid,
// block, dynamic shared bytes, stream)(args...).
//
// Row kernels map one warp to one row and the warp's lanes to columns:
// the rows of this runtime are 100 to 1,000 floats wide, so a warp streams a
// row with coalesced accesses and a block of 8 warps covers 8 rows.

constexpr int kWarps = 8;  // warps (rows) per block of the row kernels
constexpr int kThreads = kWarps * 32;

inline int blocks_for_rows(long rows) { return static_cast<int>((rows + kWarps - 1) / kWarps); }
inline int blocks_for(std::size_t n, int threads) {
  std::size_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 65535u * 16u ? b : 65535u * 16u);
}

namespace {

__device__ inline int warp_row() { return blockIdx.x * kWarps + (threadIdx.x >> 5); }
__device__ inline int lane() { return threadIdx.x & 31; }

__global__ void gather_rows_k(int n, int width, const float* __restrict__ src, long ld_src,
                              const int* __restrict__ idx, float* __restrict__ dst, long ld_dst) {
  const int r = warp_row();
  if (r >= n) return;
  const int i = idx[r];
  float* d = dst + r * ld_dst;
  if (i < 0) {
    for (int j = lane(); j < width; j += 32) d[j] = 0.f;
  } else {
    const float* s = src + i * ld_src;
    for (int j = lane(); j < width; j += 32) d[j] = s[j];
  }
}

__global__ void scatter_add_rows_k(int n, int width, const float* __restrict__ src, long ld_src,
                                   const int* __restrict__ idx, float* dst, long ld_dst) {
  const int r = warp_row();
  if (r >= n) return;
  const int i = idx[r];
  if (i < 0) return;
  const float* s = src + r * ld_src;
  float* d = dst + i * ld_dst;
  for (int j = lane(); j < width; j += 32) atomicAdd(d + j, s[j]);
}

__global__ void gather_rows_batched_k(RowJobs jobs) {
  const RowJob& j = jobs.job[blockIdx.y];
  const int r = warp_row();
  if (r >= j.n) return;
  const int i = j.idx[r];
  float* d = j.dst + r * j.ld_dst;
  if (i < 0) {
    for (int c = lane(); c < j.width; c += 32) d[c] = 0.f;
  } else {
    const float* s = j.src + i * j.ld_src;
    for (int c = lane(); c < j.width; c += 32) d[c] = s[c];
  }
}

__global__ void scatter_add_rows_batched_k(RowJobs jobs) {
  const RowJob& j = jobs.job[blockIdx.y];
  const int r = warp_row();
  if (r >= j.n) return;
  const int i = j.idx[r];
  if (i < 0) return;
  const float* s = j.src + r * j.ld_src;
  float* d = j.dst + i * j.ld_dst;
  for (int c = lane(); c < j.width; c += 32) atomicAdd(d + c, s[c]);
}

__global__ void segment_sum_k(int n, int width, const int* __restrict__ ptr,
                              const float* __restrict__ src, long ld_src, float* dst, long ld_dst,
                              bool mean, bool accumulate) {
  const int r = warp_row();
  if (r >= n) return;
  const int base = ptr[0];
  const int e0 = ptr[r] - base, e1 = ptr[r + 1] - base;
  const float scale = (mean && e1 > e0) ? 1.f / static_cast<float>(e1 - e0) : 1.f;
  float* d = dst + r * ld_dst;
  for (int j = lane(); j < width; j += 32) {
    float acc = accumulate ? d[j] : 0.f;
    for (int e = e0; e < e1; ++e) acc += scale * src[e * ld_src + j];
    d[j] = acc;
  }
}

__global__ void copy_rows_k(int rows, int width, const float* src, long ld_src, float* dst,
                            long ld_dst, bool accumulate) {
  const int r = warp_row();
  if (r >= rows) return;
  const float* s = src + r * ld_src;
  float* d = dst + r * ld_dst;
  if (accumulate)
    for (int j = lane(); j < width; j += 32) d[j] += s[j];
  else
    for (int j = lane(); j < width; j += 32) d[j] = s[j];
}

__global__ void fill_flat_k(std::size_t n, float value, float* dst) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dst[i] = value;
}

__global__ void copy_flat_k(std::size_t n, const float* src, float* dst, bool accumulate) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dst[i] = accumulate ? dst[i] + src[i] : src[i];
}

__global__ void fill_rows_k(int rows, int width, float value, float* dst, long ld_dst) {
  const int r = warp_row();
  if (r >= rows) return;
  float* d = dst + r * ld_dst;
  for (int j = lane(); j < width; j += 32) d[j] = value;
}

__global__ void scale_matrix_k(int m, int n, float beta, float* c, long ldc) {
  const int r = warp_row();
  if (r >= m) return;
  float* d = c + r * ldc;
  for (int j = lane(); j < n; j += 32) d[j] = beta == 0.f ? 0.f : beta * d[j];
}

__global__ void scale_rows_k(int rows, int width, const float* __restrict__ scale, float* x,
                             long ld) {
  const int r = warp_row();
  if (r >= rows) return;
  const float s = scale[r];
  float* d = x + r * ld;
  for (int j = lane(); j < width; j += 32) d[j] *= s;
}

__global__ void scale_k(std::size_t n, float f, float* x) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    x[i] *= f;
}

__global__ void fill_listed_rows_k(int n_rows, const int* __restrict__ rows, int width, float value,
                                   float* base) {
  const int r = warp_row();
  if (r >= n_rows) return;
  float* d = base + static_cast<long>(rows[r]) * width;
  for (int j = lane(); j < width; j += 32) d[j] = value;
}

__global__ void scale_listed_rows_k(int n_rows, const int* __restrict__ rows, int width, float f,
                                    float* base) {
  const int r = warp_row();
  if (r >= n_rows) return;
  float* d = base + static_cast<long>(rows[r]) * width;
  for (int j = lane(); j < width; j += 32) d[j] *= f;
}

// ---- reductions ----

// The sum over a warp by butterfly: every lane ends with the same total,
// added in a fixed order.
__device__ inline double warp_sum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The sum over a block of kThreads threads, all of which call it: the warps'
// sums, then warp 0 adds the kWarps of them. `tmp` is kWarps doubles of
// shared memory. The result is valid in thread 0; tmp may be reused after.
__device__ inline double block_sum(double v, double* tmp) {
  v = warp_sum(v);
  if (lane() == 0) tmp[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0;
  if (threadIdx.x < 32)
    s = warp_sum(static_cast<int>(threadIdx.x) < kWarps ? tmp[threadIdx.x] : 0.0);
  __syncthreads();
  return s;
}

// The reductions' shared memory: kWarps doubles, dynamic (kReduceSmem bytes).
constexpr std::size_t kReduceSmem = kWarps * sizeof(double);
__device__ inline double* reduce_tmp() {
  extern __shared__ float smem[];
  return reinterpret_cast<double*>(smem);
}

// partial[b] = sum of squares over the elements block b strides over.
__global__ void sum_squares_k(std::size_t n, const float* __restrict__ x, double* partial) {
  double* tmp = reduce_tmp();
  double acc = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * kThreads) {
    const double v = x[i];
    acc += v * v;
  }
  const double s = block_sum(acc, tmp);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_squares_listed_k(int n_rows, const int* __restrict__ rows, int width,
                                     const float* __restrict__ base, double* partial) {
  double* tmp = reduce_tmp();
  double acc = 0;
  const long total = static_cast<long>(n_rows) * width;
  for (long i = blockIdx.x * static_cast<long>(kThreads) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * kThreads) {
    const long r = i / width, c = i % width;
    const double v = base[static_cast<long>(rows[r]) * width + c];
    acc += v * v;
  }
  const double s = block_sum(acc, tmp);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[k] = sum of partial[k * stride + b] over b < count, for k < outs.
__global__ void finish_sum_k(const double* __restrict__ partial, int count, double* out) {
  double* tmp = reduce_tmp();
  double acc = 0;
  for (int b = threadIdx.x; b < count; b += kThreads) acc += partial[b];
  const double s = block_sum(acc, tmp);
  if (threadIdx.x == 0) out[0] = s;
}

// One block: *bad_label = the lowest row whose label is >= classes, INT_MAX
// when there is none (the block's minimum, from INT_MAX; no reset needed).
__global__ void softmax_labels_k(int rows, int classes, const int* __restrict__ labels,
                                 int* bad_label) {
  extern __shared__ float smem[];
  int* lowest = reinterpret_cast<int*>(smem);
  if (threadIdx.x == 0) *lowest = INT_MAX;
  __syncthreads();
  for (int r = threadIdx.x; r < rows; r += kThreads)
    if (labels[r] >= classes) {
      atomicMin(lowest, r);
      break;  // this thread's later rows are higher
    }
  __syncthreads();
  if (threadIdx.x == 0) *bad_label = *lowest;
}

// One warp per row: max, argmax (first maximum), sum of exp, loss, gradient.
// Writes nothing when softmax_labels_k found a bad label (as the CPU backend,
// which checks the labels before it writes).
__global__ void softmax_xent_k(int rows, int classes, const float* __restrict__ logits, long ld,
                               const int* __restrict__ labels, float scale, float* dlogits,
                               long ld_d, int* pred, double* row_loss, int* row_hit,
                               const int* __restrict__ bad_label) {
  const int r = warp_row();
  if (r >= rows || *bad_label != INT_MAX) return;
  const float* x = logits + r * ld;
  float best = -INFINITY;
  int arg = classes;
  for (int j = lane(); j < classes; j += 32)
    if (x[j] > best || arg == classes) best = x[j], arg = j;
  for (int off = 16; off > 0; off >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, off);
    const int oa = __shfl_xor_sync(0xffffffffu, arg, off);
    if (ob > best || (ob == best && oa < arg)) best = ob, arg = oa;
  }
  if (classes == 0) arg = -1;
  if (pred && lane() == 0) pred[r] = arg;
  const int label = labels[r];
  float* d = dlogits ? dlogits + r * ld_d : nullptr;
  if (label < 0) {
    if (d)
      for (int j = lane(); j < classes; j += 32) d[j] = 0.f;
    if (lane() == 0) row_loss[r] = 0, row_hit[r] = 0;
    return;
  }
  double s = 0;
  for (int j = lane(); j < classes; j += 32) s += exp(static_cast<double>(x[j] - best));
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (d) {
    const float inv = static_cast<float>(static_cast<double>(scale) / s);
    for (int j = lane(); j < classes; j += 32) {
      const float e = static_cast<float>(exp(static_cast<double>(x[j] - best)));
      d[j] = e * inv - (j == label ? scale : 0.f);
    }
  }
  if (lane() == 0) {
    row_loss[r] = static_cast<double>(best) + log(s) - static_cast<double>(x[label]);
    row_hit[r] = arg == label;
  }
}

__global__ void softmax_finish_k(int rows, const double* __restrict__ row_loss,
                                 const int* __restrict__ row_hit, double* out) {
  double* tmp = reduce_tmp();
  double loss = 0, hits = 0;
  for (int r = threadIdx.x; r < rows; r += kThreads) loss += row_loss[r], hits += row_hit[r];
  const double sl = block_sum(loss, tmp);
  const double sh = block_sum(hits, tmp);
  if (threadIdx.x == 0) out[0] = sl, out[1] = sh;
}

// ---- optimizers ----

// The rule on one element's values, in place: shared by the update and its
// non-finite check, so that the check sees what the update would write.
__device__ inline void rule(const OptimizerParams& p, float& w, float g, float& s0, float& s1) {
  const float gi = g + p.l2 * w;
  switch (p.kind) {
    case 0:
      if (p.momentum == 0.f) {
        w -= p.lr * gi;
      } else {
        s0 = p.momentum * s0 + gi;
        w -= p.lr * s0;
      }
      break;
    case 1:
      s0 += gi * gi;
      w -= p.lr * gi / (sqrtf(s0) + p.eps);
      break;
    default:
      s0 = p.beta1 * s0 + (1.f - p.beta1) * gi;
      s1 = p.beta2 * s1 + (1.f - p.beta2) * gi * gi;
      w -= p.lr * (s0 * p.c1) / (sqrtf(s1 * p.c2) + p.eps);
      break;
  }
}

__device__ inline void update_one(const OptimizerParams& p, float* w, const float* g, float* s0,
                                  float* s1, long i) {
  float wi = w[i], a = s0 ? s0[i] : 0.f, b = s1 ? s1[i] : 0.f;
  rule(p, wi, g[i], a, b);
  w[i] = wi;
  if (s0) s0[i] = a;
  if (s1) s1[i] = b;
}

// Whether the update of element i would write an inf or NaN (parameter or state).
__device__ inline bool nonfinite_one(const OptimizerParams& p, const float* w, const float* g,
                                     const float* s0, const float* s1, long i) {
  float wi = w[i], a = s0 ? s0[i] : 0.f, b = s1 ? s1[i] : 0.f;
  rule(p, wi, g[i], a, b);
  return !isfinite(wi) || !isfinite(a) || !isfinite(b);
}

__global__ void optimizer_k(OptimizerParams p, std::size_t n, float* w, const float* g, float* s0,
                            float* s1) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    update_one(p, w, g, s0, s1, static_cast<long>(i));
}

__global__ void optimizer_rows_k(OptimizerParams p, int n_rows, const int* __restrict__ rows,
                                 int width, float* w, const float* g, float* s0, float* s1) {
  const int r = warp_row();
  if (r >= n_rows) return;
  const long o = static_cast<long>(rows[r]) * width;
  for (int j = lane(); j < width; j += 32) update_one(p, w, g, s0, s1, o + j);
}

// The checks lower *first to (tag << kNonFiniteTagShift) | offset from w of a
// bad element.
__global__ void optimizer_check_k(OptimizerParams p, std::size_t n, const float* w, const float* g,
                                  const float* s0, const float* s1, unsigned long long tag,
                                  unsigned long long* first) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    if (nonfinite_one(p, w, g, s0, s1, static_cast<long>(i))) atomicMin(first, tag | i);
}

__global__ void optimizer_check_rows_k(OptimizerParams p, int n_rows, const int* __restrict__ rows,
                                       int width, const float* w, const float* g, const float* s0,
                                       const float* s1, unsigned long long tag,
                                       unsigned long long* first) {
  const int r = warp_row();
  if (r >= n_rows) return;
  const long o = static_cast<long>(rows[r]) * width;
  for (int j = lane(); j < width; j += 32)
    if (nonfinite_one(p, w, g, s0, s1, o + j))
      atomicMin(first, tag | static_cast<unsigned long long>(o + j));
}

// ---- the fused-program interpreter ----

__device__ inline float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

__global__ void interpreter_k(FusedArgs args, const DevReg* __restrict__ regs,
                              const DevInstr* __restrict__ code, int num_instr, int scratch_width) {
  extern __shared__ float smem[];
  const int warps = blockDim.x >> 5;
  const int w = threadIdx.x >> 5, ln = threadIdx.x & 31;
  const int row = blockIdx.x * warps + w;
  if (row >= args.rows) return;
  float* scratch = smem + static_cast<long>(w) * scratch_width;
  auto base = [&](int reg) -> float* {
    const DevReg& rg = regs[reg];
    if (rg.kind == 2) return scratch + rg.temp_offset;
    const View& v = args.v[rg.ext];
    return v.p + static_cast<long long>(row) * v.ld;
  };
  using copse::ops::EwOp;
  for (int k = 0; k < num_instr; ++k) {
    const DevInstr in = code[k];
    float* d = base(in.d_reg) + in.d_col;
    const float* a = in.a_reg >= 0 ? base(in.a_reg) + in.a_col : nullptr;
    const float* b = in.b_reg >= 0 ? base(in.b_reg) + in.b_col : nullptr;
    for (int j = ln; j < in.width; j += 32) {
      switch (static_cast<EwOp>(in.op)) {
        case EwOp::Copy:
          d[j] = a[j];
          break;
        case EwOp::Zero:
          d[j] = 0.f;
          break;
        case EwOp::Add:
          d[j] = a[j] + b[j];
          break;
        case EwOp::Sub:
          d[j] = a[j] - b[j];
          break;
        case EwOp::Mul:
          d[j] = a[j] * b[j];
          break;
        case EwOp::Sigmoid:
          d[j] = sigmoidf_(a[j]);
          break;
        case EwOp::Tanh:
          d[j] = tanhf(a[j]);
          break;
        case EwOp::Relu:
          d[j] = a[j] < 0.f ? 0.f : a[j];
          break;
        case EwOp::AddTo:
          d[j] += a[j];
          break;
        case EwOp::SubTo:
          d[j] -= a[j];
          break;
        case EwOp::MulAddTo:
          d[j] += a[j] * b[j];
          break;
        case EwOp::SigmoidGradAddTo:
          d[j] += a[j] * b[j] * (1.f - b[j]);
          break;
        case EwOp::TanhGradAddTo:
          d[j] += a[j] * (1.f - b[j] * b[j]);
          break;
        case EwOp::ReluGradAddTo:
          d[j] += b[j] > 0.f ? a[j] : 0.f;
          break;
        case EwOp::ScaleAddTo:
          d[j] += in.imm * a[j];
          break;
        case EwOp::Neg:
          d[j] = -a[j];
          break;
        case EwOp::SigmoidGrad:
          d[j] = a[j] * b[j] * (1.f - b[j]);
          break;
        case EwOp::TanhGrad:
          d[j] = a[j] * (1.f - b[j] * b[j]);
          break;
        case EwOp::ReluGrad:
          d[j] = b[j] > 0.f ? a[j] : 0.f;
          break;
      }
    }
    __syncwarp();
  }
}

}  // namespace

cudaError_t gather_rows(cudaStream_t s, int n, int width, const float* src, long ld_src,
                        const int* idx, float* dst, long ld_dst) {
  COPSE_LAUNCH(gather_rows_k, blocks_for_rows(n), kThreads, 0, s)
  (n, width, src, ld_src, idx, dst, ld_dst);
  return cudaGetLastError();
}

cudaError_t scatter_add_rows(cudaStream_t s, int n, int width, const float* src, long ld_src,
                             const int* idx, float* dst, long ld_dst) {
  COPSE_LAUNCH(scatter_add_rows_k, blocks_for_rows(n), kThreads, 0, s)
  (n, width, src, ld_src, idx, dst, ld_dst);
  return cudaGetLastError();
}

cudaError_t gather_rows_batched(cudaStream_t s, const RowJobs& jobs) {
  const dim3 grid(blocks_for_rows(jobs.max_rows), jobs.count);
  COPSE_LAUNCH(gather_rows_batched_k, grid, kThreads, 0, s)(jobs);
  return cudaGetLastError();
}

cudaError_t scatter_add_rows_batched(cudaStream_t s, const RowJobs& jobs) {
  const dim3 grid(blocks_for_rows(jobs.max_rows), jobs.count);
  COPSE_LAUNCH(scatter_add_rows_batched_k, grid, kThreads, 0, s)(jobs);
  return cudaGetLastError();
}

cudaError_t segment_sum(cudaStream_t s, int n, int width, const int* ptr, const float* src,
                        long ld_src, float* dst, long ld_dst, bool mean, bool accumulate) {
  COPSE_LAUNCH(segment_sum_k, blocks_for_rows(n), kThreads, 0, s)
  (n, width, ptr, src, ld_src, dst, ld_dst, mean, accumulate);
  return cudaGetLastError();
}

cudaError_t copy_rows(cudaStream_t s, int rows, int width, const float* src, long ld_src,
                      float* dst, long ld_dst, bool accumulate) {
  // Dense blocks (one row, or rows without padding) as one flat range: a
  // warp per row would leave most of the GPU idle on a long single row.
  if ((rows == 1 || (ld_src == width && ld_dst == width)) && ld_src != 0) {
    const std::size_t n = static_cast<std::size_t>(rows) * width;
    COPSE_LAUNCH(copy_flat_k, blocks_for(n, kThreads), kThreads, 0, s)(n, src, dst, accumulate);
    return cudaGetLastError();
  }
  COPSE_LAUNCH(copy_rows_k, blocks_for_rows(rows), kThreads, 0, s)
  (rows, width, src, ld_src, dst, ld_dst, accumulate);
  return cudaGetLastError();
}

cudaError_t fill_rows(cudaStream_t s, int rows, int width, float value, float* dst, long ld_dst) {
  if (rows == 1 || ld_dst == width) {
    const std::size_t n = static_cast<std::size_t>(rows) * width;
    COPSE_LAUNCH(fill_flat_k, blocks_for(n, kThreads), kThreads, 0, s)(n, value, dst);
    return cudaGetLastError();
  }
  COPSE_LAUNCH(fill_rows_k, blocks_for_rows(rows), kThreads, 0, s)(rows, width, value, dst, ld_dst);
  return cudaGetLastError();
}

cudaError_t scale_rows(cudaStream_t s, int rows, int width, const float* scale, float* x, long ld) {
  COPSE_LAUNCH(scale_rows_k, blocks_for_rows(rows), kThreads, 0, s)(rows, width, scale, x, ld);
  return cudaGetLastError();
}

cudaError_t scale_matrix(cudaStream_t s, int m, int n, float beta, float* c, long ldc) {
  COPSE_LAUNCH(scale_matrix_k, blocks_for_rows(m), kThreads, 0, s)(m, n, beta, c, ldc);
  return cudaGetLastError();
}

cudaError_t scale(cudaStream_t s, std::size_t n, float factor, float* x) {
  if (n == 0) return cudaSuccess;
  COPSE_LAUNCH(scale_k, blocks_for(n, kThreads), kThreads, 0, s)(n, factor, x);
  return cudaGetLastError();
}

cudaError_t fill_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width, float value,
                             float* base) {
  COPSE_LAUNCH(fill_listed_rows_k, blocks_for_rows(n_rows), kThreads, 0, s)
  (n_rows, rows, width, value, base);
  return cudaGetLastError();
}

cudaError_t scale_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width, float f,
                              float* base) {
  COPSE_LAUNCH(scale_listed_rows_k, blocks_for_rows(n_rows), kThreads, 0, s)
  (n_rows, rows, width, f, base);
  return cudaGetLastError();
}

cudaError_t sum_squares(cudaStream_t s, std::size_t n, const float* x, double* partial,
                        double* out) {
  COPSE_LAUNCH(sum_squares_k, kReduceBlocks, kThreads, kReduceSmem, s)(n, x, partial);
  COPSE_LAUNCH(finish_sum_k, 1, kThreads, kReduceSmem, s)(partial, kReduceBlocks, out);
  return cudaGetLastError();
}

cudaError_t sum_squares_listed_rows(cudaStream_t s, int n_rows, const int* rows, int width,
                                    const float* base, double* partial, double* out) {
  COPSE_LAUNCH(sum_squares_listed_k, kReduceBlocks, kThreads, kReduceSmem, s)
  (n_rows, rows, width, base, partial);
  COPSE_LAUNCH(finish_sum_k, 1, kThreads, kReduceSmem, s)(partial, kReduceBlocks, out);
  return cudaGetLastError();
}

cudaError_t softmax_xent(cudaStream_t s, int rows, int classes, const float* logits, long ld,
                         const int* labels, float scale, float* dlogits, long ld_d, int* pred,
                         double* row_loss, int* row_hit, double* out, int* bad_label) {
  COPSE_LAUNCH(softmax_labels_k, 1, kThreads, kReduceSmem, s)(rows, classes, labels, bad_label);
  COPSE_LAUNCH(softmax_xent_k, blocks_for_rows(rows), kThreads, 0, s)
  (rows, classes, logits, ld, labels, scale, dlogits, ld_d, pred, row_loss, row_hit, bad_label);
  COPSE_LAUNCH(softmax_finish_k, 1, kThreads, kReduceSmem, s)(rows, row_loss, row_hit, out);
  return cudaGetLastError();
}

cudaError_t optimizer_update(cudaStream_t s, const OptimizerParams& p, std::size_t n, float* w,
                             const float* g, float* s0, float* s1) {
  if (n == 0) return cudaSuccess;
  COPSE_LAUNCH(optimizer_k, blocks_for(n, kThreads), kThreads, 0, s)(p, n, w, g, s0, s1);
  return cudaGetLastError();
}

cudaError_t optimizer_update_rows(cudaStream_t s, const OptimizerParams& p, int n_rows,
                                  const int* rows, int width, float* w, const float* g, float* s0,
                                  float* s1) {
  if (n_rows <= 0) return cudaSuccess;
  COPSE_LAUNCH(optimizer_rows_k, blocks_for_rows(n_rows), kThreads, 0, s)
  (p, n_rows, rows, width, w, g, s0, s1);
  return cudaGetLastError();
}

cudaError_t optimizer_check(cudaStream_t s, const OptimizerParams& p, std::size_t n, const float* w,
                            const float* g, const float* s0, const float* s1, int tag,
                            unsigned long long* first) {
  if (n == 0) return cudaSuccess;
  COPSE_LAUNCH(optimizer_check_k, blocks_for(n, kThreads), kThreads, 0, s)
  (p, n, w, g, s0, s1, static_cast<unsigned long long>(tag) << kNonFiniteTagShift, first);
  return cudaGetLastError();
}

cudaError_t optimizer_check_rows(cudaStream_t s, const OptimizerParams& p, int n_rows,
                                 const int* rows, int width, const float* w, const float* g,
                                 const float* s0, const float* s1, int tag,
                                 unsigned long long* first) {
  if (n_rows <= 0) return cudaSuccess;
  COPSE_LAUNCH(optimizer_check_rows_k, blocks_for_rows(n_rows), kThreads, 0, s)
  (p, n_rows, rows, width, w, g, s0, s1, static_cast<unsigned long long>(tag) << kNonFiniteTagShift,
   first);
  return cudaGetLastError();
}

cudaError_t run_interpreter(cudaStream_t s, const FusedArgs& args, const DevReg* regs,
                            int /*num_regs*/, const DevInstr* code, int num_instr,
                            int scratch_width, int warps) {
  const int blocks = (args.rows + warps - 1) / warps;
  const std::size_t smem = sizeof(float) * static_cast<std::size_t>(scratch_width) * warps;
  COPSE_LAUNCH(interpreter_k, blocks, warps * 32, smem, s)
  (args, regs, code, num_instr, scratch_width);
  return cudaGetLastError();
}
