// CudnnLstm: the cuDNN baseline of benchmarks/bench_seq_lstm.cpp. One
// unidirectional LSTM layer through cuDNN's RNN v8 API (cudnnRNNForward,
// cudnnRNNBackwardData_v8, cudnnRNNBackwardWeights_v8) over padded
// batch-major batches [B, T, *] with each sequence's own length, float32,
// FMA math (no TF32), so that it computes copse's seq_lstm to float rounding.
// Host code only; every cuDNN and CUDA call is checked and every handle has an
// RAII owner. Built only with the CUDA backend and cuDNN (CMakeLists.txt).
#pragma once

#include <cuda_runtime.h>
#include <cudnn.h>
#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "common/error.h"

namespace copse::bench {

inline void cudnn_check(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  char detail[512] = "";
  cudnnGetLastErrorString(detail, sizeof(detail));
  fail("[cudnn] {}: {} (status {}){}{}", what, cudnnGetErrorString(s), static_cast<int>(s),
       detail[0] ? ": " : "", detail);
}

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("[cuda] {}: {}", what, cudaGetErrorString(e));
}

// Owns one cuDNN handle or descriptor; a failed destroy is logged, not thrown.
template <typename H, cudnnStatus_t (*Destroy)(H)>
class CudnnOwned {
 public:
  CudnnOwned() = default;
  ~CudnnOwned() {
    if (h_ && Destroy(h_) != CUDNN_STATUS_SUCCESS)
      fmt::print(stderr, "[cudnn] warning: destroying a handle failed\n");
  }
  CudnnOwned(const CudnnOwned&) = delete;
  CudnnOwned& operator=(const CudnnOwned&) = delete;
  H get() const { return h_; }
  H* out() { return &h_; }

 private:
  H h_ = nullptr;
};

