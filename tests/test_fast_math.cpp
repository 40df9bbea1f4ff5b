// fast_exp / fast_sigmoid / fast_tanh (float) and the array kernels
// sigmoid_n / tanh_n against libm in double over a dense sweep, through
// vectorized loops as the kernels use them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/fast_math.h"
#include "ops/fast_math_arrays.h"

namespace copse::ops {
namespace {

// Inputs: a dense grid over [-110, 110], log-spaced tiny magnitudes of both
// signs, and the float neighbours of the range limits.
std::vector<float> sweep() {
  std::vector<float> xs;
  for (double x = -110.0; x <= 110.0; x += 3e-4) xs.push_back(static_cast<float>(x));
  for (double m = 1e-38; m < 2.0; m *= 1.003) {
    xs.push_back(static_cast<float>(m));
    xs.push_back(static_cast<float>(-m));
  }
  for (float edge : {88.72283f, -87.33654f, -103.9f, -104.f, 0.625f, -0.625f}) {
    float x = edge;
    for (int i = 0; i < 50; ++i) {
      xs.push_back(x);
      xs.push_back(-x);
      x = std::nextafter(x, 0.f);
    }
  }
  xs.push_back(0.f);
  xs.push_back(-0.f);
  xs.push_back(FLT_TRUE_MIN);
  return xs;
}

// Applies f elementwise in a loop GCC vectorizes, as the kernels do.
template <typename F>
std::vector<float> apply(const std::vector<float>& x, F f) {
  std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN());
  const int n = static_cast<int>(x.size());
  const float* px = x.data();
  float* py = y.data();
  for (int i = 0; i < n; ++i) py[i] = f(px[i]);
  return y;
}

TEST(FastMath, ExpFloat) {
  const auto xs = sweep();
  const auto ys = apply(xs, [](float x) { return fast_exp(x); });
  double worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double ref = std::exp(static_cast<double>(xs[i]));
    ASSERT_TRUE(std::isfinite(ys[i])) << xs[i];
    if (ref >= FLT_MIN && ref <= FLT_MAX) {
      const double rel = std::fabs(ys[i] - ref) / ref;
      if (rel > worst) worst = rel, worst_x = xs[i];
    } else if (ref < FLT_MIN) {  // subnormal or zero result: within a subnormal step
      ASSERT_LE(std::fabs(ys[i] - ref), 1.0 * FLT_TRUE_MIN) << xs[i];
    }
  }
  EXPECT_LE(worst, 1.5e-7) << "worst at x = " << worst_x;
  std::printf("fast_exp: max relative error %.3g at x = %.9g\n", worst, worst_x);
}

// Accuracy bounds against libm in double (relative, where the reference is a
// normal float), shared by the scalar forms and the array kernels.
constexpr double kSigmoidMaxRel = 2e-7;
constexpr double kTanhMaxRel = 5e-7;

struct Worst {
  double rel = 0;
  float x = 0;
};

// y[i] = sigmoid(x[i]) for i < n: finite, in [0, 1], within 2 FLT_TRUE_MIN of
// the reference where that is below FLT_MIN; the worst relative error elsewhere.
void check_sigmoid(const float* x, const float* y, std::size_t n, Worst* worst) {
  for (std::size_t i = 0; i < n; ++i) {
    const double xd = x[i];
    const double ref = xd >= 0 ? 1.0 / (1.0 + std::exp(-xd)) : std::exp(xd) / (1.0 + std::exp(xd));
    ASSERT_TRUE(std::isfinite(y[i])) << x[i];
    ASSERT_GE(y[i], 0.f);
    ASSERT_LE(y[i], 1.f);
    if (ref >= FLT_MIN) {
      const double rel = std::fabs(y[i] - ref) / ref;
      if (rel > worst->rel) *worst = {rel, x[i]};
    } else {
      ASSERT_LE(std::fabs(y[i] - ref), 2.0 * FLT_TRUE_MIN) << x[i];
    }
  }
}

// y[i] = tanh(x[i]) for i < n: finite, in [-1, 1], signed zero for zero.
void check_tanh(const float* x, const float* y, std::size_t n, Worst* worst) {
  for (std::size_t i = 0; i < n; ++i) {
    const double ref = std::tanh(static_cast<double>(x[i]));
    ASSERT_TRUE(std::isfinite(y[i])) << x[i];
    ASSERT_LE(std::fabs(y[i]), 1.f);
    if (ref == 0) {
      ASSERT_EQ(y[i], 0.f);
      ASSERT_EQ(std::signbit(y[i]), std::signbit(x[i]));
      continue;
    }
    const double rel = std::fabs(y[i] - ref) / std::fabs(ref);
    if (rel > worst->rel) *worst = {rel, x[i]};
  }
}

TEST(FastMath, SigmoidFloat) {
  const auto xs = sweep();
  const auto ys = apply(xs, [](float x) { return fast_sigmoid(x); });
  Worst worst;
  ASSERT_NO_FATAL_FAILURE(check_sigmoid(xs.data(), ys.data(), xs.size(), &worst));
  EXPECT_LE(worst.rel, kSigmoidMaxRel) << "worst at x = " << worst.x;
  std::printf("fast_sigmoid: max relative error %.3g at x = %.9g\n", worst.rel, worst.x);
}

