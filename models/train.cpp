// `copse train` / `copse eval` (see train.h).
#include "models/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "common/error.h"
#include "common/progress.h"
#include "memory/safetensors.h"
#include "models/embeddings.h"
#include "models/ptb_reader.h"
#include "models/sentiment_model.h"
#include "models/synthetic_treebank.h"
#include "models/tree_lstm.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"

namespace copse::models {

namespace fs = std::filesystem;
using scheduler::GraphBatch;

namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct Dataset {
  std::vector<LabeledTree> train, dev, test;
  std::string source;
};

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

std::vector<GraphBatch> make_batches(const std::vector<LabeledTree>& trees, int batch) {
  std::vector<GraphBatch> out;
  std::vector<const scheduler::Graph*> g;
  for (size_t i = 0; i < trees.size(); i += batch) {
    g.clear();
    for (size_t j = i; j < std::min(trees.size(), i + batch); ++j) g.push_back(&trees[j].graph);
    out.push_back(scheduler::make_batch(g));
  }
  return out;
}

EvalCounts evaluate(SentimentModel<float>& m, const std::vector<GraphBatch>& batches) {
  EvalCounts c;
  for (const auto& b : batches) m.evaluate_batch(b, c);
  return c;
}

void save_model(const std::string& path, SentimentModel<float>& m, const Vocab& vocab,
                const std::map<std::string, std::string>& extra) {
  auto& ps = m.params();
  std::vector<memory::TensorData> ts;
  for (int i = 0; i < ps.size(); ++i) {
    memory::TensorData t;
    t.name = ps.spec(i).name;
    for (int d : ps.spec(i).shape) t.shape.push_back(d);
    t.data = ps.get_host(i);
    ts.push_back(std::move(t));
  }
  std::map<std::string, std::string> meta = extra;
  std::string words;
  for (int i = 0; i < vocab.size(); ++i) {
    words += vocab.token(i);
    words += '\n';
  }
  meta["copse.vocab"] = words;
  meta["copse.cell"] = m.plan().fn.name;
  meta["copse.embed"] = std::to_string(m.config().embed);
  meta["copse.hidden"] = std::to_string(m.config().hidden);
  meta["copse.classes"] = std::to_string(m.config().classes);
  memory::save_safetensors(path, ts, meta);
}

}  // namespace

