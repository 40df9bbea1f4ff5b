// copse::Trainer: the training step over a batch of graphs, on one model or
// on data-parallel replicas of it (threads, MPI ranks or NCCL), bulk-
// synchronous or with bounded staleness. The caller owns the loop:
//
//   copse::Trainer trainer(model, {copse::optimizer("adam", 1e-3f)});
//   for (auto& batch : batches) {
//     copse::StepResult r = trainer.step(batch);
//     if (!r.taken) ...;  // a non-finite loss, gradient or update: nothing changed
//   }
//   copse::Evaluation dev = trainer.evaluate(dev_graphs);
//   model.save("model.safetensors");
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/optimizer.h"
#include "models/model.h"

namespace copse {

// An optimizer by name (sgd | adagrad | adam) with its learning rate, L2
// weight decay and gradient-norm clipping (0: none); validated.
memory::OptimizerConfig optimizer(const std::string& kind, float lr, float l2 = 0.f,
                                  float clip_norm = 0.f);

// How a Trainer trains: optimizer, workers and their transport, BSP or
// SSP, timeouts, the non-finite policy.
struct TrainerOptions {
  memory::OptimizerConfig optimizer;  // see copse::optimizer()
  // Data-parallel workers, each a replica of the model training on its share
  // of every batch. transport "thread": `workers` threads in this process;
  // "mpi" / "nccl": one worker per MPI rank (MPI initialised by the caller;
  // workers 0 or the world size).
  int workers = 1;
  std::string transport = "thread";  // thread | mpi | nccl (see `workers`)
  // -1: bulk-synchronous (every step sums all workers' gradients). s >= 0
  // with several workers (thread, or mpi: one per rank): stale-synchronous
  // (SSP) through a sharded parameter server (memory/ssp_server.h,
  // memory/mpi_ssp.h); workers run at most s clocks ahead of the slowest.
  int staleness = -1;
  double sync_timeout = 60;  // seconds a worker waits for the others before failing
  // Under SSP a non-finite update is skipped rather than failing, and
  // max_skipped in a row (0: no limit) fail the run (under BSP the caller
  // decides from StepResult).
  bool skip_nonfinite = false;
  int max_skipped = 20;  // see skip_nonfinite
  int threads = 1;           // math threads per worker (thread transport)
  // Act on COPSE_TEST_FAULT and COPSE_TEST_STRAGGLE (copse's failure tests
  // and benchmarks; models/transport.h).
  bool test_faults = false;
};

// What one step did.
struct StepResult {
  bool taken = false;    // false: no update was made, see `problem`
  double loss = 0;       // summed over the batch's labelled (or targeted) vertices
  long labelled = 0;     // how many vertices carry a label or target
  std::string problem;   // "non-finite loss", "non-finite gradient" or "non-finite
                         // parameters after the update (PARAM)"
};

// Several batches run under SSP (run_async).
struct AsyncResult {
  double loss = 0;   // summed over the labelled vertices of every batch
  long labelled = 0;  // how many vertices carry a label
  long skipped = 0;  // pushes skipped for non-finite values
};

// The gradient exchange since the last take_sync_report().
struct SyncReport {
  std::string transport;   // thread | mpi | nccl, or "ssp"
  double wait_s = 0;       // mean per worker: time waiting for the others
  long bytes = 0;          // gradient bytes all workers contributed
  long sent_bytes = -1;    // between processes (-1: shared memory)
  double exchange_s = -1;  // mean per worker in the exchange itself (-1: not measured)
  // SSP only:
  int staleness = -1;
  long ssp_waits = 0;      // times a worker blocked on the bound
  long ssp_max_lead = 0;   // largest lead over the slowest worker
  std::map<long, long> lead_histogram;  // lead -> clocks
  // SSP, measured at the shards, cumulative over the run: c - oldest of each
  // read (the clocks it was guaranteed complete behind its reader; never
  // above the staleness) -> reads, reads beyond the bound (0), clocks
  // completed by all workers, parameter bytes pulled, seconds each worker
  // blocked on the bound.
  std::map<long, long> staleness_histogram;
  long violations = 0;               // reads beyond the bound (must stay 0)
  long clocks = 0;                   // clocks completed by all workers
  long pulled_bytes = 0;             // parameter bytes the replicas read back
  std::vector<double> worker_wait_s;  // [workers] seconds blocked on the bound
};

// The training step over a model and its data-parallel replicas (see the
// top of this file).
class Trainer {
 public:
  // Sets the optimizer on `model` (zeroed state) and makes the replicas,
  // each a copy of the model. The model must outlive the trainer; under BSP
  // it is worker 0, under SSP the parameter server's store.
  Trainer(Model& model, const TrainerOptions& opts);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The number of workers (with mpi/nccl: the world size).
  int workers() const;
  // Whether this process runs worker 0 (prints, writes files).
  bool root() const;
  // Whether the workers are stale-synchronous (a parameter server).
  bool ssp() const;
  // The options, with `workers` as resolved by the transport.
  const TrainerOptions& options() const;

  // One optimizer step over the batch: the graphs are shared among the
  // workers by size; the loss is the mean over the batch's graphs of their
  // summed vertex losses. Every worker takes the step or none does.
  StepResult step(const std::vector<const Graph*>& batch);
  // The same over examples (dense rows, targets, several graphs each).
  StepResult step(const std::vector<const Example*>& batch);
  // SSP: each worker walks its share of every batch, one clock per batch,
  // at most `staleness` clocks ahead of the slowest (BSP: one step() each).
  // `tag` names the batches in errors ("epoch 3").
  AsyncResult run_async(const std::vector<std::vector<const Graph*>>& batches,
                        const std::string& tag = "");

  // Forward only; under BSP, and under SSP over MPI, the workers share the
  // batches (SSP over threads: the server's store evaluates them all).
  Evaluation evaluate(const std::vector<Batch>& batches);
  // The same over graphs, `batch` at a time.
  Evaluation evaluate(const std::vector<const Graph*>& graphs, int batch = 256);
  // The same over examples, `batch` at a time.
  Evaluation evaluate(const std::vector<const Example*>& examples, int batch = 256);

  // The model's state (parameters, optimizer state, step counts) was set
  // from outside, e.g. from a checkpoint: copy it to every replica.
  void sync_replicas();
  // Workers whose replica (hashed with `salt`, e.g. a hash of the run's
  // options) differs from worker 0's; empty when all agree. Collective.
  std::vector<int> diverged_workers(std::uint64_t salt = 0);
  // The exchange's statistics since the last call.
  SyncReport take_sync_report();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace copse
