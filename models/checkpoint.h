// Training checkpoints: the full state of a `copse train` run in one
// safetensors file (parameters, optimizer state, data order, RNG, counters,
// metrics so far), checksummed and written atomically.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace copse::models {

struct TrainState {
  // Options the run was started with (key -> value), restored on --resume.
  std::map<std::string, std::string> options;
  int epoch = 1;                 // the epoch in progress
  long next = 0;                 // position in `order` of the next batch
  std::vector<int> order;        // this epoch's tree order (empty: not shuffled yet)
  std::string rng;               // std::mt19937_64 state
  long step = 0;                 // optimizer steps taken
  long optimizer_steps = 0;      // ParamStore's counter (Adam's t)
  double loss_sum = 0;           // this epoch so far
  long labelled = 0;
  double train_s = 0;
  double best_dev = -1;
  int best_epoch = 0;
  long skipped = 0;              // batches skipped for non-finite values
  std::vector<std::string> metrics;  // metrics.jsonl lines of finished epochs
  std::vector<float> params;     // ParamStore flat parameter buffer
  std::vector<std::vector<float>> opt_state;  // ParamStore flat optimizer slots
};

// Writes `path` atomically (temporary file, fsync, rename); the previous file
// stays intact until the new one is complete.
void save_checkpoint(const std::string& path, const TrainState& st);
// Reads and verifies (structure and checksum) a checkpoint; throws
// copse::Error "PATH: what" for a missing, truncated or corrupted file.
TrainState load_checkpoint(const std::string& path);

// FNV-1a 64 over bytes, chained through `h`.
std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ULL);

}  // namespace copse::models
