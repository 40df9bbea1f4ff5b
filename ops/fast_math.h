// Branch-free exp, sigmoid and tanh that GCC auto-vectorizes inside loops
// (no -ffast-math needed): float to a few ulp; double defers to libm (tests).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Forced inlining: GCC's heuristics sometimes leave these as calls in big
// switch statements, and a call in a loop body blocks vectorization.
#if defined(__GNUC__)
#define COPSE_FAST_INLINE inline __attribute__((always_inline))
#else
#define COPSE_FAST_INLINE inline
#endif

namespace copse::ops {

namespace fast_math_detail {

COPSE_FAST_INLINE float fmadd(float a, float b, float c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

COPSE_FAST_INLINE std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

COPSE_FAST_INLINE float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace fast_math_detail

// exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n*ln2 in [-ln2/2, ln2/2]
// (Cody-Waite split of ln2), exp(r) by the Cephes expf minimax polynomial.
// 2^n is applied as 2^(n/2) * 2^(n - n/2) so results down into the subnormal
// range are right. Inputs are clamped to [-104, 88.72283]: finite in, finite out;
// the comparisons are false for NaN, so NaN propagates.
COPSE_FAST_INLINE float fast_exp(float x) {
  using namespace fast_math_detail;
  constexpr float kShift = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x < -104.f ? -104.f : x;
  x = x > 88.72283f ? 88.72283f : x;  // just under ln(FLT_MAX)
  const float t = fmadd(x, 1.44269504088896341f, kShift);
  const float n = t - kShift;
  float r = fmadd(n, -0.693359375f, x);
  r = fmadd(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmadd(p, r, 1.3981999507e-3f);
  p = fmadd(p, r, 8.3334519073e-3f);
  p = fmadd(p, r, 4.1665795894e-2f);
  p = fmadd(p, r, 1.6666665459e-1f);
  p = fmadd(p, r, 5.0000001201e-1f);
  p = fmadd(p, r * r, r) + 1.f;
  // n as an integer, read from the mantissa of t (no float->int UB on NaN).
  const std::int32_t ni = static_cast<std::int32_t>(bits_of(t) - bits_of(kShift));
  const std::int32_t n1 = ni >> 1;
  const std::int32_t n2 = ni - n1;
  const float s1 = float_of(static_cast<std::uint32_t>(n1 + 127) << 23);
  const float s2 = float_of(static_cast<std::uint32_t>(n2 + 127) << 23);
  return p * s1 * s2;
}

// sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, e = exp(-|x|):
// never cancels, so the relative error stays small over the whole range.
COPSE_FAST_INLINE float fast_sigmoid(float x) {
  const float e = fast_exp(-std::fabs(x));
  const float num = x >= 0.f ? 1.f : e;
  return num / (1.f + e);
}

// tanh(x) = x + x^3 P(x^2) for |x| < 0.625 (Cephes tanhf polynomial, so no
// cancellation near 0), else sign(x) * (1 - 2 / (exp(2|x|) + 1)); both are
// computed and one is kept.
COPSE_FAST_INLINE float fast_tanh(float x) {
  using namespace fast_math_detail;
  // Work on |x|, put the sign back at the end (so tanh(-0) = -0).
  const float ax = std::fabs(x);
  const float z = ax * ax;
  float p = -5.70498872745e-3f;
  p = fmadd(p, z, 2.06390887954e-2f);
  p = fmadd(p, z, -5.37397155531e-2f);
  p = fmadd(p, z, 1.33314422036e-1f);
  p = fmadd(p, z, -3.33332819422e-1f);
  const float small = fmadd(p * z, ax, ax);
  // fast_exp clamps its argument, so |x| up to inf gives 1 - 2/(big) = 1.
  const float large = 1.f - 2.f / (fast_exp(2.f * ax) + 1.f);
  // Select by bit mask: with `ax < 0.625f ? small : large` GCC sinks each
  // side into a branch and then cannot vectorize the loop. NaN takes `large`.
  const std::uint32_t use_small = 0u - static_cast<std::uint32_t>(ax < 0.625f);
  const float t = float_of((bits_of(small) & use_small) | (bits_of(large) & ~use_small));
  return std::copysign(t, x);
}

// Double: the reference path for gradient checks, libm accuracy.
COPSE_FAST_INLINE double fast_exp(double x) { return std::exp(x); }

COPSE_FAST_INLINE double fast_sigmoid(double x) {
  const double e = std::exp(-std::fabs(x));
  return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}

COPSE_FAST_INLINE double fast_tanh(double x) { return std::tanh(x); }

}  // namespace copse::ops
