// ThreadGradSync: bulk-synchronous (BSP) gradient exchange between W workers
// in one process (threads), each with its own ParamStore of the same layout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace copse::memory {

// Every worker's ParamStore::step() calls its endpoint's sync(), which blocks
// until all W workers have arrived (a clock), then leaves every worker with
// the SUM of all workers' gradients: dense gradients summed slice by slice in
// worker order (deterministic), sparse rows over the union of the rows any
// worker touched. With the same initial parameters and optimizer, the workers
// stay identical and equal one worker training on the summed batch.
// A worker that does not arrive within `timeout`, or that calls abort(),
// makes the others fail with a copse::Error naming it instead of hanging.
template <typename T>
class ThreadGradSync {
 public:
  explicit ThreadGradSync(int workers,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~ThreadGradSync();
  ThreadGradSync(const ThreadGradSync&) = delete;
  ThreadGradSync& operator=(const ThreadGradSync&) = delete;

  int workers() const { return workers_; }
  GradSync<T>* endpoint(int rank);
  // Wakes every waiting worker with an error (a worker failed).
  void abort(int rank, const std::string& why);

  struct Stats {
    long clocks = 0;       // syncs completed
    double wait_s = 0;     // time spent waiting for the others
    long bytes = 0;        // gradient bytes this worker contributed (dense + sparse rows)
  };
  Stats stats(int rank) const;
  void reset_stats();

 private:
  class Endpoint;
  void sync(int rank, ParamStore<T>& store);
  void barrier(int rank);

  const int workers_;
  const std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::vector<ParamStore<T>*> stores_;
  std::vector<Stats> stats_;
  std::vector<std::vector<int>> unions_;  // per sparse param: union of touched rows

  mutable std::mutex mu_;
  std::condition_variable cv_;
  long generation_ = 0;
  int arrived_ = 0;
  std::vector<long> arrived_at_;  // per worker: last generation it arrived at
  bool aborted_ = false;
  std::string abort_reason_;
};

extern template class ThreadGradSync<float>;
extern template class ThreadGradSync<double>;

}  // namespace copse::memory
