// SspServer: a parameter server with bounded staleness (SSP, as in Petuum /
// Bösen) for W workers in one process (the thread transport).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memory/param_store.h"
#include "memory/shard_map.h"
#include "memory/ssp_clock.h"
#include "memory/ssp_endpoint.h"
#include "memory/ssp_shard.h"

namespace copse::memory {

// The parameters and the optimizer state live in min(W, ShardMap::max_shards)
// shards (memory/shard_map.h), each with its own lock, so that reads of
// different shards run in parallel; the master ParamStore is where they come
// from and go back to:
//  - the constructor and start_epoch() load the shards from the master (so
//    the master may be changed between epochs, e.g. by a resume);
//  - when the last worker calls finish(), the shards are collected into the
//    master (parameters, optimizer state, step counts): between epochs the
//    master holds the whole trained state, as before sharding.
// Each worker keeps a replica (a ParamStore of the same layout, in host
// memory, no optimizer needed) and follows SspEndpoint's loop. push() takes
// the shards' locks in order and every shard takes the push or none does
// (one optimizer step per push: the update is the master's would be). The
// clock rule, its statistics and its failures are SspClock's.
template <typename T>
class SspServer : public SspEndpoint<T> {
 public:
  SspServer(ParamStore<T>& master, int workers, int staleness,
            std::chrono::milliseconds timeout = std::chrono::seconds(60));

  bool push(int rank, ParamStore<T>& replica) override;
  void skip(int rank, const std::string& what) override;
  void read_rows(int rank, int id, std::vector<int> rows) override;
  void advance(int rank, ParamStore<T>& replica) override;
  void finish(int rank) override;
  void start_epoch() override;
  void abort(int rank, const std::string& why) override;
  void collect(ParamStore<T>& full) override;
  // Without `skip` a non-finite update fails every worker (the error names
  // the worker, its clock and the parameter); with it the push is skipped,
  // and `max_consecutive` skipped pushes in a row (0: no limit) fail them as
  // diverged. Default: fail.
  void set_nonfinite_policy(bool skip, int max_consecutive) override {
    clock_.set_nonfinite_policy(skip, max_consecutive);
  }
  long clock(int rank) const override { return clock_.clock(rank); }
  SspStats stats() const override { return clock_.stats(); }

  // Test hook, called at the start of advance() (e.g. to delay a worker).
  void set_straggler_hook(std::function<void(int rank, long clock)> hook) { hook_ = std::move(hook); }

  int staleness() const { return clock_.staleness(); }
  int shards() const { return map_.shards(); }
  const ShardMap& shard_map() const { return map_; }
  long min_clock() const { return clock_.min_clock(); }
  long skipped() const { return stats().skipped; }
  // Largest (own clock - slowest clock) ever seen when a worker proceeded.
  long max_lead() const { return stats().max_lead; }
  long waits() const;                                 // times a worker had to block
  std::map<long, long> staleness_histogram() const { return stats().lead_histogram; }
  long bytes() const { return stats().bytes_pushed; }  // gradient bytes pushed

 private:
  void load_shards();

  ParamStore<T>& master_;
  const int workers_;
  SspClock clock_;
  ShardMap map_;
  std::vector<std::unique_ptr<SspShard<T>>> shards_;
  std::vector<std::mutex> shard_mu_;  // [shards]
  std::function<void(int, long)> hook_;
  std::mutex mu_;  // finished_ and the replicas' read state below
  int finished_ = 0;
  std::vector<std::vector<long>> since_;              // [workers][shards]: version last read; -1 all
  std::vector<std::vector<std::vector<int>>> rows_;   // [workers][tables]: listed rows
  std::vector<char> listed_;                          // [workers]: read_rows() since last advance
};

extern template class SspServer<float>;
extern template class SspServer<double>;

}  // namespace copse::memory
