// HostTestBackend: a minimal host Backend<T> for memory tests (malloc/memcpy,
// fills, sums of squares) that counts allocations; other kernels throw.
#pragma once

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "common/error.h"
#include "ops/backend.h"

namespace copse::test_support {

template <typename T>
class HostTestBackend : public ops::Backend<T> {
 public:
  ~HostTestBackend() override {
    for (auto& kv : live_) std::free(kv.first);
  }
  std::string name() const override { return "host-test"; }

  void* allocate(std::size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    COPSE_ASSERT(p != nullptr);
    ++allocations;
    live_[p] = bytes;
    return p;
  }
  void deallocate(void* p, std::size_t bytes) override {
    auto it = live_.find(p);
    COPSE_ASSERT(it != live_.end() && it->second == bytes);
    live_.erase(it);
    ++deallocations;
    std::free(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }

  void fill_rows(int rows, int width, T value, T* dst, long ld) override {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < width; ++c) dst[r * ld + c] = value;
  }
  double sum_squares(std::size_t n, const T* x) override {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  }
  void scale(std::size_t n, T s, T* x) override {
    for (std::size_t i = 0; i < n; ++i) x[i] *= s;
  }

  void gemm(bool, bool, int, int, int, T, const T*, long, const T*, long, T, T*, long) override {
    unused("gemm");
  }
  void gather_rows(int, int, const T*, long, const int*, T*, long) override {
    unused("gather_rows");
  }
  void scatter_add_rows(int, int, const T*, long, const int*, T*, long) override {
    unused("scatter_add_rows");
  }
  void segment_sum(int, int, const int*, const T*, long, T*, long, bool, bool) override {
    unused("segment_sum");
  }
  void copy_rows(int, int, const T*, long, T*, long, bool) override { unused("copy_rows"); }
  void colsum(int, int, const T*, long, T*, bool) override { unused("colsum"); }
  void run_fused(const ops::FusedProgram&, int, const ops::RowView<const T>*,
                 const ops::RowView<T>*) override {
    unused("run_fused");
  }
  double softmax_xent(int, int, const T*, long, const int*, T, T*, long, long*, int*) override {
    unused("softmax_xent");
  }

  std::size_t live_allocations() const { return live_.size(); }
  std::size_t live_bytes() const {
    std::size_t b = 0;
    for (auto& kv : live_) b += kv.second;
    return b;
  }

  long allocations = 0;
  long deallocations = 0;

 private:
  [[noreturn]] static void unused(const char* what) {
    throw InternalError(std::string("HostTestBackend: ") + what + " is not implemented");
  }
  std::map<void*, std::size_t> live_;
};

}  // namespace copse::test_support
