// Branch-free exp, sigmoid and tanh that GCC auto-vectorizes inside loops
// (no -ffast-math needed): float to a few ulp; double defers to libm (tests).
// Array forms with AVX2 intrinsics: ops/fast_math_arrays.h.
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

// x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2); sets s = 2^(n + kBias - 127).
// t = x/ln2 + 1.5*2^23 + kBias rounds to an integer whose low mantissa bits are
// n + kBias, so a shift by 23 puts them in the exponent field. Callers keep
// n + kBias in [1, 254] (their clamps); NaN gives r = NaN.
template <int kBias>
COPSE_FAST_INLINE float reduce_ln2(float x, float& s) {
  constexpr float kShift = 12582912.f + kBias;
  const float t = fmadd(x, 1.44269504088896341f, kShift);
  const float n = t - kShift;
  float r = fmadd(n, -0.693359375f, x);
  r = fmadd(n, 2.12194440e-4f, r);
  s = float_of(bits_of(t) << 23);
  return r;
}

// exp(r) - 1 = r + r^2 P(r) for |r| <= ln2/2: the Cephes expf polynomial,
// evaluated by Estrin's scheme (a shorter dependency chain than Horner's).
COPSE_FAST_INLINE float expm1_reduced(float r) {
  const float r2 = r * r;
  const float p01 = fmadd(1.6666665459e-1f, r, 5.0000001201e-1f);
  const float p23 = fmadd(8.3334519073e-3f, r, 4.1665795894e-2f);
  const float p45 = fmadd(1.9875691500e-4f, r, 1.3981999507e-3f);
  const float p = fmadd(fmadd(p45, r2, p23), r2, p01);
  return fmadd(p, r2, r);
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
  const float p = expm1_reduced(r) + 1.f;
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
// Both are scaled by 2^64 (e' = 2^64 e = s (1 + q), one rounding), so e' is
// normal down to the clamp at -104 and results in the subnormal range come
// from one correctly rounded division. sigmoid_n (ops/fast_math_arrays.cpp)
// runs the same operations with AVX2 intrinsics (bitwise equal: the tests check).
COPSE_FAST_INLINE float fast_sigmoid(float x) {
  using namespace fast_math_detail;
  constexpr float kScale = 18446744073709551616.f;  // 2^64
  float nx = -std::fabs(x);
  nx = nx < -104.f ? -104.f : nx;  // false for NaN: NaN propagates
  float s;
  const float r = reduce_ln2<127 + 64>(nx, s);
  const float e = fmadd(expm1_reduced(r), s, s);
  return (std::signbit(x) ? e : kScale) / (kScale + e);
}

// tanh(|x|) = m / (m + 2) with m = expm1(2|x|) = s (1 + q) - 1 = s q + (s - 1)
// (one rounding; s - 1 is exact up to s = 2^24, and beyond that tanh rounds
// to 1 anyway): no cancellation near 0, so one formula covers the whole
// range. 2|x| is clamped to 40 (tanh rounds to 1 from |x| = 9.01 on), so m
// stays finite; NaN propagates; the sign is put back at the end (tanh(-0) =
// -0). Same operations as tanh_n in ops/fast_math_arrays.cpp.
COPSE_FAST_INLINE float fast_tanh(float x) {
  using namespace fast_math_detail;
  // Clamping 2|x| rather than |x|: GCC would sink `ax + ax` into the branches
  // of the clamp, and then not vectorize a loop of fast_tanh.
  float x2 = 2.f * std::fabs(x);
  x2 = x2 > 40.f ? 40.f : x2;
  float s;
  const float r = reduce_ln2<127>(x2, s);
  const float m = fmadd(expm1_reduced(r), s, s - 1.f);
  return std::copysign(m / (m + 2.f), x);
}

// Double: the reference path for gradient checks, libm accuracy.
COPSE_FAST_INLINE double fast_exp(double x) { return std::exp(x); }

COPSE_FAST_INLINE double fast_sigmoid(double x) {
  const double e = std::exp(-std::fabs(x));
  return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}

COPSE_FAST_INLINE double fast_tanh(double x) { return std::tanh(x); }

}  // namespace copse::ops
