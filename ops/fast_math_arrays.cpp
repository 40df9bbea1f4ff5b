// sigmoid_n / tanh_n: the operations of fast_sigmoid / fast_tanh on 8 floats
// at a time with AVX2 + FMA, two independent vectors per loop iteration (the
// chain is long; two in flight keep the FMA pipes busier). Masked loads and
// stores do the tail, so every element goes through the same code.
#include "ops/fast_math_arrays.h"

#include "ops/fast_math.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define COPSE_FAST_MATH_AVX2 1
#endif

namespace copse::ops {

#ifdef COPSE_FAST_MATH_AVX2
namespace {

COPSE_FAST_INLINE __m256 splat(float v) { return _mm256_set1_ps(v); }

// As fast_math_detail::reduce_ln2: x = n*ln2 + r, s = 2^(n + kBias - 127).
template <int kBias>
COPSE_FAST_INLINE __m256 reduce_ln2(__m256 x, __m256& s) {
  const __m256 shift = splat(12582912.f + kBias);
  const __m256 t = _mm256_fmadd_ps(x, splat(1.44269504088896341f), shift);
  const __m256 n = _mm256_sub_ps(t, shift);
  __m256 r = _mm256_fmadd_ps(n, splat(-0.693359375f), x);
  r = _mm256_fmadd_ps(n, splat(2.12194440e-4f), r);
  s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
  return r;
}

// As fast_math_detail::expm1_reduced: exp(r) - 1 = r + r^2 P(r), Estrin.
COPSE_FAST_INLINE __m256 expm1_reduced(__m256 r) {
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 p01 = _mm256_fmadd_ps(splat(1.6666665459e-1f), r, splat(5.0000001201e-1f));
  const __m256 p23 = _mm256_fmadd_ps(splat(8.3334519073e-3f), r, splat(4.1665795894e-2f));
  const __m256 p45 = _mm256_fmadd_ps(splat(1.9875691500e-4f), r, splat(1.3981999507e-3f));
  const __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, r2, p23), r2, p01);
  return _mm256_fmadd_ps(p, r2, r);
}

// sigmoid(x) = (x < 0 ? e' : 2^64) / (2^64 + e'), e' = 2^64 exp(-|x|).
// max(-104, v) returns v when v is NaN, so NaN propagates.
struct Sigmoid8 {
  static COPSE_FAST_INLINE __m256 eval(__m256 x) {
    const __m256 scale = splat(18446744073709551616.f);  // 2^64
    const __m256 nx = _mm256_max_ps(splat(-104.f), _mm256_or_ps(x, splat(-0.f)));
    __m256 s;
    const __m256 r = reduce_ln2<127 + 64>(nx, s);
    const __m256 e = _mm256_fmadd_ps(expm1_reduced(r), s, s);
    const __m256 num = _mm256_blendv_ps(scale, e, x);  // picks e where x's sign bit is set
    return _mm256_div_ps(num, _mm256_add_ps(scale, e));
  }
};

// tanh(x) = sign(x) * m / (m + 2), m = expm1(min(2|x|, 40)).
struct Tanh8 {
  static COPSE_FAST_INLINE __m256 eval(__m256 x) {
    const __m256 sign = splat(-0.f);
    const __m256 ax = _mm256_andnot_ps(sign, x);
    const __m256 x2 = _mm256_min_ps(splat(40.f), _mm256_add_ps(ax, ax));
    __m256 s;
    const __m256 r = reduce_ln2<127>(x2, s);
    const __m256 m = _mm256_fmadd_ps(expm1_reduced(r), s, _mm256_sub_ps(s, splat(1.f)));
    const __m256 t = _mm256_div_ps(m, _mm256_add_ps(m, splat(2.f)));
    return _mm256_or_ps(t, _mm256_and_ps(x, sign));  // t >= +0 or NaN
  }
};

// d[j] = f(a[j]): 16 per iteration, then 8, then a masked tail. Each block is
// loaded before it is stored, so d == a works.
template <typename Op>
void apply_n(const float* a, float* d, int n) {
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256 y0 = Op::eval(_mm256_loadu_ps(a + j));
    const __m256 y1 = Op::eval(_mm256_loadu_ps(a + j + 8));
    _mm256_storeu_ps(d + j, y0);
    _mm256_storeu_ps(d + j + 8, y1);
  }
  if (j + 8 <= n) {
    _mm256_storeu_ps(d + j, Op::eval(_mm256_loadu_ps(a + j)));
    j += 8;
  }
  if (j < n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), lane);
    _mm256_maskstore_ps(d + j, mask, Op::eval(_mm256_maskload_ps(a + j, mask)));
  }
}

}  // namespace

void sigmoid_n(const float* a, float* d, int n) { apply_n<Sigmoid8>(a, d, n); }
void tanh_n(const float* a, float* d, int n) { apply_n<Tanh8>(a, d, n); }

#else  // no AVX2 + FMA: the scalar forms, vectorized by the compiler where it can

void sigmoid_n(const float* a, float* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = fast_sigmoid(a[j]);
}
void tanh_n(const float* a, float* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = fast_tanh(a[j]);
}

#endif

void sigmoid_n(const double* a, double* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = fast_sigmoid(a[j]);
}
void tanh_n(const double* a, double* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = fast_tanh(a[j]);
}

}  // namespace copse::ops
