// bench_models: training throughput of every cell of the model zoo on its
// natural data (SST trees, SST sentences as chains, SICK dependency trees,
// generated DAGs), each checked before it is timed.
#include <fmt/format.h>
#include <omp.h>
#include <sys/utsname.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "benchmarks/bench_util.h"
#include "common/error.h"
#include "models/cells.h"
#include "models/conllu_reader.h"
#include "models/dag_generator.h"
#include "models/ptb_reader.h"
#include "models/sentiment_model.h"
#include "models/sequence_reader.h"
#include "models/synthetic_treebank.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"
#include "ops/device.h"

using namespace copse;

namespace {

using copse::bench::now_s;
using copse::bench::cpu_model;

// CPU seconds of the whole process (all threads): what a run costs even
// when a shared machine takes the core away from it for a while.
double cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Graphs with word ids set, the vocabulary size, and where they came from.
struct Data {
  std::vector<scheduler::Graph> graphs;
  int vocab = 0;
  std::string source;
  long vertices = 0;
};

Data finish(std::vector<models::LabeledTree> trees, bool all_tokens, std::string source) {
  models::Vocab vocab;
  for (const auto& t : trees)
    for (const auto& w : t.token)
      if (!w.empty()) vocab.add(w);
  Data d;
  d.source = std::move(source);
  for (auto& t : trees) {
    if (all_tokens)
      models::assign_all_inputs(vocab, t);
    else
      vocab.assign_inputs(t);
    d.vertices += t.num_vertices();
    d.graphs.push_back(std::move(t.graph));
  }
  d.vocab = vocab.size();
  return d;
}

// SICK dependency trees of both sentences of every training pair. SICK has
// no sentiment labels: the root gets (number of words) mod 5, so the head and
// its gradient run as on SST (the benchmark times the cell, not the task).
Data sick_trees(const std::string& dir) {
  std::vector<models::LabeledTree> trees;
  for (const char* side : {"a", "b"}) {
    auto part = models::read_parents_files(fmt::format("{}/train/{}.toks", dir, side),
                                           fmt::format("{}/train/{}.parents", dir, side));
    for (auto& t : part) {
      t.graph.label[t.root] = t.num_vertices() % 5;
      trees.push_back(std::move(t));
    }
  }
  return finish(std::move(trees), true, dir + "/train/{a,b} (dependency trees)");
}

// Arithmetic-expression DAGs with shared subexpressions (models/dag_generator.h).
Data generated_dags(int count) {
  Data d;
  for (auto& dag : models::generate_expr_dags(count, 11)) {
    d.vertices += dag.graph.num_vertices();
    d.graphs.push_back(std::move(dag.graph));
  }
  d.vocab = models::kNumExprSymbols;
  d.source = fmt::format("{} generated expression DAGs", count);
  return d;
}

// The natural data of a cell: SST (or synthetic) trees for tree cells, the
// same sentences as chains for sequence cells, SICK dependency trees for the
// child-sum cell, generated DAGs for the DAG cell.
Data data_for(const std::string& model, const std::string& sst, const std::string& sick) {
  const bool sequence = model == "lstm" || model == "gru" || model == "lstm2";
  if (model == "dag-gated") return generated_dags(8000);
  if (model == "child-sum-lstm" && !sick.empty()) return sick_trees(sick);
  std::vector<models::LabeledTree> trees = sst.empty() ? models::make_synthetic_treebank(4000, 1)
                                                       : models::read_ptb_file(sst + "/train.txt");
  std::string source = sst.empty() ? "synthetic treebank (4000 trees)" : sst + "/train.txt";
  if (sequence) {
    for (auto& t : trees) t = models::ptb_to_chain(t);
    source += " as word chains";
  }
  return finish(std::move(trees), sequence, source);
}

struct Options {
  int embed = 64, hidden = 64, batch = 25, threads = 1;
  double seconds = 3;
  std::string device = "cpu";  // resolved: cpu or cuda
};

struct Result {
  double graphs_per_s = 0, vertices_per_s = 0, seconds = 0, levels_per_batch = 0;
  double graphs_per_cpu_s = 0, cpu_seconds = 0;
  long graphs = 0, batches = 0;
  size_t peak_bytes = 0;
  scheduler::ExecStats stats;
};

// One model over one data set: a reused sequence of random batches.
class Bench {
 public:
  Bench(const std::string& model, const Data& d, const Options& o, bool strided,
        bool one_vertex_per_level = false)
      : d_(d), o_(o), be_(make(o)) {
    models::SentimentConfig cfg;
    cfg.vocab = d.vocab;
    cfg.embed = o.embed;
    cfg.hidden = o.hidden;
    cfg.strided_views = strided;
    // On a GPU the per-call split would synchronise every call: off there.
    cfg.profile = o.device == "cpu";
    model_ = std::make_unique<models::SentimentModel<float>>(
        models::make_cell(model, o.embed, o.hidden), cfg, *be_);
    auto& ps = model_->params();
    ps.init(1);
    memory::OptimizerConfig oc;
    oc.kind = memory::OptimizerConfig::Adagrad;
    oc.lr = 0.05f;
    ps.set_optimizer(oc);
    bo_.num_slots = std::max(1, model_->plan().fn.child_slots);
    bo_.one_vertex_per_level = one_vertex_per_level;
    order_.resize(d.graphs.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::mt19937_64 rng(7);
    std::shuffle(order_.begin(), order_.end(), rng);
  }

  // Loss and gradient norm of the first batch (parameters unchanged).
  std::pair<double, double> first_batch() {
    pos_ = 0;
    auto b = next_batch();
    auto& ps = model_->params();
    ps.zero_grads();
    double loss = model_->train_batch(b, 1.0f / o_.batch);
    return {loss, ps.grad_norm()};
  }

  Result time() {
    Result r;
    for (int i = 0; i < 3; ++i) step();  // warm-up: the arena grows, kernels are built
    model_->train_executor().reset_stats();
    long levels = 0, vertices = 0;
    be_->sync();
    const double t0 = now_s(), c0 = cpu_s();
    while (now_s() - t0 < o_.seconds || r.batches < 3) {
      auto [l, v] = step();
      levels += l;
      vertices += v;
      r.graphs += o_.batch;
      ++r.batches;
    }
    be_->sync();
    r.seconds = now_s() - t0;
    r.cpu_seconds = cpu_s() - c0;
    r.graphs_per_s = r.graphs / r.seconds;
    r.graphs_per_cpu_s = r.graphs / r.cpu_seconds;
    r.vertices_per_s = vertices / r.seconds;
    r.levels_per_batch = double(levels) / r.batches;
    r.peak_bytes = model_->arena().peak_bytes();
    r.stats = model_->train_executor().stats();
    return r;
  }

 private:
  scheduler::GraphBatch next_batch() {
    g_.clear();
    for (int j = 0; j < o_.batch; ++j) {
      if (pos_ == order_.size()) pos_ = 0;
      g_.push_back(&d_.graphs[order_[pos_++]]);
    }
    return scheduler::make_batch(g_, bo_);
  }

  std::pair<int, int> step() {
    auto b = next_batch();
    auto& ps = model_->params();
    ps.zero_grads();
    const double loss = model_->train_batch(b, 1.0f / o_.batch);
    if (!std::isfinite(loss)) fail("bench_models: non-finite loss");
    ps.step();
    return {b.num_levels, b.num_rows};
  }

  static std::unique_ptr<ops::Backend<float>> make(const Options& o) {
    ops::DeviceOptions d;
    d.device = o.device;
    d.threads = o.threads;
    return ops::make_backend(d);
  }

  const Data& d_;
  Options o_;
  std::unique_ptr<ops::Backend<float>> be_;
  std::unique_ptr<models::SentimentModel<float>> model_;
  scheduler::BatchOptions bo_;
  std::vector<int> order_;
  std::vector<const scheduler::Graph*> g_;
  size_t pos_ = 0;
};

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// The first batch's loss and gradient norm must agree between the strided
// path, the gather path and batching off (one vertex per level, the
// reference-like order); and the loss must be finite.
void check(const std::string& model, const Data& d, const Options& o) {
  auto [loss, norm] = Bench(model, d, o, true).first_batch();
  auto [loss_g, norm_g] = Bench(model, d, o, false).first_batch();
  auto [loss_1, norm_1] = Bench(model, d, o, true, true).first_batch();
  const double worst = std::max({rel_diff(loss_g, loss), rel_diff(norm_g, norm),
                                 rel_diff(loss_1, loss), rel_diff(norm_1, norm)});
  fmt::print(
      "check {:<15} first-batch loss {:.6f} |grad| {:.6f}; gathers {:.6f} {:.6f}; batching "
      "off {:.6f} {:.6f}; worst relative difference {:.1e}\n",
      model, loss, norm, loss_g, norm_g, loss_1, norm_1, worst);
  if (!std::isfinite(loss) || !std::isfinite(norm) || norm == 0 || !(worst < 1e-4))
    fail("bench_models: {} failed its check before timing", model);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_models: training throughput of every cell of the zoo (graphs/s)"};
  std::string sst, sick, model_list, strided = "on";
  int repeat = 1;
  Options o;
  app.add_option("--sst", sst, "SST directory (train.txt); default: synthetic treebank");
  app.add_option("--sick", sick, "SICK directory (train/a.toks, ...) for child-sum-lstm");
  app.add_option("--models", model_list, "comma-separated cells (default: all)");
  app.add_option("--embed", o.embed)->capture_default_str();
  app.add_option("--hidden", o.hidden)->capture_default_str();
  app.add_option("--batch", o.batch)->capture_default_str();
  app.add_option("--threads", o.threads)->capture_default_str();
  app.add_option("--seconds", o.seconds, "timed seconds per model")->capture_default_str();
  app.add_option("--repeat", repeat, "time each path this many times (in turn), keep the fastest")
      ->capture_default_str();
  app.add_option("--strided", strided, "on | off | both: strided views of gathers")
      ->check(CLI::IsMember({"on", "off", "both"}))
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda | auto")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(o.threads);
  try {
    o.device = ops::resolve_device(o.device);
    std::vector<std::string> models =
        model_list.empty() ? models::cell_names() : split_list(model_list);
    for (const auto& m : models) models::make_cell(m, 2, 2);  // unknown names fail here
    struct utsname u;
    uname(&u);
    fmt::print(
        "bench_models | embed {} hidden {} batch {} | adagrad | threads {} | device {} | "
        "{} s x {} per path, fastest kept | strided views {}\nmachine: {} ({} cores), {} {}{}\n",
        o.embed, o.hidden, o.batch, o.threads, o.device, o.seconds, repeat, strided, cpu_model(),
        std::thread::hardware_concurrency(), u.sysname, u.release,
        o.device == "cuda" ? "\ngpu: " + ops::gpu_description(0) +
                                 " (ms split not profiled on the GPU: shown as 0)"
                           : "");
    struct Row {
      std::string model, path;
      Result r;
      std::string source;
    };
    std::vector<Row> rows;
    for (const auto& m : models) {
      const Data d = data_for(m, sst, sick);
      fmt::print("data {:<15} {} ({} graphs, {} vertices, vocabulary {})\n", m, d.source,
                 d.graphs.size(), d.vertices, d.vocab);
      check(m, d, o);
      // Paths timed in turn, `repeat` times each; the run of each with the
      // fewest CPU seconds per graph is kept (on a shared machine the others
      // mostly measure interference).
      std::vector<std::unique_ptr<Bench>> benches;
      std::vector<Row> best;
      for (bool on : {true, false}) {
        if ((on && strided == "off") || (!on && strided == "on")) continue;
        benches.push_back(std::make_unique<Bench>(m, d, o, on));
        best.push_back({m, on ? "strided" : "gathers", Result(), d.source});
      }
      for (int rep = 0; rep < repeat; ++rep) {
        for (size_t i = 0; i < benches.size(); ++i) {
          Result r = benches[i]->time();
          if (r.graphs_per_cpu_s > best[i].r.graphs_per_cpu_s) best[i].r = r;
        }
      }
      rows.insert(rows.end(), best.begin(), best.end());
    }
    fmt::print(
        "\n{:<15} {:<8} {:>9} {:>9} {:>11} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}\n",
        "model", "path", "graphs/s", "/cpu-s", "vertices/s", "levels/b", "ms/batch", "gemm ms",
        "fused ms", "gathr ms", "views/b", "GEMM GF/s", "peak MiB");
    nlohmann::json results = nlohmann::json::array();
    for (const Row& row : rows) {
      const Result& r = row.r;
      const auto& s = r.stats;
      const double per = 1e3 / r.batches;
      const double gflops = s.gemm_flops / std::max(1e-9, s.t_gemm) / 1e9;
      fmt::print(
          "{:<15} {:<8} {:>9.0f} {:>9.0f} {:>11.0f} {:>8.1f} {:>9.2f} {:>8.2f} {:>8.2f} {:>8.2f} "
          "{:>8.1f} {:>8.1f} {:>9.1f}\n",
          row.model, row.path, r.graphs_per_s, r.graphs_per_cpu_s, r.vertices_per_s,
          r.levels_per_batch, r.seconds * per, s.t_gemm * per, s.t_fused * per, s.t_gather * per,
          double(s.strided_views) / r.batches, gflops, r.peak_bytes / 1048576.0);
      results.push_back({{"model", row.model},
                         {"path", row.path},
                         {"data", row.source},
                         {"graphs_per_s", r.graphs_per_s},
                         {"graphs_per_cpu_s", r.graphs_per_cpu_s},
                         {"vertices_per_s", r.vertices_per_s},
                         {"levels_per_batch", r.levels_per_batch},
                         {"gemm_gflops", gflops},
                         {"strided_views_per_batch", double(s.strided_views) / r.batches},
                         {"peak_bytes", r.peak_bytes}});
    }
    nlohmann::json j;
    j["results"] = results;
    j["config"] = {{"embed", o.embed},     {"hidden", o.hidden},   {"batch", o.batch},
                   {"threads", o.threads}, {"seconds", o.seconds}, {"repeat", repeat},
                   {"device", o.device},   {"strided", strided}};
    fmt::print("\n{}\n", j.dump());
  } catch (const Error& e) {
    fmt::print(stderr, "bench_models: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
