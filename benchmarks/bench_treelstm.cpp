// bench_treelstm: Tree-LSTM training throughput on a PTB treebank, batched and
// with batching off (one vertex at a time through the same runtime).
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "benchmarks/bench_util.h"
#include "common/error.h"
#include "models/ptb_reader.h"
#include "models/sentiment_model.h"
#include "models/synthetic_treebank.h"
#include "models/tree_lstm.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"
#include "ops/device.h"
#ifdef COPSE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

using namespace copse;

namespace {

using copse::bench::now_s;
using copse::bench::cpu_model;

struct Result {
  double trees_per_s = 0, seconds = 0;
  long trees = 0, batches = 0;
  size_t peak_bytes = 0;
  scheduler::ExecStats stats;
  double t_batching = 0, t_optimizer = 0, t_head_and_rest = 0;
  double t_check = 0;  // of t_optimizer: the non-finite check of the update
  double first_loss = 0;  // of the first (untimed) batch
  long launches = 0, syncs = 0;     // CUDA: kernels queued and host waits, timed batches
  size_t peak_device_bytes = 0;     // CUDA: everything cudaMalloc'd (params, arena, ...)
};

Result run(ops::Backend<float>& be, const std::vector<models::LabeledTree>& trees, int vocab,
           int embed, int hidden, int batch, const std::string& optimizer, double seconds,
           bool batching, long max_trees, bool profile, bool dedup) {
  models::SentimentConfig cfg;
  cfg.dedup_pulls = dedup;
  cfg.vocab = vocab;
  cfg.embed = embed;
  cfg.hidden = hidden;
  cfg.profile = profile;
  models::SentimentModel<float> model(models::tree_lstm_cell(embed, hidden), cfg, be);
  auto& ps = model.params();
  ps.init(1);
  memory::OptimizerConfig oc;
  oc.kind = memory::parse_optimizer_kind(optimizer);
  oc.lr = oc.kind == memory::OptimizerConfig::Adam ? 1e-3f : 0.05f;
  ps.set_optimizer(oc);
  scheduler::BatchOptions bo;
  bo.one_vertex_per_level = !batching;
  std::vector<int> order(trees.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(7);
  std::shuffle(order.begin(), order.end(), rng);

  Result r;
  std::vector<const scheduler::Graph*> g;
  size_t pos = 0;
  bool first = true;
  auto step = [&](bool timed) {
    g.clear();
    for (int j = 0; j < batch; ++j) {
      if (pos == order.size()) pos = 0;
      g.push_back(&trees[order[pos++]].graph);
    }
    double t0 = now_s();
    auto b = scheduler::make_batch(g, bo);
    double t1 = now_s();
    ps.zero_grads();
    double loss = model.train_batch(b, 1.0f / batch);
    if (!std::isfinite(loss)) fail("non-finite loss in the benchmark");
    if (first) r.first_loss = loss, first = false;
    double t2 = now_s();
    const std::string bad = ps.prepare_step();  // the exchange (none here) and the non-finite check
    be.sync();
    double t_checked = now_s();
    if (!bad.empty()) fail("non-finite update of '{}' in the benchmark", bad);
    ps.apply_step();
    double t3 = now_s();
    if (timed) {
      r.t_batching += t1 - t0;
      r.t_check += t_checked - t2;
      r.t_optimizer += (t3 - t2);
      r.t_head_and_rest += (t2 - t1);
    }
  };
  for (int i = 0; i < 3; ++i) step(false);  // warm-up: arena grows, JIT kernels built
  model.train_executor().reset_stats();
#ifdef COPSE_WITH_CUDA
  auto* gpu = dynamic_cast<cuda::CudaBackend*>(&be);
  if (gpu) gpu->reset_stats();
#endif
  be.sync();
  double t0 = now_s();
  while ((now_s() - t0 < seconds || r.batches < 3) && (max_trees <= 0 || r.trees < max_trees)) {
    step(true);
    r.trees += batch;
    ++r.batches;
  }
  be.sync();
  r.seconds = now_s() - t0;
#ifdef COPSE_WITH_CUDA
  if (gpu) {
    r.launches = gpu->stats().launches;
    r.syncs = gpu->stats().syncs;
    r.peak_device_bytes = gpu->stats().peak_device_bytes;
  }
#endif
  r.trees_per_s = r.trees / r.seconds;
  r.peak_bytes = model.arena().peak_bytes();
  r.stats = model.train_executor().stats();
  const auto& s = r.stats;
  r.t_head_and_rest -= s.t_gemm + s.t_fused + s.t_gather + s.t_other;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_treelstm: Tree-LSTM training throughput (trees/s)"};
  std::string data, optimizer = "adam", device = "cpu";
  int embed = 128, hidden = 128, batch = 64, threads = 1;
  double seconds = 10;
  bool no_unbatched = false, tf32 = false, interpreter = false, no_dedup = false;
  app.add_option("--data", data, "PTB file (e.g. SST train.txt); default: synthetic treebank");
  app.add_option("--embed", embed)->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--seconds", seconds, "timed seconds per configuration")->capture_default_str();
  app.add_option("--optimizer", optimizer)->capture_default_str();
  app.add_flag("--no-unbatched", no_unbatched, "skip the batching-off run");
  app.add_flag("--no-dedup", no_dedup, "word GEMM per row, not per distinct word (A/B)");
  app.add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  app.add_flag("--tf32", tf32, "cuda: allow TF32 GEMMs");
  app.add_flag("--interpreter", interpreter, "cuda: run fused programs with the interpreter kernel");
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);  // the process's thread budget, for every OpenMP loop
  try {
    std::vector<models::LabeledTree> trees =
        data.empty() ? models::make_synthetic_treebank(4000, 1) : models::read_ptb_file(data);
    models::Vocab vocab;
    for (auto& t : trees)
      for (const auto& w : t.token)
        if (!w.empty()) vocab.add(w);
    long vertices = 0;
    for (auto& t : trees) {
      vocab.assign_inputs(t);
      vertices += t.num_vertices();
    }
    struct utsname u;
    uname(&u);
    ops::DeviceOptions dopt;
    dopt.device = ops::resolve_device(device);
    dopt.threads = threads;
    dopt.tf32 = tf32;
    dopt.generated_kernels = !interpreter;
    const bool gpu = dopt.device == "cuda";
    fmt::print("bench_treelstm | data {} ({} trees, {} vertices) | embed {} hidden {} batch {} | {} "
               "| threads {} | device {}{}\nmachine: {} ({} cores), {} {}{}\n",
               data.empty() ? "synthetic" : data, trees.size(), vertices, embed, hidden, batch,
               optimizer, threads, dopt.device,
               gpu ? fmt::format(" (tf32 {}, fused kernels {})", tf32 ? "on" : "off",
                                 interpreter ? "interpreted" : "NVRTC")
                   : "",
               cpu_model(), std::thread::hardware_concurrency(), u.sysname, u.release,
               gpu ? "\ngpu: " + ops::gpu_description(0) : "");
    auto be = ops::make_backend(dopt);
    // The check before timing: on a GPU, the first batch's loss equals the
    // CPU backend's on the same parameters.
    if (gpu) {
      ops::CpuBackend<float> cpu(threads);
      Result c = run(cpu, trees, vocab.size(), embed, hidden, batch, optimizer, 0, true, batch,
                     false, !no_dedup);
      Result g = run(*be, trees, vocab.size(), embed, hidden, batch, optimizer, 0, true, batch,
                     false, !no_dedup);
      const double rel = std::fabs(g.first_loss - c.first_loss) / std::fabs(c.first_loss);
      fmt::print("check: first-batch loss cpu {:.6f}, cuda {:.6f} (relative difference {:.1e})\n",
                 c.first_loss, g.first_loss, rel);
      if (!(rel < 1e-4)) fail("the CUDA backend's loss differs from the CPU backend's");
    }
    // On a GPU the timed run is unprofiled (profiling synchronises every
    // call); a second, profiled run gives the breakdown.
    Result b = run(*be, trees, vocab.size(), embed, hidden, batch, optimizer, seconds, true, 0,
                   !gpu, !no_dedup);
    Result prof;
    if (gpu)
      prof = run(*be, trees, vocab.size(), embed, hidden, batch, optimizer,
                 std::min(seconds, 3.0), true, 0, true, !no_dedup);
    Result ub;
    if (!no_unbatched)
      ub = run(*be, trees, vocab.size(), embed, hidden, batch, optimizer, std::min(seconds, 5.0),
               false, 0, true, !no_dedup);
    auto row = [](const char* name, const Result& r) {
      const auto& s = r.stats;
      double per = r.batches ? 1e3 / r.batches : 0;
      fmt::print("{:<10} {:>10.0f} {:>8.1f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} "
                 "{:>7.1f} {:>7.1f} {:>10.1f} {:>9.1f}\n",
                 name, r.trees_per_s, r.seconds, s.t_gemm * per, s.t_fused * per, s.t_gather * per,
                 s.t_other * per, r.t_batching * per, r.t_optimizer * per + r.t_head_and_rest * per,
                 double(s.gemm_calls) / r.batches, double(s.fused_calls) / r.batches,
                 s.gemm_flops / std::max(1e-9, s.t_gemm) / 1e9, r.peak_bytes / 1048576.0);
    };
    fmt::print("\n{:<10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9}\n",
               "mode", "trees/s", "secs", "gemm ms", "fused ms", "gathr ms", "fill ms", "sched ms",
               "rest ms", "gemm/b", "fused/b", "gemm GF/s", "peak MiB");
    fmt::print("{:<10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9}\n",
               "", "", "", "/batch", "/batch", "/batch", "/batch", "/batch", "/batch", "", "", "", "");
    row("batched", gpu ? prof : b);
    if (!no_unbatched) row("unbatched", ub);
    const Result& br = gpu ? prof : b;
    const auto& bs = br.stats;
    const double nb = std::max(1.0, double(br.batches));
    fmt::print("\nword GEMM over distinct words: {} ({:.0f} distinct of {:.0f} words per batch) | "
               "GEMM {:.3f} GFLOP per batch\n",
               no_dedup ? "off" : bs.dedup_rows ? "on" : "not taken",
               bs.dedup_ids / nb, bs.dedup_rows / nb, bs.gemm_flops / nb / 1e9);
    fmt::print("optimizer ({}): {:.3f} ms/batch, of which the non-finite check {:.3f} ms = "
               "{:.2f}% of a batch ({:.2f} ms)\n",
               optimizer, b.t_optimizer * 1e3 / std::max<long>(1, b.batches),
               b.t_check * 1e3 / std::max<long>(1, b.batches),
               100.0 * b.t_check / std::max(1e-9, b.seconds),
               b.seconds * 1e3 / std::max<long>(1, b.batches));
    if (gpu) {
      const double per = b.batches ? 1.0 / b.batches : 0;
      fmt::print("\ncuda, unprofiled: {:.0f} trees/s = {:.3f} s per epoch of {} trees | "
                 "{:.1f} kernel launches and {:.1f} host waits per batch | host scheduling "
                 "(make_batch) {:.3f} ms/batch | peak device memory {:.1f} MiB (arena {:.1f} MiB)\n",
                 b.trees_per_s, trees.size() / b.trees_per_s, trees.size(), b.launches * per,
                 b.syncs * per, b.t_batching * per * 1e3, b.peak_device_bytes / 1048576.0,
                 b.peak_bytes / 1048576.0);
      fmt::print("(the table's batched row is the profiled run: every call synchronised)\n");
    }
    nlohmann::json j;
    j["trees_per_s"] = b.trees_per_s;
    j["peak_bytes"] = b.peak_bytes;
    j["update_check_fraction"] = b.t_check / std::max(1e-9, b.seconds);
    j["unbatched_trees_per_s"] = no_unbatched ? nlohmann::json(nullptr) : nlohmann::json(ub.trees_per_s);
    j["speedup"] = no_unbatched ? nlohmann::json(nullptr) : nlohmann::json(b.trees_per_s / ub.trees_per_s);
    j["config"] = {{"data", data.empty() ? "synthetic" : data}, {"embed", embed}, {"hidden", hidden},
                   {"batch", batch}, {"threads", threads}, {"optimizer", optimizer},
                   {"device", dopt.device}, {"tf32", tf32}, {"seconds", seconds},
                   {"dedup", !no_dedup}};
    if (gpu) {
      j["epoch_s"] = trees.size() / b.trees_per_s;
      j["launches_per_batch"] = b.batches ? double(b.launches) / b.batches : 0.0;
      j["peak_device_bytes"] = b.peak_device_bytes;
    }
    fmt::print("\n{}\n", j.dump());
  } catch (const Error& e) {
    fmt::print(stderr, "bench_treelstm: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
