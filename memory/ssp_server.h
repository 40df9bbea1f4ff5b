// SspServer: a parameter server with bounded staleness (SSP, as in Petuum /
// Bösen) for W workers in one process.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace copse::memory {

// The master ParamStore holds the parameters and the optimizer. Each worker
// keeps a replica (a ParamStore of the same layout, no optimizer needed) and,
// once per clock:
//   1. computes gradients on its replica,
//   2. push(): the master applies them at once (one optimizer step per push),
//   3. advance(): its clock goes c -> c+1; it blocks while the slowest worker
//      is more than `staleness` clocks behind, i.e. until min clock >= c+1-s,
//      then copies the master parameters into its replica.
// So a worker reading at clock c sees every update from clocks <= c-s-1 (and
// possibly newer ones), and no worker ever runs more than s clocks ahead of
// the slowest. staleness 0 is bulk-synchronous with per-worker updates.
template <typename T>
class SspServer {
 public:
  SspServer(ParamStore<T>& master, int workers, int staleness,
            std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Applies the replica's gradients as one master step; returns false when
  // the step was skipped because the update would have written a non-finite
  // value (see set_nonfinite_policy; the master is then unchanged).
  bool push(int rank, ParamStore<T>& replica);
  // A worker whose gradient cannot be used (e.g. a non-finite loss): counted
  // as a skipped push, or a failure of every worker, as in push().
  void skip(int rank, const std::string& what);
  // Without `skip` a non-finite update fails every worker (the error names
  // the worker, its clock and the parameter); with it the push is skipped,
  // and `max_consecutive` skipped pushes in a row (0: no limit) fail them as
  // diverged. Default: fail.
  void set_nonfinite_policy(bool skip, int max_consecutive) {
    skip_nonfinite_ = skip;
    max_skipped_ = max_consecutive;
  }
  long skipped() const;  // pushes skipped so far
  void advance(int rank, ParamStore<T>& replica);
  // A worker that has no more work leaves: the others stop waiting for it.
  void finish(int rank);
  // Every worker is active again (call before the workers start a new pass).
  void start_epoch();
  void abort(int rank, const std::string& why);
  // Test hook, called at the start of advance() (e.g. to delay a worker).
  void set_straggler_hook(std::function<void(int rank, long clock)> hook) { hook_ = std::move(hook); }

  int staleness() const { return staleness_; }
  long clock(int rank) const;
  long min_clock() const;
  // Largest (own clock - slowest clock) ever seen when a worker proceeded.
  long max_lead() const;
  long waits() const;  // times a worker had to block
  std::map<long, long> staleness_histogram() const;  // lead -> count
  long bytes() const;  // gradient bytes pushed

 private:
  long min_clock_locked() const;
  [[noreturn]] void fail_locked(const std::string& why);
  void skip_locked(int rank, const std::string& what);

  ParamStore<T>& master_;
  const int workers_, staleness_;
  const std::chrono::milliseconds timeout_;
  std::function<void(int, long)> hook_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<long> clock_;
  std::vector<char> finished_;
  long max_lead_ = 0, waits_ = 0, bytes_ = 0;
  std::map<long, long> histogram_;
  bool skip_nonfinite_ = false;
  int max_skipped_ = 0;
  long skipped_ = 0, consecutive_skips_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
};

extern template class SspServer<float>;
extern template class SspServer<double>;

}  // namespace copse::memory
