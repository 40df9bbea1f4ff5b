// How the workers of a bulk-synchronous `copse train` run exchange gradients
// and per-step sums (`--transport thread|mpi|nccl`).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace copse::models {

struct SyncStats {
  double wait_s = 0;     // mean per worker: time blocked waiting for the others (and, across
                         // processes, moving the data)
  long bytes = 0;        // gradient bytes all workers contributed (dense + touched rows)
  long sent_bytes = -1;  // bytes sent between processes, all ranks (-1: workers share memory)
  double exchange_s = -1;  // mean per worker: time in the gradient exchange itself (-1: not
                           // measured, threads)
};

// W workers, numbered 0..W-1; this process runs some of them (all with
// threads, one with mpi/nccl). Under BSP all replicas hold the same bits.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string name() const = 0;
  int workers() const { return workers_; }
  // The workers this process runs, ascending.
  const std::vector<int>& local_workers() const { return local_; }
  // The process running worker 0 prints and writes the outputs.
  bool root() const { return local_.front() == 0; }

  // Runs fn(i) for every local worker i (an index into local_workers()), in
  // threads when there are several. The first error is rethrown once all have
  // finished; a failing worker aborts the exchange so the others never wait.
  virtual void run_local(const std::function<void(int)>& fn) = 0;
  // The gradient exchange for local worker i (nullptr with one worker).
  virtual memory::GradSync<float>* grad_sync(int i) = 0;
  // Element-wise sums over all W workers in worker order, the same bits in
  // every process; per_local[i] is local worker i's vector.
  virtual std::vector<double> sum(const std::vector<std::vector<double>>& per_local,
                                  const std::string& what) = 0;
  // Every worker's value, in worker order (e.g. hashes of the replicas).
  virtual std::vector<std::uint64_t> gather(const std::vector<std::uint64_t>& per_local,
                                            const std::string& what) = 0;
  // Statistics over all workers since the last call (collective).
  virtual SyncStats take_stats() = 0;

 protected:
  int workers_ = 1;
  std::vector<int> local_;
};

// "thread": `workers` threads in this process (timeout: a worker that does
// not reach a sync in time fails the others). "mpi" / "nccl": this process is
// one rank of an MPI job (MPI already initialised), W = the world size;
// `workers` > 0 must equal it. Throws copse::Error for an unknown kind, a
// build without MPI or NCCL, or no GPU for nccl.
std::unique_ptr<Transport> make_transport(const std::string& kind, int workers, int threads,
                                          double timeout_s);

// Test hook for the failure tests: COPSE_TEST_FAULT=KIND:WORKER:STEP makes
// local worker WORKER, before the gradient exchange of optimizer step STEP
// (under SSP: before its push at clock STEP),
// kill itself (kill: SIGKILL; with threads the whole process), stop
// answering (hang: sleeps), or nudge one of its parameters so its replica
// diverges (perturb); hang and perturb only for mpi/nccl, where a worker is a
// process. overflow (any transport) sets the first dense
// gradient entry to the finite 3e38, once: the update then overflows on
// every CPU (SGD with lr >= 2 writes -inf into the parameter; Adagrad's and
// Adam's squared gradient is inf in their state), unless clipping is on;
// overflow-always does so at every step from STEP on.
// omit (any transport, WORKER 0) drops the batch of step STEP before any
// worker sees it, once: the run a skipped step must equal.
struct TestFault {
  enum Kind { None, Kill, Hang, Perturb, Overflow, OverflowAlways, Omit } kind = None;
  int worker = -1;
  long step = -1;
  bool fired = false;
};
TestFault test_fault_from_env(const std::string& transport);
// Whether the batch of `step` is to be omitted (marks the omit fault done).
bool omit_batch(TestFault& f, long step);
// Acts on `f` if it is due for this worker and step and belongs to `phase`:
// right after the backward pass, before the gradient is checked (overflow),
// or just before the exchange (kill, hang, perturb).
enum class FaultPhase { Gradient, Exchange };
void maybe_inject_fault(TestFault& f, int worker, long step, memory::ParamStore<float>& ps,
                        FaultPhase phase);

// Test and benchmark hook: COPSE_TEST_STRAGGLE=WHO:FACTOR makes worker WHO
// (a number, or `any`: at every step, or SSP clock, one worker drawn from
// the step's number, the same draw on every rank) compute FACTOR times
// slower: after its forward and backward pass it sleeps FACTOR - 1 times as
// long as they took. Unset: no worker is slowed.
struct Straggler {
  int worker = -1;  // -1: none (unless `any`)
  bool any = false;  // one worker drawn per step
  double factor = 1;
  // Whether worker `w` of `workers` is the slowed one at `step`.
  bool slows(int w, long step, int workers) const;
  // Sleeps (factor - 1) * compute_s if `w` is slowed at `step`.
  void delay(int w, long step, int workers, double compute_s) const;
};
Straggler straggler_from_env();

}  // namespace copse::models
