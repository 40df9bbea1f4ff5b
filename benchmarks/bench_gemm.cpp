// bench_gemm: single-precision GEMM GFLOP/s at the shapes copse runs, oneDNN
// (through CpuBackend) against OpenBLAS when built with it. Results are
// checked against a naive loop before anything is timed.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "benchmarks/bench_util.h"
#include "common/error.h"
#include "ops/cpu_backend.h"

#ifdef COPSE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {

using copse::bench::cpu_model;

using copse::ops::CpuBackend;

struct Shape {
  int m, n, k;
};

// C[m,n] = A[m,k] * B[k,n], all row-major and dense.
using GemmFn = std::function<void(int threads, const Shape&, const float*, const float*, float*)>;

// GFLOP/s per shape (m, n, k): {1 thread, 2 threads}.
using Table = std::map<std::tuple<int, int, int>, std::pair<double, double>>;

// The 1-minute load average: other processes skew the timings.
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return in ? one : "unknown";
}

// Checks rows {0, m/2, m-1} of C against a naive double loop.
void check(const char* lib, const Shape& s, const float* a, const float* b, const float* c) {
  for (int i : {0, s.m / 2, s.m - 1})
    for (int j = 0; j < s.n; ++j) {
      double ref = 0;
      for (int p = 0; p < s.k; ++p) ref += double(a[long(i) * s.k + p]) * b[long(p) * s.n + j];
      const double err = std::fabs(c[long(i) * s.n + j] - ref);
      if (!(err <= 1e-4 * std::sqrt(double(s.k)) * (1 + std::fabs(ref))))
        copse::fail("[bench_gemm] {} wrong at m={} n={} k={} ({}, {}): {} vs {}", lib, s.m, s.n,
                    s.k, i, j, c[long(i) * s.n + j], ref);
    }
}

// Median GFLOP/s over single calls (at least 5, for at least budget_s after
// 2 warm-up calls). The median, not the best: other processes on a shared
// machine stall some calls, and the table should show what a run sees.
double time_gflops(const GemmFn& fn, int threads, const Shape& s, const float* a, const float* b,
                   float* c, double budget_s) {
  using clock = std::chrono::steady_clock;
  fn(threads, s, a, b, c);  // warm-up (packing buffers, thread team)
  fn(threads, s, a, b, c);
  std::vector<double> times;
  const auto start = clock::now();
  while (times.size() < 5 ||
         std::chrono::duration<double>(clock::now() - start).count() < budget_s) {
    const auto t0 = clock::now();
    fn(threads, s, a, b, c);
    times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return 2.0 * s.m * s.n * s.k / times[times.size() / 2] * 1e-9;
}

std::vector<Shape> shapes() {
  std::vector<Shape> v;
  for (int m : {8, 64, 256, 2048})
    for (auto nk : {std::pair{640, 256}, {1280, 512}, {750, 300}, {450, 300}})
      v.push_back({m, nk.first, nk.second});
  v.push_back({2048, 2048, 2048});
  return v;
}

// Times `fn` at every shape for 1 and 2 threads.
Table run_all(const char* lib, const GemmFn& fn, double budget_s) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Table out;
  for (const Shape& s : shapes()) {
    std::vector<float> a(long(s.m) * s.k), b(long(s.k) * s.n), c(long(s.m) * s.n);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    for (int threads : {1, 2}) {  // each thread count checked on a NaN-poisoned C
      std::fill(c.begin(), c.end(), std::nanf(""));
      fn(threads, s, a.data(), b.data(), c.data());
      check(lib, s, a.data(), b.data(), c.data());
    }
    const double g1 = time_gflops(fn, 1, s, a.data(), b.data(), c.data(), budget_s);
    const double g2 = time_gflops(fn, 2, s, a.data(), b.data(), c.data(), budget_s);
    out[{s.m, s.n, s.k}] = {g1, g2};
  }
  return out;
}

GemmFn dnnl_fn() {
  return [](int threads, const Shape& s, const float* a, const float* b, float* c) {
    CpuBackend<float> be(threads);
    be.gemm(false, false, s.m, s.n, s.k, 1.f, a, s.k, b, s.n, 0.f, c, s.n);
  };
}

#ifdef COPSE_HAVE_OPENBLAS
GemmFn openblas_fn() {
  return [](int threads, const Shape& s, const float* a, const float* b, float* c) {
    openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.m, s.n, s.k, 1.f, a, s.k, b, s.n,
                0.f, c, s.n);
  };
}

