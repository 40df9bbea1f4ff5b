// ShardMap (see shard_map.h).
#include "memory/shard_map.h"

#include <algorithm>
#include <climits>

#include "common/error.h"

namespace copse::memory {

int ShardMap::max_shards(const std::vector<Param>& params) {
  std::size_t m = 0;
  for (const auto& p : params)
    if (!p.sparse) m += p.numel;
  for (const auto& p : params)
    if (p.sparse) m = std::min(m, static_cast<std::size_t>(p.rows));
  return static_cast<int>(std::clamp<std::size_t>(m, 1, INT_MAX));
}

ShardMap::ShardMap(std::vector<Param> params, int shards)
    : params_(std::move(params)), shards_(shards) {
  if (shards < 1) fail("SSP: need at least one shard, got {}", shards);
  for (int id = 0; id < static_cast<int>(params_.size()); ++id) {
    const auto& p = params_[id];
    if (p.sparse) {
      sparse_ids_.push_back(id);
      if (p.rows < shards)
        fail("SSP: {} shards but embedding table '{}' has only {} rows (every shard owns at least "
             "one row of each table)",
             shards, p.name, p.rows);
    } else {
      dense_total_ += p.numel;
    }
  }
  if (dense_total_ < static_cast<std::size_t>(shards))
    fail("SSP: {} shards but only {} dense parameter elements (every shard owns at least one)",
         shards, dense_total_);
  pieces_.resize(shards);
  for (int s = 0; s < shards; ++s) {
    const std::size_t lo = dense_begin(s), hi = dense_end(s);
    std::size_t at = 0;  // logical start of the current parameter
    for (int id = 0; id < static_cast<int>(params_.size()); ++id) {
      if (params_[id].sparse) continue;
      const std::size_t b = std::max(lo, at), e = std::min(hi, at + params_[id].numel);
      if (b < e) pieces_[s].push_back({id, b - at, e - at});
      at += params_[id].numel;
    }
  }
}

std::size_t ShardMap::dense_begin(int s) const {
  return dense_total_ * static_cast<std::size_t>(s) / static_cast<std::size_t>(shards_);
}

std::size_t ShardMap::dense_end(int s) const { return dense_begin(s + 1); }

int ShardMap::local_rows(int id, int s) const {
  const int rows = params_.at(id).rows;
  return rows > s ? (rows - s + shards_ - 1) / shards_ : 0;
}

std::uint64_t ShardMap::fingerprint() const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&](std::uint64_t v) { h = (h ^ v) * 0x100000001b3ULL; };
  mix(static_cast<std::uint64_t>(shards_));
  for (const auto& p : params_) {
    for (char c : p.name) mix(static_cast<unsigned char>(c));
    mix(p.numel);
    mix(p.offset);
    mix(p.sparse);
    mix(static_cast<std::uint64_t>(p.rows));
    mix(static_cast<std::uint64_t>(p.width));
  }
  return h;
}

}  // namespace copse::memory
