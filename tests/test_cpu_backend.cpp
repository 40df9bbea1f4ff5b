// CpuBackend primitives against naive loops, float and double, 1 and 2 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "common/error.h"
#include "ops/cpu_backend.h"

namespace copse::ops {
namespace {

template <typename T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();

// Absolute-plus-relative tolerance against a double reference.
template <typename T>
double tol(double ref, double scale = 1.0) {
  const double eps = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  return eps * scale * (1.0 + std::fabs(ref));
}

template <typename T>
std::vector<T> random_vec(std::size_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

template <typename T>
class CpuBackendTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuBackendTest, Types);

const int kThreads[] = {1, 2};

TYPED_TEST(CpuBackendTest, GemmAllTransposes) {
  using T = TypeParam;
  std::mt19937 rng(1);
  struct Shape {
    int m, n, k;
  };
  const Shape shapes[] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {130, 70, 141}, {8, 300, 257}};
  for (int threads : kThreads) {
    CpuBackend<T> be(threads);
    for (const Shape& s : shapes)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (T beta : {T(0), T(0.5)}) {
            SCOPED_TRACE(testing::Message() << "threads=" << threads << " m=" << s.m << " n="
                                            << s.n << " k=" << s.k << " ta=" << ta
                                            << " tb=" << tb << " beta=" << beta);
            // Stored shapes: A [m,k] or [k,m]; B [k,n] or [n,k]; padded rows.
            const int a_rows = ta ? s.k : s.m, a_cols = ta ? s.m : s.k;
            const int b_rows = tb ? s.n : s.k, b_cols = tb ? s.k : s.n;
            const long lda = a_cols + 3, ldb = b_cols + 5, ldc = s.n + 2;
            auto a = random_vec<T>(a_rows * lda, rng);
            auto b = random_vec<T>(b_rows * ldb, rng);
            auto c = random_vec<T>(s.m * ldc, rng);
            const T sentinel = T(12345);
            for (int i = 0; i < s.m; ++i)
              for (long j = s.n; j < ldc; ++j) c[i * ldc + j] = sentinel;
            auto c0 = c;
            if (beta == T(0))
              for (int i = 0; i < s.m; ++i)
                for (int j = 0; j < s.n; ++j) c[i * ldc + j] = kNaN<T>;
            const T alpha = T(1.5);
            be.gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(),
                    ldc);
            for (int i = 0; i < s.m; ++i) {
              for (int j = 0; j < s.n; ++j) {
                double acc = 0;
                for (int p = 0; p < s.k; ++p) {
                  const double av = ta ? a[p * lda + i] : a[i * lda + p];
                  const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                  acc += av * bv;
                }
                const double ref = alpha * acc + (beta == T(0) ? 0.0 : beta * c0[i * ldc + j]);
                ASSERT_NEAR(c[i * ldc + j], ref, tol<T>(ref, std::sqrt(double(s.k))))
                    << "at " << i << "," << j;
              }
              for (long j = s.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], sentinel);
            }
          }
  }
}

TYPED_TEST(CpuBackendTest, GemmDegenerateSizes) {
  using T = TypeParam;
  CpuBackend<T> be(2);
  std::vector<T> a(16, T(1)), b(16, T(1));
  // k == 0: C = beta * C; beta == 0 clears NaN.
  std::vector<T> c = {kNaN<T>, kNaN<T>, kNaN<T>, kNaN<T>};
  be.gemm(false, false, 2, 2, 0, T(1), a.data(), 1, b.data(), 2, T(0), c.data(), 2);
  for (T v : c) EXPECT_EQ(v, T(0));
  c = {1, 2, 3, 4};
  be.gemm(false, true, 2, 2, 0, T(1), a.data(), 1, b.data(), 1, T(2), c.data(), 2);
  EXPECT_EQ(c, (std::vector<T>{2, 4, 6, 8}));
  // m == 0 and n == 0 touch nothing.
  c = {kNaN<T>, 7, 7, 7};
  be.gemm(false, false, 0, 2, 3, T(1), a.data(), 3, b.data(), 2, T(0), c.data(), 2);
  be.gemm(false, false, 2, 0, 3, T(1), a.data(), 3, b.data(), 2, T(0), c.data(), 2);
  EXPECT_TRUE(std::isnan(c[0]));
  EXPECT_EQ(c[1], T(7));
}

