// Arena: a per-worker bump allocator over a Backend's memory, reset every
// batch and never returned to the system until destruction.
#pragma once

#include <cstddef>
#include <vector>

#include "ops/backend.h"

namespace copse::memory {

// Blocks are 64-byte aligned. Memory comes from backend.allocate in chunks;
// when a block does not fit, a new chunk of max(block, 2 * last chunk) bytes
// is added. reset() frees every block logically; if the batch needed several
// chunks they are replaced by one chunk of their total size, so a batch no
// larger than an earlier one triggers no system allocation.
template <typename T>
class Arena {
 public:
  // Every block's alignment, in bytes.
  static constexpr std::size_t kAlignment = 64;

  // An arena over `backend`'s memory; the first chunk is allocated on first use
  // with at least `initial_bytes`.
  explicit Arena(ops::Backend<T>& backend, std::size_t initial_bytes = std::size_t(1) << 20);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // count elements, 64-byte aligned, contents undefined; nullptr for count 0.
  // Valid until the next reset(). Throws Error when the backend cannot allocate.
  T* alloc(std::size_t count);
  // Frees every block (logically) and merges the chunks (see above).
  void reset();

  // Bytes in use since the last reset (padded blocks).
  std::size_t bytes_in_use() const { return in_use_; }
  // The most bytes_in_use over the arena's life.
  std::size_t peak_bytes() const { return peak_; }
  // bytes_in_use at the last reset.
  std::size_t last_batch_bytes() const { return last_batch_; }
  std::size_t capacity_bytes() const;                           // sum of chunk sizes
  // backend.allocate calls so far.
  long num_system_allocations() const { return system_allocations_; }
  // Chunks held now.
  int num_chunks() const { return static_cast<int>(chunks_.size()); }

 private:
  struct Chunk {
    char* base;
    std::size_t bytes;
  };

  void add_chunk(std::size_t bytes);
  void release_chunks();

  ops::Backend<T>& backend_;
  std::size_t initial_bytes_;
  std::vector<Chunk> chunks_;  // blocks are bumped from the last one
  std::size_t offset_ = 0;     // bytes used in chunks_.back()
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
  std::size_t last_batch_ = 0;
  long system_allocations_ = 0;
};

}  // namespace copse::memory
