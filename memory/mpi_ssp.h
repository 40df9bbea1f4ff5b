// MpiSspServer: the SSP parameter server across the ranks of an MPI job, one
// worker and one shard per rank (the MPI transport of SspEndpoint).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "memory/param_store.h"
#include "memory/ssp_endpoint.h"

namespace copse::memory {

// Rank r runs worker r and shard r of the ShardMap over all W ranks (dense
// slices, rows r % W; memory/shard_map.h). A progress thread serves the
// shard while the rank computes: it polls for requests (MPI_Iprobe, then a
// sleep that doubles up to 0.5 ms while idle: no core spins, and
// oversubscribed ranks get the cores), and answers
//  - a push: the shard applies its part with the run's optimizer (its state
//    lives there) and acknowledges, naming a parameter whose update would
//    not be finite (the shard then discards its part);
//  - a read that must hold every update up to clock n: once every active
//    worker's push of clock n has been applied here (held back until then);
//    the reply carries what it measured (SspClock::complete_through).
// The pushes this rank's shard receives are also its clock table: one
// SspClock per rank, the same rule and statistics as the thread transport.
//
// Every wait polls under `timeout`; past it the call throws copse::Error
//   "rank R: SSP: rank R at clock C waited T ms for rank(s) Q (clock K)"
//   "rank R: no reply from rank(s) Q within S s during WHAT (clock C)"
// and the job must end (the caller's MPI_Abort). A failure a shard sees
// (a non-finite update under the fail policy) fails the pushing rank, which
// ends the job the same way.
//
// Needs MPI initialised with MPI_THREAD_MULTIPLE (the constructor checks).
// Collective: the constructor (it compares the staleness and the layout of
// every rank: a difference is an error naming the ranks), collect() and
// close(). Non-finite pushes: each shard decides for its part (a skipped
// push may have been applied by the other shards; nothing non-finite is
// ever written).
template <typename T>
class MpiSspServer : public SspEndpoint<T> {
 public:
  // `initial`: the parameters and optimizer state (and config) every rank
  // starts from (each rank's shard loads its part).
  MpiSspServer(const ParamStore<T>& initial, int staleness, std::chrono::milliseconds timeout);
  ~MpiSspServer() override;  // stops the progress thread (call close() first)
  MpiSspServer(const MpiSspServer&) = delete;
  MpiSspServer& operator=(const MpiSspServer&) = delete;

  int rank() const;
  int size() const;

  bool push(int w, ParamStore<T>& replica) override;
  void skip(int w, const std::string& what) override;
  void read_rows(int w, int id, std::vector<int> rows) override;
  void advance(int w, ParamStore<T>& replica) override;
  void finish(int w) override;
  void start_epoch() override;
  void abort(int w, const std::string& why) override;  // tells every rank
  void collect(ParamStore<T>& full) override;          // collective, after finish()
  void set_nonfinite_policy(bool skip, int max_consecutive) override;
  long clock(int w) const override;  // this rank's view of worker w's clock
  SspStats stats() const override;   // this rank's worker and table
  // Collective end: waits until every rank is done with every shard.
  void close();
  // Collective, between epochs (after collect()): this rank's shard takes its
  // part of `full` (e.g. a model changed by a resume), and no rank pushes
  // before every shard has.
  void reload(const ParamStore<T>& full);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

extern template class MpiSspServer<float>;
extern template class MpiSspServer<double>;

}  // namespace copse::memory
