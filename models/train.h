// The `copse train` and `copse eval` jobs: data, model, loop, metrics, checkpoint.
#pragma once

#include <cstdint>
#include <string>

namespace copse::models {

// The options of `copse train` (the CLI's flags, README "The command line").
struct TrainOptions {
  // sentiment: PTB trees (SST); relatedness: pairs of dependency trees in the
  // SICK layout (models/train_task.h).
  std::string task = "sentiment";
  std::string data_dir;    // holds train.txt, dev.txt, test.txt; empty: synthetic treebank
  std::string model = "tree-lstm";  // a cell of models/cells.h; sequence cells read sentences
  int epochs = 10;      // passes over the training set
  int batch = 25;       // items (trees, pairs) per optimizer step, over all workers
  int embed = 300;      // embedding width
  int hidden = 150;     // the cell's width
  std::string optimizer = "adagrad";  // sgd | adagrad | adam
  float lr = 0.05f;     // learning rate
  float l2 = 1e-4f;     // L2 weight decay
  float clip = 0.f;     // global gradient-norm clipping, 0: none
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
  std::uint64_t seed = 1;  // parameters and data order
  std::string out = "runs/latest";  // metrics.jsonl, model.safetensors, checkpoint.safetensors
  bool progress = true;  // a progress bar on stderr
  bool quiet = false;    // no per-epoch lines on stdout
  // Full training state to OUT/checkpoint.safetensors every N optimizer steps
  // (0: only at the end of each epoch).
  long checkpoint_every = 0;
  std::string resume;         // a previous run's OUT: continue from its checkpoint
  // A batch with a non-finite loss, gradient or update is skipped instead of
  // stopping the run; max_skipped such batches in a row stop it (0: no limit).
  bool skip_nonfinite = false;
  int max_skipped = 20;  // see skip_nonfinite
};

// Returns the process exit status. Throws copse::Error for bad input.
int run_train(const TrainOptions& opts);

// The options of `copse eval`.
struct EvalOptions {
  std::string model;  // model.safetensors written by train
  std::string data;   // a PTB file; for a pair model, a SICK split's directory
  int threads = 1;             // CPU math threads
  std::string device = "cpu";  // cpu | cuda | auto
};

// Prints the model's scores on the data as one JSON line; returns the exit
// status. Throws copse::Error for bad input.
int run_eval(const EvalOptions& opts);

// `copse synth`: the built-in synthetic treebank (models/synthetic_treebank.h)
// as PTB files out/train.txt, dev.txt, test.txt, for programs that read
// SST-style files.
struct SynthOptions {
  std::string out;          // the directory to write
  std::uint64_t seed = 1;   // the stream's seed
  int train = 4000;         // trees in train.txt
  int dev = 500;            // trees in dev.txt
  int test = 500;           // trees in test.txt
};

// Writes the splits (each file via a temporary and a rename); returns the
// exit status.
int run_synth(const SynthOptions& opts);

}  // namespace copse::models
