// bench_fast_math: ns per element of float sigmoid and tanh on one thread, as
// the CPU fused interpreter runs them (one row of `width` floats in L1): the
// scalar fast_* in a loop GCC vectorizes against the array kernels of
// ops/fast_math_arrays.h. Both are checked against libm before timing.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "benchmarks/bench_util.h"
#include "ops/fast_math.h"
#include "ops/fast_math_arrays.h"

namespace {

using copse::bench::now_s;
namespace ops = copse::ops;

using Kernel = void (*)(const float* a, float* d, int n);

// The scalar forms, in loops GCC vectorizes (what the interpreter ran before
// the array kernels). noinline: timed as calls, like the array kernels.
__attribute__((noinline)) void sigmoid_loop(const float* a, float* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = ops::fast_sigmoid(a[j]);
}
__attribute__((noinline)) void tanh_loop(const float* a, float* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = ops::fast_tanh(a[j]);
}
__attribute__((noinline)) void add_loop(const float* a, float* d, int n) {
  for (int j = 0; j < n; ++j) d[j] = a[j] + d[j];
}
void sigmoid_array(const float* a, float* d, int n) { ops::sigmoid_n(a, d, n); }
void tanh_array(const float* a, float* d, int n) { ops::tanh_n(a, d, n); }

// Max relative error against libm in double over [-30, 30] (results >= FLT_MIN).
double max_rel_error(Kernel f, bool is_tanh) {
  std::vector<float> x;
  for (double v = -30.0; v <= 30.0; v += 1e-3) x.push_back(static_cast<float>(v));
  std::vector<float> y(x.size(), NAN);
  f(x.data(), y.data(), static_cast<int>(x.size()));
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    const double e = std::exp(-std::fabs(v));
    const double ref = is_tanh ? std::tanh(v) : (v >= 0 ? 1.0 : e) / (1.0 + e);
    if (std::fabs(ref) < FLT_MIN) continue;
    worst = std::max(worst, std::fabs(y[i] - ref) / std::fabs(ref));
  }
  return worst;
}

// Best ns per element over `reps` timings of `calls` calls on one row.
double ns_per_element(Kernel f, int width, int reps) {
  std::vector<float> a(width), d(width, 0.f);
  for (int j = 0; j < width; ++j) a[j] = 6.f * std::sin(0.37f * j);  // [-6, 6]: LSTM gates
  const int calls = std::max(1, 200000 / width);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    for (int c = 0; c < calls; ++c) {
      f(a.data(), d.data(), width);
      asm volatile("" : : "r"(d.data()) : "memory");
    }
    best = std::min(best, (now_s() - t0) / (static_cast<double>(calls) * width));
  }
  return best * 1e9;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return in ? one : "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"float sigmoid / tanh: ns per element, scalar loops vs array kernels"};
  int width = 128;
  int reps = 300;
  app.add_option("--width", width, "floats per call (a fused row)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--reps", reps, "timings per kernel; the best is reported")
      ->check(CLI::Range(1, 100000));
  CLI11_PARSE(app, argc, argv);

#if defined(__AVX2__) && defined(__FMA__)
  const char* isa = "AVX2+FMA";
#else
  const char* isa = "portable (no AVX2+FMA)";
#endif
  fmt::print("bench_fast_math | width {} | best of {} timings | one thread | array kernels: {}\n",
             width, reps, isa);
  fmt::print("machine: {}, load average {}\n\n", copse::bench::cpu_model(), load_average());

  struct Row {
    const char* name;
    Kernel f;
    int check;  // 0 none, 1 sigmoid, 2 tanh
  };
  const Row rows[] = {{"add (reference)", add_loop, 0},
                      {"fast_sigmoid loop", sigmoid_loop, 1},
                      {"sigmoid_n", sigmoid_array, 1},
                      {"fast_tanh loop", tanh_loop, 2},
                      {"tanh_n", tanh_array, 2}};
  fmt::print("| {:<17} | {:>13} | {:>11} |\n", "kernel", "max rel. err", "ns/element");
  fmt::print("|:------------------|--------------:|------------:|\n");
  for (const Row& row : rows) {
    std::string err = "-";
    if (row.check != 0) {
      const double e = max_rel_error(row.f, row.check == 2);
      if (!(e < 1e-6)) {
        std::fprintf(stderr, "%s: max relative error %g against libm\n", row.name, e);
        return 1;
      }
      err = fmt::format("{:.3g}", e);
    }
    fmt::print("| {:<17} | {:>13} | {:>11.3f} |\n", row.name, err,
               ns_per_element(row.f, width, reps));
  }
  fmt::print("\nload average at the end: {}\n", load_average());
  return 0;
}
