// The `copse train` and `copse eval` jobs: data, model, loop, metrics, checkpoint.
#pragma once

#include <cstdint>
#include <string>

namespace copse::models {

struct TrainOptions {
  // sentiment: PTB trees (SST); relatedness: pairs of dependency trees in the
  // SICK layout (models/train_task.h).
  std::string task = "sentiment";
  std::string data_dir;    // holds train.txt, dev.txt, test.txt; empty: synthetic treebank
  std::string model = "tree-lstm";  // a cell of models/cells.h; sequence cells read sentences
  int epochs = 10;
  int batch = 25;
  int embed = 300;
  int hidden = 150;
  std::string optimizer = "adagrad";
  float lr = 0.05f;
  float l2 = 1e-4f;
  float clip = 0.f;
  std::string embeddings;  // GloVe text file, optional
  int threads = 1;           // threads for the math, per worker
  std::string device = "cpu";  // cpu | cuda | auto (ops/device.h)
  bool tf32 = false;           // cuda: allow TF32 GEMMs
  int workers = 0;           // data-parallel workers; 0: 1 with threads, the MPI world size
                             // with mpi/nccl
  int staleness = -1;        // -1: BSP (summed gradients); s >= 0: SSP with bound s
  // How the workers exchange gradients (models/transport.h): "thread" (this
  // process), "mpi" or "nccl" (one worker per MPI rank; MPI initialised by the
  // caller). Not part of the run's identity: a checkpoint resumes under any.
  std::string transport = "thread";
  double sync_timeout = 60;  // seconds a worker waits for the others before failing
  std::uint64_t seed = 1;
  std::string out = "runs/latest";
  bool progress = true;
  bool quiet = false;
  // Full training state to OUT/checkpoint.safetensors every N optimizer steps
  // (0: only at the end of each epoch).
  long checkpoint_every = 0;
  std::string resume;         // a previous run's OUT: continue from its checkpoint
  // A batch with a non-finite loss, gradient or update is skipped instead of
  // stopping the run; max_skipped such batches in a row stop it (0: no limit).
  bool skip_nonfinite = false;
  int max_skipped = 20;
};

// Returns the process exit status. Throws copse::Error for bad input.
int run_train(const TrainOptions& opts);

struct EvalOptions {
  std::string model;  // model.safetensors written by train
  std::string data;   // a PTB file; for a pair model, a SICK split's directory
  int threads = 1;
  std::string device = "cpu";
};

int run_eval(const EvalOptions& opts);

// `copse synth`: the built-in synthetic treebank (models/synthetic_treebank.h)
// as PTB files out/train.txt, dev.txt, test.txt, for programs that read
// SST-style files.
struct SynthOptions {
  std::string out;
  std::uint64_t seed = 1;
  int train = 4000, dev = 500, test = 500;
};

int run_synth(const SynthOptions& opts);

}  // namespace copse::models
