// A small data set in the SICK layout (DIR/{train,dev,test}/{a,b}.toks,
// {a,b}.parents, sim.txt) for the relatedness task's tests: sentence b is
// sentence a with k of its n words replaced, on the same dependency tree,
// and the score is 5 - 4 k / n, so relatedness is learnable from the words.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace copse::testing {

inline void write_sick_split(const std::filesystem::path& dir, int pairs, std::mt19937& rng) {
  std::filesystem::create_directories(dir);
  std::ofstream at(dir / "a.toks"), ap(dir / "a.parents"), bt(dir / "b.toks"),
      bp(dir / "b.parents"), sim(dir / "sim.txt");
  for (int k = 0; k < pairs; ++k) {
    const int n = 3 + static_cast<int>(rng() % 8);
    // Heads: word 1..n; a random root, every other word under an earlier one
    // in a random order.
    std::vector<int> order(n), head(n + 1, 0);
    for (int i = 0; i < n; ++i) order[i] = i + 1;
    std::shuffle(order.begin(), order.end(), rng);
    for (int i = 1; i < n; ++i) head[order[i]] = order[rng() % i];
    std::vector<std::string> a(n), b(n);
    int changed = 0;
    const int to_change = static_cast<int>(rng() % (n + 1));
    for (int i = 0; i < n; ++i) {
      a[i] = fmt::format("w{}", rng() % 30);
      b[i] = i < to_change ? fmt::format("v{}", rng() % 30) : a[i];
      changed += b[i] != a[i];
    }
    std::string heads;
    for (int i = 1; i <= n; ++i) heads += (i > 1 ? " " : "") + std::to_string(head[i]);
    at << fmt::format("{}\n", fmt::join(a, " "));
    bt << fmt::format("{}\n", fmt::join(b, " "));
    ap << heads << "\n";
    bp << heads << "\n";
    sim << fmt::format("{:.4f}\n", 5.0 - 4.0 * changed / n);
  }
}

// train / dev / test of the given sizes under `dir`.
inline void write_sick_fixture(const std::filesystem::path& dir, int train, int dev, int test,
                               unsigned seed = 1) {
  std::mt19937 rng(seed);
  write_sick_split(dir / "train", train, rng);
  write_sick_split(dir / "dev", dev, rng);
  write_sick_split(dir / "test", test, rng);
}

}  // namespace copse::testing
