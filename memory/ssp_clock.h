// SspClock: the one SSP rule (Petuum's stale synchronous parallel) shared by
// every transport: the clock table, the bound check, the statistics and the
// failure handling.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace copse::memory {

// What the table measured; every figure covers all reads/pushes it saw.
struct SspStats {
  long reads = 0;
  long max_lead = 0;  // largest (reader's clock - slowest active clock) at a read
  std::map<long, long> lead_histogram;  // lead -> reads
  // c - oldest: how many clocks behind the reader (at clock c, i.e. having
  // completed c clocks) the read was GUARANTEED complete: it held every update
  // of every worker up to clock `oldest` (measured at the shards, never
  // assumed). The SSP bound says c - oldest <= staleness.
  std::map<long, long> oldest_histogram;
  // c - newest: the newest clock of any update the read actually held
  // (negative: it held updates of workers ahead of the reader).
  std::map<long, long> newest_histogram;
  long violations = 0;  // reads with c - oldest > staleness: must stay 0
  std::vector<long> waits;      // [workers]: reads that had to block for slower workers
  std::vector<double> wait_s;   // [workers]: seconds blocked
  long clocks = 0;              // clocks completed (ticks), all workers
  long bytes_pushed = 0, bytes_pulled = 0;  // payload bytes, all workers
  long skipped = 0;             // pushes skipped for non-finite values
};

// The table holds one clock per worker: the number of clocks it has completed
// (its update of clock k, 1-based, is with the shards once its clock is >= k).
// A worker that has completed c clocks may read for clock c+1 once every
// active worker has completed c - staleness clocks (wait_readable), so that
// the read holds every update of clocks <= c - staleness and no worker runs
// more than `staleness` clocks ahead of the slowest. A worker that finished
// its epoch is not waited for until the next start_epoch().
//
// Failure handling: every blocking call gives up after `timeout`, naming the
// workers it waited for; after abort() (from any thread, e.g. a failed
// worker or a message from another process) every call throws the first
// reason. `label` names a worker in messages ("worker", or "rank" across
// processes), `prefix` starts them (e.g. "rank 2: ").
//
// Thread-safe; one table per process (the MPI transport feeds its table from
// the pushes its shard receives).
class SspClock {
 public:
  SspClock(int workers, int staleness, std::chrono::milliseconds timeout,
           std::string label = "worker", std::string prefix = "");

  int workers() const { return workers_; }
  int staleness() const { return staleness_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Worker w completed one more clock; returns its new clock c.
  long tick(int w);
  // Worker w has completed `clock` clocks (monotone: an older value is ignored).
  void set_clock(int w, long clock);
  // Worker w has no more work in `epoch` (-1: the current one).
  void finish(int w, long epoch = -1);
  // A new epoch: every worker is active again.
  void start_epoch();
  long epoch() const;
  bool finished(int w) const;

  // Blocks until worker w, at clock c, may read (every active worker has
  // completed c - staleness clocks); counts a wait only when it had to block.
  void wait_readable(int w, long c);
  // Whether a read that must hold every update up to clock `need` may be
  // served now (no active worker below `need`).
  bool ready(long need) const;
  // Measured contents of a store whose per-worker applied clocks are
  // `applied` ([workers]): the clock up to which it holds every active
  // worker's updates (finished workers count as complete), and the newest.
  long complete_through(const std::vector<long>& applied) const;
  static long newest(const std::vector<long>& applied);
  // A read by worker w at clock c that held every update up to `oldest` and
  // updates as new as `newest`; `bytes` pulled.
  void record_read(int w, long c, long oldest, long newest, long bytes);
  void record_push(long bytes);

  // Non-finite updates: with `skip` a push that would write a non-finite
  // value is skipped (counted), and `max_consecutive` in a row (0: no limit)
  // fail every worker as diverged; without it (the default) the first fails
  // them. skip_push() applies that rule (throwing when it fails them);
  // push_ok() resets the run of skips.
  void set_nonfinite_policy(bool skip, int max_consecutive);
  void skip_push(int w, long clock, const std::string& what);
  void push_ok();

  // Every blocking call (here and in transports through wait_until) throws
  // `why` from now on; the first reason sticks.
  void abort(const std::string& why);
  bool aborted() const;
  void check() const;  // throws the abort reason, if any
  [[noreturn]] void fail(const std::string& why);  // abort(why), then throw it

  long clock(int w) const;
  long min_clock() const;  // slowest active worker (0 with none)
  SspStats stats() const;

 private:
  long min_clock_locked() const;
  bool active_locked(int w) const { return finish_epoch_[w] < epoch_; }
  [[noreturn]] void fail_locked(const std::string& why);

  const int workers_, staleness_;
  const std::chrono::milliseconds timeout_;
  const std::string label_, prefix_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<long> clock_, finish_epoch_;
  long epoch_ = 0;
  SspStats stats_;
  bool skip_nonfinite_ = false;
  int max_skipped_ = 0;
  long consecutive_skips_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
};

}  // namespace copse::memory