TYPED_TEST(CpuBackendTest, GemmRejectsBadArguments) {
  using T = TypeParam;
  CpuBackend<T> be(1);
  std::vector<T> a(64, T(1)), b(64, T(1)), c(64, T(0));
  // lda < k for an untransposed A.
  EXPECT_THROW(be.gemm(false, false, 4, 4, 4, T(1), a.data(), 3, b.data(), 4, T(0), c.data(), 4),
               copse::Error);
  EXPECT_THROW(be.gemm(false, false, -1, 4, 4, T(1), a.data(), 4, b.data(), 4, T(0), c.data(), 4),
               copse::Error);
}

TYPED_TEST(CpuBackendTest, GemmKeepsCallerThreadCount) {
  using T = TypeParam;
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  CpuBackend<T> be(2);
  std::vector<T> a(64 * 64, T(1)), b(64 * 64, T(1)), c(64 * 64, T(0));
  be.gemm(false, false, 64, 64, 64, T(1), a.data(), 64, b.data(), 64, T(0), c.data(), 64);
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(c[0], T(64));
  omp_set_num_threads(before);
}

TYPED_TEST(CpuBackendTest, GatherRows) {
  using T = TypeParam;
  std::mt19937 rng(2);
  const int src_rows = 50, width = 77, n = 301;
  const long ld_src = 80, ld_dst = 90;
  auto src = random_vec<T>(src_rows * ld_src, rng);
  std::vector<int> idx(n);
  std::uniform_int_distribution<int> pick(-3, src_rows - 1);
  for (auto& i : idx) i = pick(rng);
  for (int threads : kThreads) {
    CpuBackend<T> be(threads);
    std::vector<T> dst(n * ld_dst, kNaN<T>);
    be.gather_rows(n, width, src.data(), ld_src, idx.data(), dst.data(), ld_dst);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < width; ++j)
        ASSERT_EQ(dst[i * ld_dst + j], idx[i] >= 0 ? src[idx[i] * ld_src + j] : T(0))
            << "threads=" << threads << " row " << i;
      for (long j = width; j < ld_dst; ++j) ASSERT_TRUE(std::isnan(dst[i * ld_dst + j]));
    }
  }
}

TYPED_TEST(CpuBackendTest, ScatterAddRowsRepeatedIndices) {
  using T = TypeParam;
  std::mt19937 rng(3);
  const int dst_rows = 10, n = 400;
  for (int width : {70, 5}) {
    const long ld_src = width + 1, ld_dst = width + 4;
    auto src = random_vec<T>(n * ld_src, rng);
    auto dst0 = random_vec<T>(dst_rows * ld_dst, rng);
    std::vector<int> idx(n);
    std::uniform_int_distribution<int> pick(-2, dst_rows - 1);
    for (auto& i : idx) i = pick(rng);
    std::vector<double> ref(dst0.begin(), dst0.end());
    for (int i = 0; i < n; ++i)
      if (idx[i] >= 0)
        for (int j = 0; j < width; ++j) ref[idx[i] * ld_dst + j] += src[i * ld_src + j];
    for (int threads : kThreads) {
      CpuBackend<T> be(threads);
      auto dst = dst0;
      be.scatter_add_rows(n, width, src.data(), ld_src, idx.data(), dst.data(), ld_dst);
      for (int r = 0; r < dst_rows; ++r)
        for (long j = 0; j < ld_dst; ++j)
          ASSERT_NEAR(dst[r * ld_dst + j], ref[r * ld_dst + j], tol<T>(ref[r * ld_dst + j], 10))
              << "threads=" << threads << " width=" << width << " at " << r << "," << j;
    }
  }
}