int run_train(const TrainOptions& o) {
  if (o.epochs < 0) fail("--epochs must be >= 0, got {}", o.epochs);
  if (o.batch <= 0) fail("--batch must be positive, got {}", o.batch);
  if (o.embed <= 0 || o.hidden <= 0) fail("--embed and --hidden must be positive");
  if (o.threads <= 0) fail("--threads must be positive, got {}", o.threads);
  memory::OptimizerConfig oc;
  oc.kind = memory::parse_optimizer_kind(o.optimizer);
  oc.lr = o.lr;
  oc.l2 = o.l2;
  oc.clip_norm = o.clip;
  oc.validate();

  // --threads is the process's thread budget: the GEMMs, the fused kernels and
  // the optimizer loops all use OpenMP.
  omp_set_num_threads(o.threads);
  double t_start = now_s();
  Dataset data = load_data(o);
  if (data.train.empty()) fail("{}: no training trees", data.source);
  Vocab vocab;
  for (auto& t : data.train)
    for (const auto& w : t.token)
      if (!w.empty()) vocab.add(w);
  for (auto* split : {&data.train, &data.dev, &data.test})
    for (auto& t : *split) vocab.assign_inputs(t);

  ops::CpuBackend<float> backend(o.threads);
  SentimentConfig cfg;
  cfg.vocab = vocab.size();
  cfg.embed = o.embed;
  cfg.hidden = o.hidden;
  SentimentModel<float> model(tree_lstm_cell(o.embed, o.hidden), cfg, backend);
  auto& ps = model.params();
  ps.init(o.seed);
  int found = -1;
  if (!o.embeddings.empty()) {
    std::vector<float> table = ps.get_host(ps.id("embed"));
    found = load_glove(o.embeddings, vocab, o.embed, table.data());
    ps.set_host(ps.id("embed"), table);
  }
  ps.set_optimizer(oc);

  auto dev_batches = make_batches(data.dev, 256);
  auto test_batches = make_batches(data.test, 256);
  long train_vertices = 0;
  for (const auto& t : data.train) train_vertices += t.num_vertices();

  if (!o.quiet) {
    fmt::print("copse train: {} | train {} trees ({} vertices), dev {}, test {} | vocab {}{}\n",
               data.source, data.train.size(), train_vertices, data.dev.size(), data.test.size(),
               vocab.size(), found >= 0 ? fmt::format(" ({} with pretrained vectors)", found) : "");
    fmt::print("tree_lstm embed={} hidden={} | {} lr={} l2={} | batch {} | {} epochs | {} thread(s) | "
               "seed {}\n",
               o.embed, o.hidden, o.optimizer, o.lr, o.l2, o.batch, o.epochs, o.threads, o.seed);
    std::fflush(stdout);
  }
  // Nothing is written before the data and the model are known good.
  fs::create_directories(o.out);
  std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  std::string model_path = (fs::path(o.out) / "model.safetensors").string();
  std::ofstream metrics(metrics_path, std::ios::trunc);
  if (!metrics) fail("{}: cannot open for writing", metrics_path);

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<int> order(data.train.size());
  std::iota(order.begin(), order.end(), 0);
  double best_dev = -1;
  int best_epoch = 0;
  long step = 0;
  std::vector<const scheduler::Graph*> g;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    Progress bar(fmt::format("epoch {}/{}", epoch, o.epochs), static_cast<long>(order.size()),
                 "trees", stderr, false);
    if (!o.progress) bar.finish();
    double t0 = now_s(), loss_sum = 0;
    long labelled = 0;
    for (size_t i = 0; i < order.size(); i += o.batch) {
      g.clear();
      for (size_t j = i; j < std::min(order.size(), i + o.batch); ++j)
        g.push_back(&data.train[order[j]].graph);
      GraphBatch batch = scheduler::make_batch(g);
      ps.zero_grads();
      double loss = model.train_batch(batch, 1.0f / static_cast<float>(g.size()));
      ++step;
      if (!std::isfinite(loss))
        fail("step {} (epoch {}, batch at tree {}): non-finite loss; training stopped, {} kept",
             step, epoch, i, best_epoch ? model_path : std::string("no checkpoint"));
      ps.step();
      loss_sum += loss;
      for (int l : batch.label) labelled += l >= 0;
      bar.update(static_cast<long>(i + g.size()),
                 fmt::format("loss {:.3f}", loss_sum / std::max(1L, labelled)));
    }
    double train_s = now_s() - t0;
    bar.finish();
    EvalCounts dev = evaluate(model, dev_batches);
    EvalCounts test = evaluate(model, test_batches);
    nlohmann::json m;
    m["epoch"] = epoch;
    m["train_loss"] = loss_sum / std::max(1L, labelled);
    m["train_trees_per_s"] = data.train.size() / train_s;
    m["train_s"] = train_s;
    m["dev_fine"] = dev.fine();
    m["dev_binary"] = dev.binary();
    m["test_fine"] = test.fine();
    m["test_binary"] = test.binary();
    m["peak_arena_bytes"] = model.arena().peak_bytes();
    m["wall_s"] = now_s() - t_start;
    metrics << m.dump() << "\n";
    metrics.flush();
    if (dev.fine() > best_dev) {
      best_dev = dev.fine();
      best_epoch = epoch;
      save_model(model_path, model, vocab,
                 {{"copse.epoch", std::to_string(epoch)}, {"copse.seed", std::to_string(o.seed)}});
    }
    if (!o.quiet)
      fmt::print("epoch {:>3}  loss {:.4f}  {:>7.0f} trees/s  dev fine {:.3f} bin {:.3f}  test fine "
                 "{:.3f} bin {:.3f}{}\n",
                 epoch, m["train_loss"].get<double>(), m["train_trees_per_s"].get<double>(),
                 dev.fine(), dev.binary(), test.fine(), test.binary(),
                 best_epoch == epoch ? "  *" : "");
    std::fflush(stdout);
  }
  if (!o.quiet && best_epoch > 0)
    fmt::print("best dev fine {:.3f} at epoch {}; model: {}; metrics: {}\n", best_dev, best_epoch,
               model_path, metrics_path);
  return 0;
}

int run_eval(const EvalOptions& o) {
  std::map<std::string, std::string> meta;
  auto tensors = memory::load_safetensors(o.model, &meta);
  auto get = [&](const std::string& k) {
    auto it = meta.find(k);
    if (it == meta.end()) fail("{}: not a copse model (metadata '{}' missing)", o.model, k);
    return it->second;
  };
  Vocab vocab;
  {
    std::istringstream in(get("copse.vocab"));
    std::string w;
    int i = 0;
    while (std::getline(in, w)) {
      if (i++ == 0) continue;  // id 0 is <unk>, already present
      vocab.add(w);
    }
  }
  SentimentConfig cfg;
  cfg.vocab = vocab.size();
  cfg.embed = std::stoi(get("copse.embed"));
  cfg.hidden = std::stoi(get("copse.hidden"));
  cfg.classes = std::stoi(get("copse.classes"));
  auto trees = read_ptb_file(o.data, cfg.classes);
  for (auto& t : trees) vocab.assign_inputs(t);
  ops::CpuBackend<float> backend(o.threads);
  SentimentModel<float> model(tree_lstm_cell(cfg.embed, cfg.hidden), cfg, backend);
  auto& ps = model.params();
  for (const auto& t : tensors) {
    int id = ps.find(t.name);
    if (id < 0) fail("{}: unexpected tensor '{}'", o.model, t.name);
    std::vector<int64_t> want(ps.spec(id).shape.begin(), ps.spec(id).shape.end());
    if (want != t.shape)
      fail("{}: tensor '{}' has shape [{}], the model needs [{}]", o.model, t.name,
           fmt::join(t.shape, ", "), fmt::join(want, ", "));
    ps.set_host(id, t.data);
  }
  if (static_cast<int>(tensors.size()) != ps.size())
    fail("{}: {} tensors, the model has {} parameters", o.model, tensors.size(), ps.size());
  EvalCounts c = evaluate(model, make_batches(trees, 256));
  nlohmann::json j;
  j["fine"] = c.fine();
  j["binary"] = c.binary();
  j["trees"] = c.trees;
  j["binary_trees"] = c.binary_trees;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace copse::models