// Device memory from cudaMalloc, freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) { resize(bytes); }
  ~DeviceBuffer() {
    if (p_ && cudaFree(p_) != cudaSuccess) fmt::print(stderr, "[cuda] warning: cudaFree failed\n");
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // Grows (contents lost) when `bytes` exceeds the capacity.
  void resize(std::size_t bytes) {
    if (bytes <= bytes_ && p_) return;
    if (p_) cuda_check(cudaFree(p_), "cudaFree");
    p_ = nullptr;
    cuda_check(cudaMalloc(&p_, bytes ? bytes : 256),
               fmt::format("cudaMalloc ({} bytes)", bytes).c_str());
    bytes_ = bytes;
  }
  void* get() const { return p_; }
  float* f() const { return static_cast<float*>(p_); }
  int* i() const { return static_cast<int*>(p_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

class CudnnLstm {
 public:
  // cuDNN's LSTM gates are i, f, g (the candidate, copse's u), o; copse's
  // seq_lstm stacks its gate blocks as i, f, o, u. kCopseBlock[k] is the copse
  // block of cuDNN gate k (linear layers k and 4 + k).
  static constexpr std::array<int, 4> kCopseBlock{0, 1, 3, 2};

  // batch: sequences per batch (fixed); max_len: the longest sequence any
  // batch will hold (sizes the buffers).
  CudnnLstm(cudaStream_t stream, int embed, int hidden, int batch, int max_len)
      : stream_(stream), E_(embed), H_(hidden), B_(batch), max_len_(max_len) {
    cudnn_check(cudnnCreate(handle_.out()), "cudnnCreate");
    cudnn_check(cudnnSetStream(handle_.get(), stream), "cudnnSetStream");
    cudnn_check(cudnnCreateDropoutDescriptor(dropout_.out()), "cudnnCreateDropoutDescriptor");
    cudnn_check(cudnnSetDropoutDescriptor(dropout_.get(), handle_.get(), 0.0f, nullptr, 0, 0),
                "cudnnSetDropoutDescriptor (no dropout)");
    cudnn_check(cudnnCreateRNNDescriptor(rnn_.out()), "cudnnCreateRNNDescriptor");
    // One layer, i f g o, an input and a recurrent bias (the input bias stays
    // zero: copse has one bias), float data and math, FMA only (no TF32),
    // padded I/O for the unpacked layout.
    cudnn_check(cudnnSetRNNDescriptor_v8(rnn_.get(), CUDNN_RNN_ALGO_STANDARD, CUDNN_LSTM,
                                         CUDNN_RNN_DOUBLE_BIAS, CUDNN_UNIDIRECTIONAL,
                                         CUDNN_LINEAR_INPUT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT,
                                         CUDNN_FMA_MATH, E_, H_, /*projSize=*/H_, /*numLayers=*/1,
                                         dropout_.get(), CUDNN_RNN_PADDED_IO_ENABLED),
                "cudnnSetRNNDescriptor_v8");
    cudnn_check(cudnnCreateRNNDataDescriptor(x_desc_.out()), "cudnnCreateRNNDataDescriptor");
    cudnn_check(cudnnCreateRNNDataDescriptor(y_desc_.out()), "cudnnCreateRNNDataDescriptor");
    cudnn_check(cudnnCreateTensorDescriptor(h_desc_.out()), "cudnnCreateTensorDescriptor");
    const int dims[3] = {1, B_, H_}, strides[3] = {B_ * H_, H_, 1};  // [layers, B, H]
    cudnn_check(cudnnSetTensorNdDescriptor(h_desc_.get(), CUDNN_DATA_FLOAT, 3, dims, strides),
                "cudnnSetTensorNdDescriptor (h, c)");
    cudnn_check(cudnnGetRNNWeightSpaceSize(handle_.get(), rnn_.get(), &weight_bytes_),
                "cudnnGetRNNWeightSpaceSize");
    w_.resize(weight_bytes_);
    dw_.resize(weight_bytes_);
    cuda_check(cudaMemsetAsync(w_.get(), 0, weight_bytes_, stream_), "cudaMemsetAsync (weights)");
    cuda_check(cudaMemsetAsync(dw_.get(), 0, weight_bytes_, stream_), "cudaMemsetAsync (dw)");
    const std::size_t cells = static_cast<std::size_t>(B_) * max_len_;
    dy_.resize(sizeof(float) * cells * H_);  // the loss reads only the final h: dy = 0
    cuda_check(cudaMemsetAsync(dy_.get(), 0, dy_.bytes(), stream_), "cudaMemsetAsync (dy)");
    lengths_dev_.resize(sizeof(int) * B_);
    // Temporary space for the longest batch (every sequence max_len long).
    set_batch(std::vector<int>(B_, max_len_));
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  int embed() const { return E_; }
  int hidden() const { return H_; }
  int batch() const { return B_; }
  std::size_t weight_bytes() const { return weight_bytes_; }

  // Copies copse's seq_lstm parameters (host, row-major: W [4H, E], U [4H, H],
  // U.b [4H], gate blocks i f o u) into cuDNN's packed weight space.
  void set_weights(const std::vector<float>& W, const std::vector<float>& U,
                   const std::vector<float>& b) {
    const std::size_t HE = std::size_t(H_) * E_, HH = std::size_t(H_) * H_;
    if (W.size() != 4 * HE || U.size() != 4 * HH || b.size() != 4 * std::size_t(H_))
      fail(
          "[cudnn lstm] weights of {}, {}, {} floats; expected W [4H, E], U [4H, H], U.b [4H] "
          "with E={} H={}",
          W.size(), U.size(), b.size(), E_, H_);
    const std::vector<float> zeros(H_, 0.0f);
    for (int k = 0; k < 4; ++k) {
      const int blk = kCopseBlock[k];
      Param in = param(w_.get(), k), rec = param(w_.get(), 4 + k);
      upload(in.matrix, in.matrix_numel, W.data() + blk * HE, HE, "input weights");
      upload(rec.matrix, rec.matrix_numel, U.data() + blk * HH, HH, "recurrent weights");
      upload(in.bias, in.bias_numel, zeros.data(), H_, "input bias");
      upload(rec.bias, rec.bias_numel, b.data() + std::size_t(blk) * H_, H_, "recurrent bias");
    }
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");  // zeros, W, U, b live
  }

  // Gradients in copse's layout: W [4H, E], U [4H, H], and the two biases
  // [4H] (each equals the gradient of copse's single bias U.b).
  struct Grads {
    std::vector<float> W, U, b_rec, b_in;
  };
  Grads grads() const {
    const std::size_t HE = std::size_t(H_) * E_, HH = std::size_t(H_) * H_;
    Grads g;
    g.W.resize(4 * HE);
    g.U.resize(4 * HH);
    g.b_rec.resize(4 * std::size_t(H_));
    g.b_in.resize(4 * std::size_t(H_));
    for (int k = 0; k < 4; ++k) {
      const std::size_t blk = kCopseBlock[k];
      Param in = param(dw_.get(), k), rec = param(dw_.get(), 4 + k);
      download(g.W.data() + blk * HE, in.matrix, HE);
      download(g.U.data() + blk * HH, rec.matrix, HH);
      download(g.b_in.data() + blk * H_, in.bias, H_);
      download(g.b_rec.data() + blk * H_, rec.bias, H_);
    }
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return g;
  }

  // Describes the next batch: lengths[b] of sequence b (1..max_len), padded
  // to T = max(lengths); grows the temporary space if this batch needs more
  // (not after the first call with all lengths max_len). The lengths also go
  // to the device, in stream order (cuDNN reads a copy there).
  void set_batch(const std::vector<int>& lengths) {
    if (static_cast<int>(lengths.size()) != B_)
      fail("[cudnn lstm] a batch of {} sequences; this LSTM was set up for {}", lengths.size(), B_);
    T_ = 0;
    for (int len : lengths) {
      if (len < 1 || len > max_len_)
        fail("[cudnn lstm] sequence length {} outside [1, {}]", len, max_len_);
      T_ = std::max(T_, len);
    }
    float fill = 0.0f;
    cudnn_check(cudnnSetRNNDataDescriptor(x_desc_.get(), CUDNN_DATA_FLOAT,
                                          CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, T_, B_, E_,
                                          lengths.data(), &fill),
                "cudnnSetRNNDataDescriptor (x)");
    cudnn_check(cudnnSetRNNDataDescriptor(y_desc_.get(), CUDNN_DATA_FLOAT,
                                          CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, T_, B_, H_,
                                          lengths.data(), &fill),
                "cudnnSetRNNDataDescriptor (y)");
    std::size_t work = 0, reserve = 0;
    cudnn_check(cudnnGetRNNTempSpaceSizes(handle_.get(), rnn_.get(), CUDNN_FWD_MODE_TRAINING,
                                          x_desc_.get(), &work, &reserve),
                "cudnnGetRNNTempSpaceSizes");
    work_.resize(work);
    reserve_.resize(reserve);
    // Pageable source: staged before the call returns, copied in stream order.
    cuda_check(cudaMemcpyAsync(lengths_dev_.get(), lengths.data(), sizeof(int) * B_,
                               cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (sequence lengths)");
  }
  int padded_length() const { return T_; }

  // Zeroes the weight gradients (cuDNN only accumulates into them).
  void zero_grads() {
    cuda_check(cudaMemsetAsync(dw_.get(), 0, weight_bytes_, stream_), "cudaMemsetAsync (dw)");
  }

  // x [B, T, E] -> y [B, T, H], hy [B, H] (h at each sequence's last step);
  // h0 = c0 = 0. Keeps what the backward pass needs in the reserve space.
  void forward(const float* x, float* y, float* hy) {
    cudnn_check(
        cudnnRNNForward(handle_.get(), rnn_.get(), CUDNN_FWD_MODE_TRAINING, lengths_dev_.i(),
                        x_desc_.get(), x, y_desc_.get(), y, h_desc_.get(), nullptr, hy,
                        h_desc_.get(), nullptr, nullptr, weight_bytes_, w_.get(), work_.bytes(),
                        work_.get(), reserve_.bytes(), reserve_.get()),
        "cudnnRNNForward");
  }

  // Given dL/dhy [B, H] (dL/dy = 0, dL/dcy = 0): dx [B, T, E], and dL/dW
  // added to the weight gradients. x and y as given to forward().
  void backward(const float* x, const float* y, const float* dhy, float* dx) {
    cudnn_check(
        cudnnRNNBackwardData_v8(handle_.get(), rnn_.get(), lengths_dev_.i(), y_desc_.get(), y,
                                dy_.f(), x_desc_.get(), dx, h_desc_.get(), nullptr, dhy, nullptr,
                                h_desc_.get(), nullptr, nullptr, nullptr, weight_bytes_, w_.get(),
                                work_.bytes(), work_.get(), reserve_.bytes(), reserve_.get()),
        "cudnnRNNBackwardData_v8");
    cudnn_check(cudnnRNNBackwardWeights_v8(
                    handle_.get(), rnn_.get(), CUDNN_WGRAD_MODE_ADD, lengths_dev_.i(),
                    x_desc_.get(), x, h_desc_.get(), nullptr, y_desc_.get(), y, weight_bytes_,
                    dw_.get(), work_.bytes(), work_.get(), reserve_.bytes(), reserve_.get()),
                "cudnnRNNBackwardWeights_v8");
  }

 private:
  struct Param {
    float* matrix = nullptr;
    float* bias = nullptr;
    std::size_t matrix_numel = 0, bias_numel = 0;
  };

  // Where linear layer `lin` (0-3 input, 4-7 recurrent) of the single layer
  // lives in `space` (the weight space or its gradient), with its size as
  // cuDNN describes it.
  Param param(void* space, int lin) const {
    CudnnOwned<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor> m_desc, b_desc;
    cudnn_check(cudnnCreateTensorDescriptor(m_desc.out()), "cudnnCreateTensorDescriptor");
    cudnn_check(cudnnCreateTensorDescriptor(b_desc.out()), "cudnnCreateTensorDescriptor");
    void* m = nullptr;
    void* b = nullptr;
    cudnn_check(cudnnGetRNNWeightParams(handle_.get(), rnn_.get(), 0, weight_bytes_, space, lin,
                                        m_desc.get(), &m, b_desc.get(), &b),
                "cudnnGetRNNWeightParams");
    if (!m || !b) fail("[cudnn lstm] cuDNN reports no matrix or no bias for linear layer {}", lin);
    Param p;
    p.matrix = static_cast<float*>(m);
    p.bias = static_cast<float*>(b);
    p.matrix_numel = numel(m_desc.get());
    p.bias_numel = numel(b_desc.get());
    return p;
  }

  static std::size_t numel(cudnnTensorDescriptor_t d) {
    cudnnDataType_t type;
    int nd = 0, dims[8], strides[8];
    cudnn_check(cudnnGetTensorNdDescriptor(d, 8, &type, &nd, dims, strides),
                "cudnnGetTensorNdDescriptor");
    std::size_t n = 1;
    for (int k = 0; k < nd; ++k) n *= static_cast<std::size_t>(dims[k]);
    return n;
  }

  // The matrices are [H, in] row-major (y = M x), as copse's gate blocks.
  // Both copies are queued on the stream; the callers synchronise it.
  void upload(float* dst, std::size_t dst_numel, const float* src, std::size_t n,
              const char* what) const {
    if (dst_numel != n)
      fail("[cudnn lstm] cuDNN's {} block holds {} floats, copse's {}", what, dst_numel, n);
    cuda_check(cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (weights)");
  }
  void download(float* dst, const float* src, std::size_t n) const {
    cuda_check(cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync (weight gradients)");
  }

  cudaStream_t stream_;
  int E_, H_, B_, max_len_, T_ = 0;
  CudnnOwned<cudnnHandle_t, cudnnDestroy> handle_;
  CudnnOwned<cudnnDropoutDescriptor_t, cudnnDestroyDropoutDescriptor> dropout_;
  CudnnOwned<cudnnRNNDescriptor_t, cudnnDestroyRNNDescriptor> rnn_;
  CudnnOwned<cudnnRNNDataDescriptor_t, cudnnDestroyRNNDataDescriptor> x_desc_, y_desc_;
  CudnnOwned<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor> h_desc_;  // also c
  std::size_t weight_bytes_ = 0;
  DeviceBuffer w_, dw_, dy_, work_, reserve_, lengths_dev_;
};

}  // namespace copse::bench
