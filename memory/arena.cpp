// Arena: bump allocation in backend chunks, coalesced at reset.
#include "memory/arena.h"

#include <cstdint>
#include <cstdio>
#include <limits>

#include "common/error.h"

namespace copse::memory {

namespace {

constexpr std::size_t round_up(std::size_t bytes, std::size_t align) {
  return (bytes + align - 1) / align * align;
}

}  // namespace

template <typename T>
Arena<T>::Arena(ops::Backend<T>& backend, std::size_t initial_bytes)
    : backend_(backend),
      initial_bytes_(round_up(initial_bytes == 0 ? 1 : initial_bytes, kAlignment)) {}

template <typename T>
Arena<T>::~Arena() {
  try {
    release_chunks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "copse: [arena] freeing memory failed: %s\n", e.what());
  }
}

template <typename T>
void Arena<T>::add_chunk(std::size_t bytes) {
  void* p = backend_.allocate(bytes);
  ++system_allocations_;
  if (p == nullptr) fail("[arena] {} could not allocate {} bytes", backend_.name(), bytes);
  COPSE_ASSERT(reinterpret_cast<std::uintptr_t>(p) % kAlignment == 0);
  chunks_.push_back({static_cast<char*>(p), bytes});
  offset_ = 0;
}

template <typename T>
void Arena<T>::release_chunks() {
  while (!chunks_.empty()) {
    Chunk c = chunks_.back();
    chunks_.pop_back();
    backend_.deallocate(c.base, c.bytes);
  }
  offset_ = 0;
}

template <typename T>
T* Arena<T>::alloc(std::size_t count) {
  if (count == 0) return nullptr;
  constexpr std::size_t kMaxCount =
      (std::numeric_limits<std::size_t>::max() - kAlignment) / sizeof(T);
  if (count > kMaxCount) fail("[arena] request of {} elements overflows", count);
  std::size_t bytes = round_up(count * sizeof(T), kAlignment);
  if (chunks_.empty() || chunks_.back().bytes - offset_ < bytes) {
    std::size_t grown = chunks_.empty() ? initial_bytes_ : 2 * chunks_.back().bytes;
    add_chunk(bytes > grown ? bytes : grown);
  }
  char* p = chunks_.back().base + offset_;
  offset_ += bytes;
  in_use_ += bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return reinterpret_cast<T*>(p);
}

template <typename T>
void Arena<T>::reset() {
  last_batch_ = in_use_;
  in_use_ = 0;
  offset_ = 0;
  if (chunks_.size() > 1) {
    std::size_t total = capacity_bytes();
    release_chunks();
    add_chunk(total);
  }
}

template <typename T>
std::size_t Arena<T>::capacity_bytes() const {
  std::size_t total = 0;
  for (const Chunk& c : chunks_) total += c.bytes;
  return total;
}

template class Arena<float>;
template class Arena<double>;

}  // namespace copse::memory
