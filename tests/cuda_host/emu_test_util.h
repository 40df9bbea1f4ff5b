// Helpers of the host emulator's tests: random data, the comparison against
// the CPU backend, and the schedules every check runs under.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/random_vec.h"

#include "cuda/host_emu/emulator.h"

namespace copse::emutest {

using Vec = std::vector<float>;

using copse::testing::random_vec;

// As tests/test_cuda_backend.cpp's close(): ||got - ref|| / ||ref|| <= tol,
// every element within 10 * tol * max |ref|, NaN exactly where ref has NaN.
template <typename T>
::testing::AssertionResult close(const std::vector<T>& got, const std::vector<T>& ref, double tol,
                                 const std::string& what) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure()
           << what << ": sizes " << got.size() << " vs " << ref.size();
  double num = 0, den = 0, amax = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (std::isnan(g) != std::isnan(r))
      return ::testing::AssertionFailure()
             << what << ": element " << i << " is " << g << ", reference " << r;
    if (std::isnan(r)) continue;
    num += (g - r) * (g - r);
    den += r * r;
    amax = std::max(amax, std::fabs(r));
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (rel > tol)
    return ::testing::AssertionFailure()
           << what << ": norm-wise relative error " << rel << " > " << tol;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!std::isnan(ref[i]) &&
        std::fabs(static_cast<double>(got[i]) - ref[i]) > 10 * tol * (amax + 1e-30))
      return ::testing::AssertionFailure()
             << what << ": element " << i << " is " << got[i] << ", reference " << ref[i];
  return ::testing::AssertionSuccess();
}

// The schedules a check runs under: random fiber interleavings (two seeds)
// and free OS threads. Under ThreadSanitizer (scripts/tsan.sh) every launch
// runs on threads, once.
#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif

inline std::vector<cuda::emu::Options> schedules() {
  using cuda::emu::Schedule;
  if (kThreadSanitizer) return {{Schedule::Threads, 0}};
  return {{Schedule::Fibers, 1}, {Schedule::Fibers, 0x5eed}, {Schedule::Threads, 0}};
}

// For the checks with many barriers (the interpreter, the reductions): the
// fibers only, where a barrier costs a context switch instead of waking OS
// threads; the TSan build runs them on threads.
inline std::vector<cuda::emu::Options> fiber_schedules(int seeds = 2) {
  using cuda::emu::Schedule;
  if (kThreadSanitizer) return {{Schedule::Threads, 0}};
  std::vector<cuda::emu::Options> v = {{Schedule::Fibers, 1}, {Schedule::Fibers, 0x5eed}};
  v.resize(seeds);
  return v;
}

inline std::string describe(const cuda::emu::Options& o) {
  return o.schedule == cuda::emu::Schedule::Threads ? std::string("threads")
                                                    : "fibers seed " + std::to_string(o.seed);
}

}  // namespace copse::emutest