TYPED_TEST(CpuBackendTest, SegmentSum) {
  using T = TypeParam;
  std::mt19937 rng(4);
  const int n = 200, width = 90, base = 17;
  std::vector<int> ptr(n + 1);
  ptr[0] = base;
  std::uniform_int_distribution<int> count(0, 4);
  for (int i = 0; i < n; ++i) ptr[i + 1] = ptr[i] + count(rng);
  const int edges = ptr[n] - base;
  const long ld_src = width + 2, ld_dst = width + 3;
  auto src = random_vec<T>(edges * ld_src, rng);
  auto dst0 = random_vec<T>(n * ld_dst, rng);
  for (int threads : kThreads)
    for (bool mean : {false, true})
      for (bool accumulate : {false, true}) {
        CpuBackend<T> be(threads);
        auto dst = dst0;
        if (!accumulate)
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < width; ++j) dst[i * ld_dst + j] = kNaN<T>;
        be.segment_sum(n, width, ptr.data(), src.data(), ld_src, dst.data(), ld_dst, mean,
                       accumulate);
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < width; ++j) {
            const int e0 = ptr[i] - base, e1 = ptr[i + 1] - base;
            double s = 0;
            for (int e = e0; e < e1; ++e) s += src[e * ld_src + j];
            if (mean && e1 > e0) s /= (e1 - e0);
            const double ref = s + (accumulate ? double(dst0[i * ld_dst + j]) : 0.0);
            ASSERT_NEAR(dst[i * ld_dst + j], ref, tol<T>(ref))
                << "threads=" << threads << " mean=" << mean << " acc=" << accumulate << " at "
                << i << "," << j;
          }
      }
}

TYPED_TEST(CpuBackendTest, CopyFillColsum) {
  using T = TypeParam;
  std::mt19937 rng(5);
  const int rows = 500, width = 45;
  const long ld_src = 47, ld_dst = 51;
  auto src = random_vec<T>(rows * ld_src, rng);
  auto dst0 = random_vec<T>(rows * ld_dst, rng);
  for (int threads : kThreads) {
    SCOPED_TRACE(testing::Message() << "threads=" << threads);
    CpuBackend<T> be(threads);
    for (bool accumulate : {false, true}) {
      auto dst = dst0;
      if (!accumulate)
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < width; ++j) dst[i * ld_dst + j] = kNaN<T>;
      be.copy_rows(rows, width, src.data(), ld_src, dst.data(), ld_dst, accumulate);
      for (int i = 0; i < rows; ++i)
        for (long j = 0; j < ld_dst; ++j) {
          const double ref = j >= width ? double(dst0[i * ld_dst + j])
                                        : src[i * ld_src + j] +
                                              (accumulate ? double(dst0[i * ld_dst + j]) : 0.0);
          ASSERT_NEAR(dst[i * ld_dst + j], ref, tol<T>(ref)) << i << "," << j;
        }
    }
    auto dst = dst0;
    be.fill_rows(rows, width, T(-2.5), dst.data(), ld_dst);
    for (int i = 0; i < rows; ++i)
      for (long j = 0; j < ld_dst; ++j)
        ASSERT_EQ(dst[i * ld_dst + j], j < width ? T(-2.5) : dst0[i * ld_dst + j]);

    for (bool accumulate : {false, true}) {
      std::vector<T> y(width, accumulate ? T(0.75) : kNaN<T>);
      be.colsum(rows, width, src.data(), ld_src, y.data(), accumulate);
      for (int j = 0; j < width; ++j) {
        double ref = accumulate ? 0.75 : 0.0;
        for (int i = 0; i < rows; ++i) ref += src[i * ld_src + j];
        ASSERT_NEAR(y[j], ref, tol<T>(ref, 10)) << "acc=" << accumulate << " col " << j;
      }
    }
  }
}

