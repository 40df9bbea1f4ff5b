// Support for `copse train` / `copse eval`: data loading, batching,
// evaluation, model files, option maps, sharding (see train_util.h).
#include "models/train_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "common/error.h"
#include "memory/safetensors.h"
#include "models/ptb_reader.h"
#include "models/sequence_reader.h"
#include "models/synthetic_treebank.h"

namespace copse::models {

namespace fs = std::filesystem;
using scheduler::GraphBatch;

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

Dataset load_data(const TrainOptions& o) {
  Dataset d;
  if (o.data_dir.empty()) {
    auto s = make_synthetic_splits(o.seed);
    d.train = std::move(s.train);
    d.dev = std::move(s.dev);
    d.test = std::move(s.test);
    d.source = fmt::format("synthetic compositional treebank (seed {})", o.seed);
    return d;
  }
  if (!fs::is_directory(o.data_dir)) fail("{}: not a directory", o.data_dir);
  d.train = read_ptb_file((fs::path(o.data_dir) / "train.txt").string());
  d.dev = read_ptb_file((fs::path(o.data_dir) / "dev.txt").string());
  d.test = read_ptb_file((fs::path(o.data_dir) / "test.txt").string());
  d.source = o.data_dir;
  return d;
}

bool is_sequence_model(const std::string& model) {
  return model == "lstm" || model == "gru" || model == "lstm2";
}

void prepare_inputs(const std::string& model, std::vector<LabeledTree>& trees, Vocab* vocab,
                    bool grow_vocab) {
  if (is_sequence_model(model))
    for (auto& t : trees) t = ptb_to_chain(t);
  if (grow_vocab)
    for (auto& t : trees)
      for (const auto& w : t.token)
        if (!w.empty()) vocab->add(w);
  for (auto& t : trees) {
    if (is_sequence_model(model))
      assign_all_inputs(*vocab, t);
    else
      vocab->assign_inputs(t);
  }
}

std::map<std::string, std::string> options_map(const TrainOptions& o) {
  return {{"task", o.task},
          {"data", o.data_dir},
          {"model", o.model},
          {"epochs", std::to_string(o.epochs)},
          {"batch", std::to_string(o.batch)},
          {"embed", std::to_string(o.embed)},
          {"hidden", std::to_string(o.hidden)},
          {"optimizer", o.optimizer},
          {"lr", fmt::format("{}", o.lr)},
          {"l2", fmt::format("{}", o.l2)},
          {"clip", fmt::format("{}", o.clip)},
          {"embeddings", o.embeddings},
          {"threads", std::to_string(o.threads)},
          {"seed", std::to_string(o.seed)},
          {"workers", std::to_string(o.workers)},
          {"staleness", std::to_string(o.staleness)},
          {"checkpoint_every", std::to_string(o.checkpoint_every)},
          {"skip_nonfinite", o.skip_nonfinite ? "1" : "0"},
          {"max_skipped", std::to_string(o.max_skipped)}};
}

TrainOptions options_from_map(const std::map<std::string, std::string>& m,
                              const std::string& path) {
  auto get = [&](const char* k) {
    auto it = m.find(k);
    if (it == m.end()) fail("{}: checkpoint lacks option '{}'", path, k);
    return it->second;
  };
  TrainOptions o;
  o.data_dir = get("data");
  o.model = get("model");
  o.epochs = std::stoi(get("epochs"));
  o.batch = std::stoi(get("batch"));
  o.embed = std::stoi(get("embed"));
  o.hidden = std::stoi(get("hidden"));
  o.optimizer = get("optimizer");
  o.lr = std::stof(get("lr"));
  o.l2 = std::stof(get("l2"));
  o.clip = std::stof(get("clip"));
  o.embeddings = get("embeddings");
  o.threads = std::stoi(get("threads"));
  o.workers = std::stoi(get("workers"));
  o.staleness = std::stoi(get("staleness"));
  o.seed = std::stoull(get("seed"));
  o.checkpoint_every = std::stol(get("checkpoint_every"));
  o.skip_nonfinite = get("skip_nonfinite") == "1";
  // Checkpoints written before --max-skipped or --task existed keep the defaults.
  if (m.count("task")) o.task = m.at("task");
  if (m.count("max_skipped")) o.max_skipped = std::stoi(m.at("max_skipped"));
  return o;
}

void write_lines_atomic(const std::string& path, const std::vector<std::string>& lines) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    for (const auto& l : lines) f << l << "\n";
    f.flush();
    if (!f) fail("{}: cannot write", tmp);
  }
  fs::rename(tmp, path);
}

std::string SkipPolicy::last_checkpoint() const {
  return fs::exists(checkpoint_) ? checkpoint_ : std::string("none");
}

void SkipPolicy::skip(const std::string& what) {
  if (!skip_) fail("{}; training stopped, last checkpoint: {}", what, last_checkpoint());
  ++total_, ++epoch_, ++consecutive_;
  if (max_ > 0 && consecutive_ >= max_)
    fail(
        "training diverged: {} batches in a row were skipped (the last, {}); last good "
        "checkpoint: {}",
        consecutive_, what, last_checkpoint());
  if (!print_) return;
  if (shown_ < kWarnings) {
    ++shown_;
    fmt::print(stderr, "copse: warning: {}; batch skipped{}\n", what,
               shown_ == kWarnings ? " (further skips are counted per epoch)" : "");
  }
}

long SkipPolicy::end_epoch(int epoch) {
  const long n = epoch_;
  if (print_ && n > 0)
    fmt::print(stderr, "copse: warning: epoch {}: {} batch{} skipped for non-finite values\n",
               epoch, n, n == 1 ? "" : "es");
  epoch_ = 0;
  return n;
}

}  // namespace copse::models