TEST(FastMath, TanhFloat) {
  const auto xs = sweep();
  const auto ys = apply(xs, [](float x) { return fast_tanh(x); });
  Worst worst;
  ASSERT_NO_FATAL_FAILURE(check_tanh(xs.data(), ys.data(), xs.size(), &worst));
  EXPECT_LE(worst.rel, kTanhMaxRel) << "worst at x = " << worst.x;
  std::printf("fast_tanh: max relative error %.3g at x = %.9g\n", worst.rel, worst.x);
}

TEST(FastMath, SpecialValuesFloat) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> xs = {nan, inf, -inf, FLT_MAX, -FLT_MAX};
  const auto e = apply(xs, [](float x) { return fast_exp(x); });
  const auto s = apply(xs, [](float x) { return fast_sigmoid(x); });
  const auto t = apply(xs, [](float x) { return fast_tanh(x); });
  EXPECT_TRUE(std::isnan(e[0]));
  EXPECT_TRUE(std::isnan(s[0]));
  EXPECT_TRUE(std::isnan(t[0]));
  // Finite (clamped) for infinite and huge inputs.
  EXPECT_TRUE(std::isfinite(e[1]) && e[1] > 3e38f);
  EXPECT_EQ(e[2], 0.f);
  EXPECT_TRUE(std::isfinite(e[3]) && e[3] > 3e38f);
  EXPECT_EQ(e[4], 0.f);
  EXPECT_EQ(s[1], 1.f);
  EXPECT_EQ(s[2], 0.f);
  EXPECT_EQ(s[3], 1.f);
  EXPECT_EQ(s[4], 0.f);
  EXPECT_EQ(t[1], 1.f);
  EXPECT_EQ(t[2], -1.f);
  EXPECT_EQ(t[3], 1.f);
  EXPECT_EQ(t[4], -1.f);
}

TEST(FastMath, DoubleMatchesLibm) {
  for (double x : {-700.0, -30.0, -1.0, -1e-300, 0.0, 1e-12, 0.5, 3.0, 40.0, 700.0}) {
    EXPECT_EQ(fast_exp(x), std::exp(x));
    EXPECT_EQ(fast_tanh(x), std::tanh(x));
    const double ref = 1.0 / (1.0 + std::exp(-x));
    EXPECT_NEAR(fast_sigmoid(x), ref, 1e-15 * ref + 1e-300);
  }
  EXPECT_TRUE(std::isnan(fast_sigmoid(std::numeric_limits<double>::quiet_NaN())));
}

using ArrayKernel = void (*)(const float*, float*, int);

// Bitwise equal, NaN counting as equal to NaN.
bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  std::uint32_t ua, ub;
  std::memcpy(&ua, &a, sizeof ua);
  std::memcpy(&ub, &b, sizeof ub);
  return ua == ub;
}

// Runs an array kernel over the sweep with the input and the output at
// element offsets 0..17 from a 64-byte boundary (so every alignment and, with
// n = size - offset, every tail length mod 16), and in place. The columns
// around the output must stay as they were.
template <typename Check>
void sweep_array_kernel(ArrayKernel kernel, Check check, Worst* worst) {
  const auto xs = sweep();
  const int n0 = static_cast<int>(xs.size());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kGuard = 12345.f;
  std::vector<float> in(n0 + 64), out(n0 + 64);
  for (int off = 0; off <= 17; ++off) {
    for (bool in_place : {false, true}) {
      const int n = n0 - off;
      const int out_off = in_place ? off : (off * 7 + 3) % 18;
      SCOPED_TRACE(testing::Message() << "offset " << off << (in_place ? ", in place" : ""));
      std::fill(out.begin(), out.end(), kGuard);
      float* y = out.data() + out_off;
      const float* x = y;
      if (in_place) {
        std::copy(xs.begin(), xs.begin() + n, y);
      } else {
        std::copy(xs.begin(), xs.begin() + n, in.data() + off);
        x = in.data() + off;
        std::fill(y, y + n, nan);  // poisoned: the kernel must write every column
      }
      kernel(x, y, n);
      ASSERT_EQ(out[out_off + n], kGuard) << "wrote past the end";
      if (out_off > 0) {
        ASSERT_EQ(out[out_off - 1], kGuard) << "wrote before the start";
      }
      ASSERT_NO_FATAL_FAILURE(check(xs.data(), y, static_cast<std::size_t>(n), worst));
    }
  }
}

TEST(FastMathArrays, SigmoidSweepAllAlignmentsAndTails) {
  Worst worst;
  ASSERT_NO_FATAL_FAILURE(sweep_array_kernel(
      [](const float* a, float* d, int n) { sigmoid_n(a, d, n); }, check_sigmoid, &worst));
  EXPECT_LE(worst.rel, kSigmoidMaxRel) << "worst at x = " << worst.x;
  std::printf("sigmoid_n: max relative error %.3g at x = %.9g\n", worst.rel, worst.x);
}

