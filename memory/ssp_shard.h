// SspShard: one shard of an SSP parameter server (its slice of the
// parameters and their optimizer state), and the messages that push
// gradients to it and read parameters from it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory/param_store.h"
#include "memory/shard_map.h"
#include "ops/cpu_backend.h"

namespace copse::memory {

// A whole store's training state in host memory, laid out as the store's
// flat buffers (checkpoints; loading and collecting the shards).
template <typename T>
struct FlatState {
  std::vector<T> params;               // [total_elements()]
  std::vector<std::vector<T>> state;   // [optimizer_state_slots()][total_elements()]
  long step_count = 0, optimizer_steps = 0;
  static FlatState of(const ParamStore<T>& store);
  void store_into(ParamStore<T>& store) const;
};

// How a read chooses the embedding rows it returns (dense slices always).
enum class ReadRows : std::int32_t {
  Listed = 0,  // the rows the request lists (what the next batch reads)
  Dirty = 1,   // every row updated after the shard's version `since`
  All = 2,
};

// The shard's parameters live in a ParamStore of its own (one parameter per
// piece of a dense parameter, named like it; one table of its local rows per
// embedding table) with the run's optimizer, so that the non-finite check
// and the update are ParamStore's (prepare_step / apply_step /
// discard_step). Clipping is the pushing worker's (it scales its gradient by
// the global norm, encode_push), so the shards' config has clip_norm 0.
// Not thread-safe: the transport serialises the calls.
template <typename T>
class SspShard {
 public:
  SspShard(const ShardMap& map, int shard, int workers, OptimizerConfig cfg);

  int shard() const { return shard_; }
  // This shard's part of a whole store's state (every row then counts as
  // updated, so that Dirty reads return it).
  void load(const FlatState<T>& full);
  void store(FlatState<T>& full) const;  // writes only this shard's part

  // One pushed gradient (a message of encode_push) as one optimizer step, in
  // two halves so that several shards can agree on taking it:
  // prepare_push() loads it and checks what the update would write; returns
  // "" or the name of the parameter a non-finite value would go to. Then
  // commit_push(true) applies it, commit_push(false) leaves the shard as it
  // was. Either way the push's clock counts as applied for its worker.
  // apply_push(): both, taking the step when it is finite.
  std::string prepare_push(const std::vector<char>& msg, int* worker, long* clock);
  void commit_push(bool apply);
  std::string apply_push(const std::vector<char>& msg, int* worker, long* clock) {
    std::string bad = prepare_push(msg, worker, clock);
    commit_push(bad.empty());
    return bad;
  }
  // Worker w's clock `clock` is resolved here without a gradient (skipped).
  void note_applied(int w, long clock);
  const std::vector<long>& applied() const { return applied_; }  // [workers]
  long version() const { return version_; }  // pushes applied (and loads)

  // The reply to a read request (encode_read); `oldest` and `newest` are the
  // measured contents (SspClock::complete_through / newest of applied()).
  void serve_read(const std::vector<char>& request, long oldest, long newest,
                  std::vector<char>& reply) const;

 private:
  const ShardMap& map_;
  const int shard_;
  std::unique_ptr<ops::CpuBackend<T>> backend_;
  std::unique_ptr<ParamStore<T>> store_;
  std::vector<int> own_sparse_;                  // own id of each table (map.sparse_ids order)
  std::vector<std::vector<long>> row_version_;   // [tables][local rows]
  std::vector<long> applied_;
  long version_ = 0;
  std::vector<int> local_;  // scratch
};

// The gradient of `replica` (dense grads, touched rows of the tables) that
// shard s owns, scaled by `scale`, from worker w at clock `clock`.
// Returns the payload bytes (gradient values and row ids).
template <typename T>
long encode_push(const ShardMap& map, int s, ParamStore<T>& replica, int w, long clock, T scale,
                 std::vector<char>& out);
// A read of shard s for worker w that must hold every update up to `need`.
// `rows` ([tables], global row ids, any order, duplicates fine) is used for
// ReadRows::Listed, `since` for ReadRows::Dirty.
void encode_read(const ShardMap& map, int s, int w, long need, ReadRows mode, long since,
                 const std::vector<std::vector<int>>* rows, std::vector<char>& out);
// Fields of a request, for the server deciding when to answer it.
struct ReadHeader {
  int worker;
  long need;
};
ReadHeader read_header(const std::vector<char>& request);
int push_worker(const std::vector<char>& msg);
// Writes a reply into `replica`; returns its measured contents.
struct ReadResult {
  long oldest = 0, newest = 0, version = 0, bytes = 0;
};
template <typename T>
ReadResult decode_read(const ShardMap& map, int s, const std::vector<char>& reply,
                       ParamStore<T>& replica);

extern template class SspShard<float>;
extern template class SspShard<double>;

}  // namespace copse::memory
