// Arena: alignment, reuse without system allocations after warm-up, peak bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "memory/arena.h"
#include "tests/host_test_backend.h"

namespace copse::memory {
namespace {

using test_support::HostTestBackend;

template <typename T>
class ArenaTest : public ::testing::Test {};
using ArenaTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ArenaTest, ArenaTypes);

TYPED_TEST(ArenaTest, BlocksAreAlignedDisjointAndWritable) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  Arena<T> arena(backend, 256);
  const std::size_t counts[] = {1, 3, 16, 17, 100, 1000, 5, 4096};
  std::vector<std::pair<T*, std::size_t>> blocks;
  for (std::size_t c : counts) {
    T* p = arena.alloc(c);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u) << "count " << c;
    for (std::size_t i = 0; i < c; ++i) p[i] = static_cast<T>(blocks.size() + 1);
    blocks.push_back({p, c});
  }
  // No block overwrote another.
  for (std::size_t b = 0; b < blocks.size(); ++b)
    for (std::size_t i = 0; i < blocks[b].second; ++i)
      ASSERT_EQ(blocks[b].first[i], static_cast<T>(b + 1)) << "block " << b << " elem " << i;
  EXPECT_EQ(arena.alloc(0), nullptr);
}

TYPED_TEST(ArenaTest, BytesInUseArePaddedTo64) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  Arena<T> arena(backend, 1024);
  arena.alloc(1);
  EXPECT_EQ(arena.bytes_in_use(), 64u);
  arena.alloc(64 / sizeof(T) + 1);
  EXPECT_EQ(arena.bytes_in_use(), 64u + 128u);
  EXPECT_EQ(arena.peak_bytes(), 192u);
}

TYPED_TEST(ArenaTest, NoSystemAllocationsAfterWarmUp) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  Arena<T> arena(backend, 512);
  // A "batch" that needs far more than the initial chunk, in many blocks.
  auto batch = [&](std::size_t scale) {
    for (std::size_t i = 1; i <= 40; ++i) {
      T* p = arena.alloc(i * scale);
      std::memset(p, 0, i * scale * sizeof(T));
    }
  };
  batch(10);
  EXPECT_GT(arena.num_chunks(), 1);
  arena.reset();
  EXPECT_EQ(arena.num_chunks(), 1);  // coalesced
  const long warm = arena.num_system_allocations();
  EXPECT_EQ(warm, backend.allocations);
  for (int b = 0; b < 10; ++b) {
    batch(b % 2 ? 10 : 7);  // never larger than the first batch
    arena.reset();
  }
  EXPECT_EQ(arena.num_system_allocations(), warm);
  EXPECT_EQ(backend.allocations, warm);
  EXPECT_EQ(arena.num_chunks(), 1);

  // A larger batch grows the arena once more, then it is stable again.
  batch(30);
  arena.reset();
  const long warm2 = arena.num_system_allocations();
  EXPECT_GT(warm2, warm);
  for (int b = 0; b < 5; ++b) {
    batch(30);
    arena.reset();
  }
  EXPECT_EQ(arena.num_system_allocations(), warm2);
  EXPECT_EQ(backend.live_allocations(), 1u);
}

TYPED_TEST(ArenaTest, PeakAndLastBatchBytes) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  Arena<T> arena(backend, 64);
  arena.alloc(1000);
  arena.alloc(24);
  const std::size_t first = ((1000 * sizeof(T) + 63) / 64 + (24 * sizeof(T) + 63) / 64) * 64;
  EXPECT_EQ(arena.bytes_in_use(), first);
  arena.reset();
  EXPECT_EQ(arena.bytes_in_use(), 0u);
  EXPECT_EQ(arena.last_batch_bytes(), first);
  EXPECT_EQ(arena.peak_bytes(), first);
  EXPECT_GE(arena.capacity_bytes(), first);

  arena.alloc(16);  // a smaller batch keeps the peak
  arena.reset();
  const std::size_t second = (16 * sizeof(T) + 63) / 64 * 64;
  EXPECT_EQ(arena.last_batch_bytes(), second);
  EXPECT_EQ(arena.peak_bytes(), first);

  arena.alloc(5000);  // a larger one raises it
  EXPECT_EQ(arena.peak_bytes(), (5000 * sizeof(T) + 63) / 64 * 64);
}

TYPED_TEST(ArenaTest, ChunksGrowGeometrically) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  Arena<T> arena(backend, 256);
  for (int i = 0; i < 64; ++i) arena.alloc(64 / sizeof(T));  // 64 blocks of 64 bytes
  // 256 + 512 + 1024 + 2048 + 4096 >= 4096 bytes: few chunks, not one per block.
  EXPECT_LE(arena.num_chunks(), 5);
  EXPECT_EQ(arena.num_system_allocations(), arena.num_chunks());
}

TYPED_TEST(ArenaTest, DestructorReturnsEverything) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  {
    Arena<T> arena(backend, 128);
    for (int i = 0; i < 20; ++i) arena.alloc(100 * (i + 1));
    EXPECT_GT(backend.live_allocations(), 1u);
  }
  EXPECT_EQ(backend.live_allocations(), 0u);
  EXPECT_EQ(backend.allocations, backend.deallocations);
}

}  // namespace
}  // namespace copse::memory
