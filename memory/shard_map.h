// ShardMap: how SSP spreads a ParamStore's parameters over shards: dense
// parameters by contiguous slices, embedding rows by row id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace copse::memory {

// The partition over N shards:
//  - dense parameters (every non-sparse_rows parameter, in id order, without
//    the store's alignment padding) form one logical vector of D elements;
//    shard s owns its elements [floor(D s / N), floor(D (s+1) / N)), in
//    pieces of whole or partial parameters;
//  - row r of an embedding table (sparse_rows) lives on shard r % N, as its
//    local row r / N.
// Every shard owns at least one dense element and one row of every table:
// N must not exceed D or any table's row count (the constructor throws).
class ShardMap {
 public:
  struct Param {
    std::string name;
    std::size_t numel = 0, offset = 0;  // in the full store
    bool sparse = false;
    int rows = 1, width = 1;
  };
  struct Piece {
    int id;                  // dense parameter
    std::size_t begin, end;  // its elements [begin, end)
  };

  ShardMap(std::vector<Param> params, int shards);
  template <typename T>
  static std::vector<Param> layout(const ParamStore<T>& store) {
    std::vector<Param> p;
    for (int id = 0; id < store.size(); ++id)
      p.push_back({store.spec(id).name, store.numel(id), store.offset(id),
                   store.spec(id).sparse_rows, store.rows(id), store.row_width(id)});
    return p;
  }
  // The most shards the layout allows (>= 1).
  static int max_shards(const std::vector<Param>& params);

  int shards() const { return shards_; }
  const std::vector<Param>& params() const { return params_; }
  const std::vector<int>& sparse_ids() const { return sparse_ids_; }  // ids of the tables
  const std::vector<Piece>& pieces(int s) const { return pieces_.at(s); }
  std::size_t dense_begin(int s) const;  // logical dense range of shard s
  std::size_t dense_end(int s) const;
  int owner(int row) const { return row % shards_; }
  int local_row(int row) const { return row / shards_; }
  int global_row(int s, int local) const { return local * shards_ + s; }
  int local_rows(int id, int s) const;  // rows of table `id` on shard s
  // Hash of the layout and the shard count (for a check across processes).
  std::uint64_t fingerprint() const;

 private:
  std::vector<Param> params_;
  int shards_;
  std::size_t dense_total_ = 0;
  std::vector<int> sparse_ids_;
  std::vector<std::vector<Piece>> pieces_;
};

}  // namespace copse::memory