TYPED_TEST(CpuBackendTest, SoftmaxXent) {
  using T = TypeParam;
  std::mt19937 rng(6);
  for (int classes : {5, 47}) {
    const int rows = 400;
    const long ld = classes + 3, ld_d = classes + 1;
    auto logits = random_vec<T>(rows * ld, rng, -4, 4);
    for (int r = 0; r < rows; r += 7)  // large logits: needs the max shift
      for (int j = 0; j < classes; ++j) logits[r * ld + j] += T(800);
    std::vector<int> labels(rows);
    std::uniform_int_distribution<int> pick(-1, classes - 1);
    for (auto& l : labels) l = pick(rng);
    const T scale = T(0.25);

    double ref_loss = 0;
    long ref_correct = 0;
    std::vector<int> ref_pred(rows);
    std::vector<double> ref_d(rows * ld_d, 0.0);
    for (int r = 0; r < rows; ++r) {
      const T* x = &logits[r * ld];
      int arg = 0;
      for (int j = 1; j < classes; ++j)
        if (x[j] > x[arg]) arg = j;
      ref_pred[r] = arg;
      if (labels[r] < 0) continue;
      ref_correct += arg == labels[r];
      double m = x[arg], s = 0;
      for (int j = 0; j < classes; ++j) s += std::exp(double(x[j]) - m);
      ref_loss += m + std::log(s) - x[labels[r]];
      for (int j = 0; j < classes; ++j)
        ref_d[r * ld_d + j] = scale * (std::exp(double(x[j]) - m) / s - (j == labels[r]));
    }
    for (int threads : kThreads) {
      SCOPED_TRACE(testing::Message() << "threads=" << threads << " classes=" << classes);
      CpuBackend<T> be(threads);
      std::vector<T> d(rows * ld_d, kNaN<T>);
      std::vector<int> pred(rows, -7);
      long correct = -1;
      const double loss = be.softmax_xent(rows, classes, logits.data(), ld, labels.data(), scale,
                                          d.data(), ld_d, &correct, pred.data());
      EXPECT_NEAR(loss, ref_loss, std::fabs(ref_loss) * (std::is_same_v<T, float> ? 1e-5 : 1e-12));
      EXPECT_EQ(correct, ref_correct);
      EXPECT_EQ(pred, ref_pred);
      for (int r = 0; r < rows; ++r)
        for (int j = 0; j < classes; ++j)
          ASSERT_NEAR(d[r * ld_d + j], ref_d[r * ld_d + j], tol<T>(0, 0.1)) << r << "," << j;
      // Without gradient or outputs the loss is the same.
      const double loss2 = be.softmax_xent(rows, classes, logits.data(), ld, labels.data(), scale,
                                           nullptr, 0, nullptr, nullptr);
      EXPECT_DOUBLE_EQ(loss2, loss);
    }
    labels[3] = classes;
    CpuBackend<T> be(1);
    EXPECT_THROW(be.softmax_xent(rows, classes, logits.data(), ld, labels.data(), scale, nullptr,
                                 0, nullptr, nullptr),
                 copse::Error);
  }
}

TYPED_TEST(CpuBackendTest, SumSquaresAndScale) {
  using T = TypeParam;
  std::mt19937 rng(7);
  for (std::size_t n : {std::size_t(0), std::size_t(13), std::size_t(100003)}) {
    auto x = random_vec<T>(n, rng);
    double ref = 0;
    for (T v : x) ref += double(v) * double(v);
    for (int threads : kThreads) {
      CpuBackend<T> be(threads);
      EXPECT_NEAR(be.sum_squares(n, x.data()), ref, 1e-12 * (1 + ref)) << threads << " " << n;
      auto y = x;
      be.scale(n, T(-3), y.data());
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(y[i], T(-3) * x[i]);
    }
  }
}

TYPED_TEST(CpuBackendTest, ScaleRows) {
  using T = TypeParam;
  std::mt19937 rng(8);
  const int rows = 300, width = 70;
  const long ld = 73;
  auto x0 = random_vec<T>(rows * ld, rng);
  auto scale = random_vec<T>(rows, rng, -2, 2);
  for (int threads : kThreads) {
    CpuBackend<T> be(threads);
    auto x = x0;
    be.scale_rows(rows, width, scale.data(), x.data(), ld);
    for (int i = 0; i < rows; ++i)
      for (long j = 0; j < ld; ++j)
        ASSERT_EQ(x[i * ld + j], j < width ? x0[i * ld + j] * scale[i] : x0[i * ld + j])
            << "threads=" << threads << " at " << i << "," << j;
  }
}

TYPED_TEST(CpuBackendTest, MemoryAlignedAndCopies) {
  using T = TypeParam;
  CpuBackend<T> be(1);
  for (std::size_t bytes : {std::size_t(0), std::size_t(1), std::size_t(100), std::size_t(4096)}) {
    void* p = be.allocate(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
    std::vector<unsigned char> src(bytes), back(bytes, 0);
    for (std::size_t i = 0; i < bytes; ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
    be.upload(p, src.data(), bytes);
    be.download(back.data(), p, bytes);
    EXPECT_EQ(back, src);
    be.deallocate(p, bytes);
  }
  EXPECT_EQ(be.name(), "cpu");
  EXPECT_THROW(CpuBackend<T>(-1), copse::Error);
  EXPECT_GE(CpuBackend<T>(0).threads(), 1);
}

}  // namespace
}  // namespace copse::ops
