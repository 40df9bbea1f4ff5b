// Uniform random float vectors for the tests, reproducible from a seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace copse::testing {

inline std::vector<float> random_vec(std::size_t n, std::uint32_t seed, float lo = -1.f,
                                     float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace copse::testing
