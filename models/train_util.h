// Support for `copse train` / `copse eval` (models/train.cpp): data loading,
// batching, evaluation, model files, option maps, sharding over workers.
#pragma once

#include <exception>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <omp.h>

#include "memory/thread_sync.h"
#include "models/ptb_reader.h"
#include "models/sentiment_model.h"
#include "models/train.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"
#include "scheduler/graph_batch.h"

namespace copse::models {

double now_s();

struct Dataset {
  std::vector<LabeledTree> train, dev, test;
  std::string source;
};
// PTB train/dev/test from o.data_dir, or the synthetic treebank.
Dataset load_data(const TrainOptions& o);

// Sequence cells read each sentence as a chain of its words (root label on
// the last word); tree cells read the trees.
bool is_sequence_model(const std::string& model);
void prepare_inputs(const std::string& model, std::vector<LabeledTree>& trees, Vocab* vocab,
                    bool grow_vocab);


// The options that define a run, as stored in a checkpoint, and back.
std::map<std::string, std::string> options_map(const TrainOptions& o);
TrainOptions options_from_map(const std::map<std::string, std::string>& m, const std::string& path);
// Replaces `path` with `lines` atomically.
void write_lines_atomic(const std::string& path, const std::vector<std::string>& lines);

// What a run does with a batch it cannot learn from (a non-finite loss,
// gradient or update): without --skip-nonfinite it stops (throws, naming the
// batch and the last checkpoint). With it the batch is skipped: the first
// kWarnings skips are printed, the rest summed up once per epoch, and
// `max_consecutive` skips in a row (0: no limit) stop the run as diverged.
class SkipPolicy {
 public:
  static constexpr long kWarnings = 3;
  // `total` counts every skipped batch of the run (the checkpoint's count).
  SkipPolicy(bool skip, int max_consecutive, bool print, std::string checkpoint_path, long& total)
      : skip_(skip),
        max_(max_consecutive),
        print_(print),
        checkpoint_(std::move(checkpoint_path)),
        total_(total) {}
  // `what` names the batch and the problem. Throws copse::Error to stop.
  void skip(const std::string& what);
  void taken() { consecutive_ = 0; }  // a step was taken
  // Prints how many of this epoch's skips were not shown; returns the
  // epoch's skip count and starts the next epoch.
  long end_epoch(int epoch);

 private:
  std::string last_checkpoint() const;
  bool skip_;
  int max_;
  bool print_;
  std::string checkpoint_;
  long& total_;
  long epoch_ = 0, shown_ = 0, consecutive_ = 0;
};

struct Worker {
  std::unique_ptr<ops::Backend<float>> backend;
  std::unique_ptr<SentimentModel<float>> model;
};

// Runs fn(rank) on every worker, in threads when there are several; the first
// exception is rethrown after all have finished (a failing worker aborts the
// gradient sync so the others do not wait for it).
template <typename Fn>
void on_workers(int workers, int threads, memory::ThreadGradSync<float>* sync, const Fn& fn) {
  if (workers == 1) {
    fn(0);
    return;
  }
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> pool;
  for (int r = 0; r < workers; ++r)
    pool.emplace_back([&, r] {
      omp_set_num_threads(threads);
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[r] = std::current_exception();
        if (sync) sync->abort(r, e.what());
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace copse::models
