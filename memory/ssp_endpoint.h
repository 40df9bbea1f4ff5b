// SspEndpoint: what a training loop calls to train under bounded staleness
// (SSP), whatever the transport (threads: SspServer; MPI ranks: MpiSspServer).
#pragma once

#include <string>
#include <vector>

#include "memory/param_store.h"
#include "memory/ssp_clock.h"

namespace copse::memory {

// Each local worker w keeps a replica (a ParamStore of the run's layout, in
// host memory) and loops over its batches, one clock per batch:
//
//   replica.zero_grads(); ...forward/backward on the replica...
//   if (loss is finite) ep.push(w, replica); else ep.skip(w, why);
//   ep.read_rows(w, table_id, rows_the_next_batch_reads);   // optional
//   ep.advance(w, replica);
//   ...
//   ep.finish(w);  // no more batches this epoch
//
// and, around the epochs (from one thread of each process):
//
//   ep.start_epoch();                // before the workers start an epoch
//   ep.collect(full);                // after they all finished: the whole
//                                    // state, e.g. to evaluate or checkpoint
//
// push() sends the clock's gradient to the shards that own it (each applies
// its part with the run's optimizer); advance() ends the clock, waits only
// while a worker is more than staleness() clocks behind, then refreshes the
// replica: the dense parameters, and the embedding rows listed by
// read_rows() since the last advance() or, without such a call, every row
// updated since this worker's last refresh. Either way the replica holds
// every update of clocks <= c - staleness() (c: the worker's clock after
// advance), measured at the shards and recorded in stats().
//
// A call that fails (the bound's timeout, a failed peer, a non-finite update
// under the fail policy) throws copse::Error naming the worker or rank; a
// worker that fails on its own calls abort(w, why) so that no other waits.
template <typename T>
class SspEndpoint {
 public:
  virtual ~SspEndpoint() = default;

  // Returns false when the push was skipped for a non-finite update (the
  // fail policy throws instead; set_nonfinite_policy).
  virtual bool push(int w, ParamStore<T>& replica) = 0;
  // A clock without a usable gradient (e.g. a non-finite loss): counted as a
  // skipped push, or a failure, as in push().
  virtual void skip(int w, const std::string& what) = 0;
  // The rows of embedding table `id` that the next batch reads (any order,
  // duplicates fine); only these rows are refreshed by the next advance().
  virtual void read_rows(int w, int id, std::vector<int> rows) = 0;
  virtual void advance(int w, ParamStore<T>& replica) = 0;
  virtual void finish(int w) = 0;
  virtual void start_epoch() = 0;
  virtual void abort(int w, const std::string& why) = 0;
  // The whole training state (parameters, optimizer state, step counts)
  // into `full`; every worker must have finished the epoch (a collective
  // across processes).
  virtual void collect(ParamStore<T>& full) = 0;
  virtual void set_nonfinite_policy(bool skip, int max_consecutive) = 0;
  virtual long clock(int w) const = 0;
  virtual SspStats stats() const = 0;
};

}  // namespace copse::memory