// Runs this binary again with OPENBLAS_CORETYPE set (it is read when the
// library loads) and parses its "m n k gf1 gf2" lines.
Table run_child(const std::string& core, double budget_s) {
  const std::string cmd = fmt::format("OPENBLAS_CORETYPE={} /proc/{}/exe --openblas-only "
                                      "--budget {}",
                                      core, static_cast<long>(getpid()), budget_s);
  Table out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) copse::fail("[bench_gemm] cannot run '{}'", cmd);
  int m, n, k;
  double g1, g2;
  while (std::fscanf(f, "%d %d %d %lf %lf", &m, &n, &k, &g1, &g2) == 5) out[{m, n, k}] = {g1, g2};
  if (pclose(f) != 0) copse::fail("[bench_gemm] '{}' failed", cmd);
  return out;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sgemm GFLOP/s: oneDNN (CpuBackend) vs OpenBLAS"};
  bool openblas_only = false;
  double budget_s = 0.1;
  std::string forced_core = "Haswell";
  app.add_flag("--openblas-only", openblas_only, "print only OpenBLAS rows (used internally)");
  app.add_option("--budget", budget_s, "seconds of timed calls per measurement");
  app.add_option("--openblas-core", forced_core, "OPENBLAS_CORETYPE for the forced column");
  CLI11_PARSE(app, argc, argv);

  try {
#ifdef COPSE_HAVE_OPENBLAS
    if (openblas_only) {
      for (auto& [shape, g] : run_all("openblas", openblas_fn(), budget_s))
        std::printf("%d %d %d %.3f %.3f\n", std::get<0>(shape), std::get<1>(shape),
                    std::get<2>(shape), g.first, g.second);
      return 0;
    }
#else
    if (openblas_only) copse::fail("[bench_gemm] built without OpenBLAS");
#endif
    const dnnl_version_t* v = dnnl_version();
    fmt::print("cpu: {} ({} logical CPUs, OpenMP max threads {}), load average {}\n",
               cpu_model(), std::thread::hardware_concurrency(), omp_get_max_threads(),
               load_average());
    fmt::print("oneDNN {}.{}.{} ({} threading), timing: median call over >= {} s\n",
               v->major, v->minor, v->patch,
               v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "non-OpenMP", budget_s);
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
    fmt::print("OMP_WAIT_POLICY={}\n", wait_policy ? wait_policy : "(unset)");
    fmt::print("C[M,N] = A[M,K] * B[K,N], row-major, no transposes; GFLOP/s = 2MNK/t\n");

    const auto dnnl = run_all("dnnl", dnnl_fn(), budget_s);
#ifdef COPSE_HAVE_OPENBLAS
    const char* env_core = std::getenv("OPENBLAS_CORETYPE");
    fmt::print("OpenBLAS: {} (core {}{})\n", openblas_get_config(), openblas_get_corename(),
               env_core ? " from OPENBLAS_CORETYPE" : ", auto-detected");
    const auto oblas = run_all("openblas", openblas_fn(), budget_s);
    const auto forced = run_child(forced_core, budget_s);
    fmt::print("\n| {:>4} | {:>4} | {:>4} | {:>9} | {:>9} | {:>11} | {:>11} | {:>11} | {:>11} |\n",
               "M", "N", "K", "dnnl 1T", "dnnl 2T", "oblas 1T", "oblas 2T",
               fmt::format("{} 1T", forced_core.substr(0, 7)),
               fmt::format("{} 2T", forced_core.substr(0, 7)));
    fmt::print("|-----:|-----:|-----:|----------:|----------:|------------:|------------:|"
               "------------:|------------:|\n");
    for (const Shape& s : shapes()) {
      const auto key = std::tuple{s.m, s.n, s.k};
      const auto d = dnnl.at(key), o = oblas.at(key);
      const auto it = forced.find(key);
      const double f1 = it == forced.end() ? NAN : it->second.first;
      const double f2 = it == forced.end() ? NAN : it->second.second;
      fmt::print("| {:>4} | {:>4} | {:>4} | {:>9.1f} | {:>9.1f} | {:>11.1f} | {:>11.1f} | "
                 "{:>11.1f} | {:>11.1f} |\n",
                 s.m, s.n, s.k, d.first, d.second, o.first, o.second, f1, f2);
    }
#else
    fmt::print("OpenBLAS: not built in\n\n| {:>4} | {:>4} | {:>4} | {:>9} | {:>9} |\n", "M", "N",
               "K", "dnnl 1T", "dnnl 2T");
    fmt::print("|-----:|-----:|-----:|----------:|----------:|\n");
    for (const Shape& s : shapes()) {
      const auto d = dnnl.at({s.m, s.n, s.k});
      fmt::print("| {:>4} | {:>4} | {:>4} | {:>9.1f} | {:>9.1f} |\n", s.m, s.n, s.k, d.first,
                 d.second);
    }
#endif
    fmt::print("\nload average at the end: {}\n", load_average());
  } catch (const copse::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
