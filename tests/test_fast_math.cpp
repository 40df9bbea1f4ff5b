// fast_exp / fast_sigmoid / fast_tanh (float) against libm in double over a
// dense sweep, through vectorized loops as the kernels use them.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/fast_math.h"

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

TEST(FastMath, SigmoidFloat) {
  const auto xs = sweep();
  const auto ys = apply(xs, [](float x) { return fast_sigmoid(x); });
  double worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    const double ref = x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
    ASSERT_TRUE(std::isfinite(ys[i])) << xs[i];
    ASSERT_GE(ys[i], 0.f);
    ASSERT_LE(ys[i], 1.f);
    if (ref >= FLT_MIN) {
      const double rel = std::fabs(ys[i] - ref) / ref;
      if (rel > worst) worst = rel, worst_x = xs[i];
    } else {
      ASSERT_LE(std::fabs(ys[i] - ref), 2.0 * FLT_TRUE_MIN) << xs[i];
    }
  }
  EXPECT_LE(worst, 2e-7) << "worst at x = " << worst_x;
  std::printf("fast_sigmoid: max relative error %.3g at x = %.9g\n", worst, worst_x);
}

TEST(FastMath, TanhFloat) {
  const auto xs = sweep();
  const auto ys = apply(xs, [](float x) { return fast_tanh(x); });
  double worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double ref = std::tanh(static_cast<double>(xs[i]));
    ASSERT_TRUE(std::isfinite(ys[i])) << xs[i];
    ASSERT_LE(std::fabs(ys[i]), 1.f);
    if (ref == 0) {
      ASSERT_EQ(ys[i], 0.f);
      ASSERT_EQ(std::signbit(ys[i]), std::signbit(xs[i]));
      continue;
    }
    const double rel = std::fabs(ys[i] - ref) / std::fabs(ref);
    if (rel > worst) worst = rel, worst_x = xs[i];
  }
  EXPECT_LE(worst, 5e-7) << "worst at x = " << worst_x;
  std::printf("fast_tanh: max relative error %.3g at x = %.9g\n", worst, worst_x);
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

}  // namespace
}  // namespace copse::ops