TEST(FastMathArrays, TanhSweepAllAlignmentsAndTails) {
  Worst worst;
  ASSERT_NO_FATAL_FAILURE(sweep_array_kernel(
      [](const float* a, float* d, int n) { tanh_n(a, d, n); }, check_tanh, &worst));
  EXPECT_LE(worst.rel, kTanhMaxRel) << "worst at x = " << worst.x;
  std::printf("tanh_n: max relative error %.3g at x = %.9g\n", worst.rel, worst.x);
}

// The array kernels give exactly what the scalar forms give (the AVX2 kernels
// run the same operations): over the sweep, and for every width 1..70, input
// and output offsets 0..7 and in place, whichever lane or tail an element
// falls in.
void check_same_as_scalar(ArrayKernel kernel, float (*scalar)(float)) {
  const auto sw = sweep();
  std::vector<float> ys(sw.size());
  kernel(sw.data(), ys.data(), static_cast<int>(sw.size()));
  for (std::size_t i = 0; i < sw.size(); ++i)
    ASSERT_TRUE(same_bits(ys[i], scalar(sw[i])))
        << "x = " << sw[i] << ": " << ys[i] << " != " << scalar(sw[i]);

  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {std::numeric_limits<float>::quiet_NaN(),
                           inf,
                           -inf,
                           FLT_MAX,
                           -FLT_MAX,
                           0.f,
                           -0.f,
                           FLT_TRUE_MIN,
                           -FLT_MIN,
                           0.625f,
                           -9.5f,
                           -88.f,
                           -103.99f,
                           -120.f,
                           25.f};
  for (int i = 0; xs.size() < 96; ++i) xs.push_back(std::sin(0.7f * i) * (1 + i % 23));
  std::vector<float> in(96 + 8), out(96 + 9);
  for (int w = 1; w <= 70; ++w)
    for (int in_off = 0; in_off < 8; ++in_off)
      for (int out_off = 0; out_off < 8; ++out_off)
        for (bool in_place : {false, true}) {
          if (in_place && out_off != in_off) continue;
          // A different window of inputs for each width, so every value meets every lane.
          const float* src = xs.data() + (w * 5 + in_off) % (96 - w + 1);
          std::fill(out.begin(), out.end(), 7.f);
          float* y = out.data() + out_off;
          const float* x = y;
          if (in_place) {
            std::copy(src, src + w, y);
          } else {
            std::copy(src, src + w, in.data() + in_off);
            x = in.data() + in_off;
          }
          kernel(x, y, w);
          ASSERT_EQ(y[w], 7.f) << "width " << w << ": wrote past the end";
          for (int j = 0; j < w; ++j)
            ASSERT_TRUE(same_bits(y[j], scalar(src[j])))
                << "width " << w << " column " << j << " x = " << src[j] << ": " << y[j]
                << " != " << scalar(src[j]) << (in_place ? " (in place)" : "");
        }
}

TEST(FastMathArrays, SigmoidMatchesScalarBitwise) {
  check_same_as_scalar([](const float* a, float* d, int n) { sigmoid_n(a, d, n); },
                       [](float x) { return fast_sigmoid(x); });
}

TEST(FastMathArrays, TanhMatchesScalarBitwise) {
  check_same_as_scalar([](const float* a, float* d, int n) { tanh_n(a, d, n); },
                       [](float x) { return fast_tanh(x); });
}

TEST(FastMathArrays, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> xs = {
      std::numeric_limits<float>::quiet_NaN(), inf, -inf, FLT_MAX, -FLT_MAX, -0.f};
  std::vector<float> s(xs.size()), t(xs.size());
  sigmoid_n(xs.data(), s.data(), static_cast<int>(xs.size()));
  tanh_n(xs.data(), t.data(), static_cast<int>(xs.size()));
  EXPECT_TRUE(std::isnan(s[0]));
  EXPECT_TRUE(std::isnan(t[0]));
  EXPECT_EQ(s[1], 1.f);
  EXPECT_EQ(s[2], 0.f);
  EXPECT_EQ(s[3], 1.f);
  EXPECT_EQ(s[4], 0.f);
  EXPECT_EQ(s[5], 0.5f);
  EXPECT_EQ(t[1], 1.f);
  EXPECT_EQ(t[2], -1.f);
  EXPECT_EQ(t[3], 1.f);
  EXPECT_EQ(t[4], -1.f);
  EXPECT_EQ(t[5], 0.f);
  EXPECT_TRUE(std::signbit(t[5]));
}

TEST(FastMathArrays, DoubleIsTheScalarReference) {
  const std::vector<double> xs = {-700.0, -3.0, -0.0, 1e-300, 0.5, 40.0};
  std::vector<double> s(xs.size()), t(xs.size());
  sigmoid_n(xs.data(), s.data(), static_cast<int>(xs.size()));
  tanh_n(xs.data(), t.data(), static_cast<int>(xs.size()));
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(s[i], fast_sigmoid(xs[i]));
    EXPECT_EQ(t[i], std::tanh(xs[i]));
  }
}

}  // namespace
}  // namespace copse::ops
