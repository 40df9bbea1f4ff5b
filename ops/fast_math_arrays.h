// Array forms of fast_sigmoid / fast_tanh (ops/fast_math.h) for the CPU fused
// interpreter: d[j] = f(a[j]) for j < n, any alignment, d == a allowed.
#pragma once

namespace copse::ops {

// float: AVX2 + FMA intrinsics when the build targets them (bitwise equal to
// the scalar fast_* there), else the scalar fast_* in a loop.
void sigmoid_n(const float* a, float* d, int n);
void tanh_n(const float* a, float* d, int n);

// double: the libm reference path (fast_sigmoid / fast_tanh for double).
void sigmoid_n(const double* a, double* d, int n);
void tanh_n(const double* a, double* d, int n);

}  // namespace copse::ops
