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
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "common/error.h"
#include "common/progress.h"
#include "memory/safetensors.h"
#include "memory/ssp_server.h"
#include "memory/thread_sync.h"
#include "models/cells.h"
#include "models/checkpoint.h"
#include "models/train_task.h"
#include "models/train_util.h"
#include "models/embeddings.h"
#include "models/model.h"
#include "models/trainer.h"
#include "models/ptb_reader.h"
#include "models/sequence_reader.h"
#include "models/sentiment_model.h"
#include "models/synthetic_treebank.h"
#include "models/transport.h"
#include "models/tree_lstm.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"
#include "ops/device.h"

namespace copse::models {

namespace fs = std::filesystem;
using scheduler::GraphBatch;

namespace {

std::string join_ints(const std::vector<int>& v) {
  std::string out;
  for (int r : v) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

}  // namespace

int run_train(const TrainOptions& given) {
  TrainState resumed;
  bool resuming = !given.resume.empty();
  std::string checkpoint_path;
  TrainOptions o = given;
  if (resuming) {
    checkpoint_path = (fs::path(given.resume) / "checkpoint.safetensors").string();
    if (!fs::exists(checkpoint_path)) fail("{}: no checkpoint to resume from", checkpoint_path);
    resumed = load_checkpoint(checkpoint_path);
    o = options_from_map(resumed.options, checkpoint_path);
    o.out = given.resume;
    o.progress = given.progress;
    o.quiet = given.quiet;
    o.device = given.device;
    o.tf32 = given.tf32;
    o.transport = given.transport;
    o.sync_timeout = given.sync_timeout;
  }
  if (o.epochs < 0) fail("--epochs must be >= 0, got {}", o.epochs);
  if (o.batch <= 0) fail("--batch must be positive, got {}", o.batch);
  if (o.embed <= 0 || o.hidden <= 0) fail("--embed and --hidden must be positive");
  if (o.threads <= 0) fail("--threads must be positive, got {}", o.threads);
  if (o.staleness < -1) fail("--staleness must be >= 0 (or -1 for BSP), got {}", o.staleness);
  if (o.staleness >= 0 && o.transport == "nccl")
    fail("--staleness (SSP) runs over --transport thread or mpi; nccl is bulk-synchronous");
  if (o.checkpoint_every < 0) fail("--checkpoint-every must be >= 0, got {}", o.checkpoint_every);
  if (o.max_skipped < 0) fail("--max-skipped must be >= 0, got {}", o.max_skipped);
  TrainerOptions to;
  to.optimizer = optimizer(o.optimizer, o.lr, o.l2, o.clip);
  to.workers = resuming && o.transport != "thread" ? 0 : o.workers;
  to.transport = o.transport;
  to.staleness = o.staleness;
  to.sync_timeout = o.sync_timeout;
  to.skip_nonfinite = o.skip_nonfinite;
  to.max_skipped = o.max_skipped;
  to.threads = o.threads;
  to.test_faults = true;
  ModelConfig mc;
  mc.embed = o.embed;
  mc.hidden = o.hidden;
  mc.seed = o.seed;
  mc.device = ops::resolve_device(o.device);
  mc.threads = o.threads;
  mc.tf32 = o.tf32;
  // The gradient exchanges (thread, mpi, nccl) still read the gradients in
  // host memory; the CUDA backend keeps them on the device.
  if (mc.device == "cuda" && (o.workers > 1 || o.transport != "thread"))
    fail("--device cuda trains one worker for now ({} asked for): the gradient exchanges read "
         "host memory; use --device cpu for data parallelism",
         o.transport != "thread" ? std::string("--transport ") + o.transport
                                 : std::to_string(o.workers));

  // --threads is the process's thread budget: the GEMMs, the fused kernels and
  // the optimizer loops all use OpenMP.
  omp_set_num_threads(o.threads);
  double t_start = now_s();
  const std::unique_ptr<TrainTask> task = make_task(o);
  if (o.staleness >= 0 && o.task != "sentiment")
    fail("--staleness (SSP) trains on single trees; --task {} is bulk-synchronous", o.task);
  const Vocab& vocab = task->vocab();
  mc.vocab = vocab.size();
  Model model = task->make_model(o, mc);
  int found = -1;
  if (!o.embeddings.empty()) {
    auto& ps = model.params();
    std::vector<float> pretrained = ps.get_host(ps.id("embed"));
    found = load_glove(o.embeddings, vocab, o.embed, pretrained.data());
    ps.set_host(ps.id("embed"), pretrained);
  }
  // The transport fixes the number of workers (with mpi: the world size) and
  // which of them this process runs; only the process running worker 0
  // prints and writes files. Workers are replicas of the model: same
  // parameters, same optimizer; under BSP they apply the same summed
  // gradient and stay identical.
  const int workers_given = o.workers;  // 0: not given; resuming: the run's
  Trainer trainer(model, to);
  o.workers = trainer.workers();
  if (resuming && workers_given != o.workers)
    fail("{}: the run has {} workers, this job {} MPI ranks; resume it under mpirun -np {} (or "
         "with --transport thread)",
         checkpoint_path, workers_given, o.workers, workers_given);
  const bool root = trainer.root();
  if (!root) {
    o.quiet = true;
    o.progress = false;
  }
  TestFault fault = test_fault_from_env(o.transport);
  const bool ssp = trainer.ssp();
  auto& ps = model.params();

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  TrainState st;
  st.options = options_map(o);
  if (resuming) {
    if (resumed.params.size() != ps.total_elements() ||
        static_cast<int>(resumed.opt_state.size()) != ps.optimizer_state_slots())
      fail("{}: checkpoint does not match the model (parameters or optimizer state differ)",
           checkpoint_path);
    ps.set_flat_host(-1, resumed.params);
    for (int k = 0; k < ps.optimizer_state_slots(); ++k) {
      if (resumed.opt_state[k].size() != ps.total_elements())
        fail("{}: optimizer state {} has the wrong size", checkpoint_path, k);
      ps.set_flat_host(k, resumed.opt_state[k]);
    }
    ps.set_step_counts(resumed.step, resumed.optimizer_steps);
    trainer.sync_replicas();
    std::istringstream(resumed.rng) >> rng;
    st = std::move(resumed);
    st.params.clear();
    st.opt_state.clear();
  }

  const size_t train_size = task->train_size();
  if (!o.quiet) {
    fmt::print("copse train: {} | vocab {}{}\n", task->describe(), vocab.size(),
               found >= 0 ? fmt::format(" ({} with pretrained vectors)", found) : "");
    fmt::print("{} embed={} hidden={} | {} lr={} l2={} | batch {} | {} epochs | {} worker(s) ({}) x "
               "{} thread(s) | seed {}\n",
               o.model, o.embed, o.hidden, o.optimizer, o.lr, o.l2, o.batch, o.epochs, o.workers,
               ssp ? o.transport + ", SSP" : o.transport, o.threads, o.seed);
    if (resuming)
      fmt::print("resuming from {} at epoch {}, step {}\n", checkpoint_path, st.epoch, st.step);
    std::fflush(stdout);
  }
  // Every replica starts from the same state; across processes this checks
  // that every rank read the same data and options.
  {
    const std::string opts = nlohmann::json(st.options).dump();
    std::uint64_t setup = fnv1a(opts.data(), opts.size());
    const long sizes[] = {static_cast<long>(task->train_size()), vocab.size(), st.step, st.epoch};
    setup = fnv1a(sizes, sizeof(sizes), setup);
    std::string bad = join_ints(trainer.diverged_workers(setup));
    if (!bad.empty())
      fail("worker(s) {} start from another state than worker 0 (the same data, options, "
           "checkpoint and copse build on every rank?)",
           bad);
  }
  // Nothing is written before the data and the model are known good, and
  // only by the process running worker 0.
  std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();
  std::string model_path = (fs::path(o.out) / "model.safetensors").string();
  checkpoint_path = (fs::path(o.out) / "checkpoint.safetensors").string();
  std::ofstream metrics;
  if (root) {
    fs::create_directories(o.out);
    // Temporaries of a run that was killed while writing are garbage.
    for (const auto& e : fs::directory_iterator(o.out)) {
      const std::string name = e.path().filename().string();
      for (const char* f :
           {"checkpoint.safetensors.tmp.", "model.safetensors.tmp.", "metrics.jsonl.tmp"})
        if (name.rfind(f, 0) == 0) fs::remove(e.path());
    }
    write_lines_atomic(metrics_path, st.metrics);
    metrics.open(metrics_path, std::ios::app);
    if (!metrics) fail("{}: cannot open for writing", metrics_path);
  }

  SkipPolicy skips(o.skip_nonfinite, o.max_skipped, root, checkpoint_path, st.skipped);
  auto checkpoint = [&]() {
    if (!root) return;
    st.rng = (std::ostringstream() << rng).str();
    st.optimizer_steps = ps.optimizer_steps();
    st.params = ps.get_flat_host(-1);
    st.opt_state.clear();
    for (int k = 0; k < ps.optimizer_state_slots(); ++k) st.opt_state.push_back(ps.get_flat_host(k));
    save_checkpoint(checkpoint_path, st);
    st.params.clear();
    st.opt_state.clear();
  };

  for (; st.epoch <= o.epochs; ++st.epoch) {
    const int epoch = st.epoch;
    if (st.order.empty()) {
      st.order.resize(train_size);
      std::iota(st.order.begin(), st.order.end(), 0);
      std::shuffle(st.order.begin(), st.order.end(), rng);
    }
    const auto& order = st.order;
    const long epoch_first_step = st.step;
    Progress bar(fmt::format("epoch {}/{}", epoch, o.epochs), static_cast<long>(order.size()),
                 task->unit(), stderr, false);
    if (!o.progress) bar.finish();
    // SSP: every worker walks its shares of the batches, one clock per batch.
    // With --checkpoint-every N the epoch runs in segments that end at the
    // steps N divides; run_async returns once every worker has pushed its
    // last clock of the segment and every shard has applied those pushes
    // (over MPI the shards are then collected into every rank's model), so
    // the checkpoint between two segments is the state at one clock that all
    // shards have reached. Resuming runs the rest of the epoch from there.
    while (ssp && st.next < static_cast<long>(order.size())) {
      const double t0 = now_s();
      size_t end = order.size();
      if (o.checkpoint_every > 0) {
        const long clocks = o.checkpoint_every - st.step % o.checkpoint_every;
        end = std::min(order.size(), static_cast<size_t>(st.next + clocks * o.batch));
      }
      std::vector<std::vector<const scheduler::Graph*>> batches;
      for (size_t i = st.next; i < end; i += o.batch)
        batches.push_back(task->graphs(order, i, std::min(end, i + o.batch)));
      AsyncResult a;
      try {
        a = trainer.run_async(batches, fmt::format("epoch {}", epoch));
      } catch (const Error& e) {
        fail("{}; last checkpoint: {}", e.what(),
             fs::exists(checkpoint_path) ? checkpoint_path : std::string("none"));
      }
      st.skipped += a.skipped;
      if (root && a.skipped > 0)
        fmt::print(stderr, "copse: warning: epoch {}: {} push{} skipped for non-finite values\n",
                   epoch, a.skipped, a.skipped == 1 ? "" : "es");
      st.loss_sum += a.loss, st.labelled += a.labelled;
      st.step += static_cast<long>(batches.size());
      st.next = static_cast<long>(end);
      st.train_s += now_s() - t0;
      bar.update(st.next, fmt::format("loss {:.3f}", st.loss_sum / std::max(1L, st.labelled)));
      if (o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0) checkpoint();
    }
    for (size_t i = st.next; i < order.size(); i += o.batch) {
      double t0 = now_s();
      const size_t end = std::min(order.size(), i + o.batch);
      if (omit_batch(fault, st.step + 1)) {
        st.next = static_cast<long>(end);
        continue;
      }
      StepResult r = task->step(trainer, order, i, end);
      st.next = static_cast<long>(end);
      if (!r.taken) {
        skips.skip(fmt::format("step {} (epoch {}, batch of {} {}..{} in this epoch's order): {}",
                               st.step + 1, epoch, task->unit(), i, end - 1, r.problem));
        continue;
      }
      skips.taken();
      ++st.step;
      st.loss_sum += r.loss;
      st.labelled += r.labelled;
      st.train_s += now_s() - t0;
      bar.update(static_cast<long>(st.next),
                 fmt::format("loss {:.3f}", st.loss_sum / std::max(1L, st.labelled)));
      if (o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0) checkpoint();
    }
    bar.finish();
    skips.end_epoch(epoch);
    // Under BSP every worker evaluates its share of the batches; the replicas
    // must still be identical (a cheap check that the exchange works).
    nlohmann::json m;
    std::string scores;
    const double dev_score = task->evaluate(trainer, model, m, scores);
    if (!ssp) {
      std::string bad = join_ints(trainer.diverged_workers());
      if (!bad.empty())
        fail("after epoch {}: the replicas of worker(s) {} differ from worker 0's", epoch, bad);
    }
    m["epoch"] = epoch;
    m["train_loss"] = st.loss_sum / std::max(1L, st.labelled);
    m[fmt::format("train_{}_per_s", task->unit())] = train_size / std::max(1e-9, st.train_s);
    m["train_s"] = st.train_s;
    m["peak_arena_bytes"] = model.core().arena().peak_bytes();
    m["skipped_batches"] = st.skipped;
    m["workers"] = o.workers;
    m["steps"] = st.step - epoch_first_step;
    const SyncReport sync = trainer.take_sync_report();
    if (ssp) {
      m["staleness"] = sync.staleness;
      m["ssp_waits"] = sync.ssp_waits;
      m["ssp_max_lead"] = sync.ssp_max_lead;
      m["sync_bytes"] = sync.bytes;
      nlohmann::json h;
      for (auto [lead, n] : sync.lead_histogram) h[std::to_string(lead)] = n;
      m["ssp_lead_histogram"] = h;
      // Measured at the shards: c - oldest of every read (the clocks behind
      // its reader it was guaranteed complete; never above the staleness).
      nlohmann::json sh;
      for (auto [d, n] : sync.staleness_histogram) sh[std::to_string(d)] = n;
      m["ssp_staleness_histogram"] = sh;
      m["ssp_violations"] = sync.violations;
      m["ssp_wait_s"] = sync.worker_wait_s;  // per worker, seconds blocked on the bound
      const double clocks = static_cast<double>(std::max(1L, sync.clocks));
      m["ssp_bytes_pushed_per_clock"] = static_cast<double>(sync.bytes) / clocks;
      m["ssp_bytes_pulled_per_clock"] = static_cast<double>(sync.pulled_bytes) / clocks;
    } else {
      m["transport"] = sync.transport;
      m["sync_wait_s"] = sync.wait_s;  // mean per worker
      m["sync_bytes"] = sync.bytes;    // gradient bytes all workers contributed
      if (sync.sent_bytes >= 0) m["sync_sent_bytes"] = sync.sent_bytes;  // between processes
      if (sync.exchange_s >= 0) m["sync_exchange_s"] = sync.exchange_s;  // mean per worker
    }
    m["wall_s"] = now_s() - t_start;
    if (root) {
      metrics << m.dump() << "\n";
      metrics.flush();
    }
    st.metrics.push_back(m.dump());
    if (dev_score > st.best_dev) {
      st.best_dev = dev_score;
      st.best_epoch = epoch;
      if (root)
        model.save(model_path,
                   {{"copse.epoch", std::to_string(epoch)}, {"copse.seed", std::to_string(o.seed)}});
    }
    if (!o.quiet) {
      fmt::print("epoch {:>3}  loss {:.4f}  {:>7.0f} {}/s  {}{}\n", epoch,
                 m["train_loss"].get<double>(), train_size / std::max(1e-9, st.train_s),
                 task->unit(), scores, st.best_epoch == epoch ? "  *" : "");
      std::fflush(stdout);
    }
    // The next epoch starts from a clean slate; its order is drawn from rng.
    st.order.clear();
    st.next = 0;
    st.loss_sum = 0;
    st.labelled = 0;
    st.train_s = 0;
    if (epoch < o.epochs) {
      st.epoch = epoch + 1;
      checkpoint();
      st.epoch = epoch;
    }
  }
  // The final state too: it holds the final parameters, and resuming a
  // finished run is a no-op.
  st.epoch = o.epochs + 1;
  checkpoint();
  if (!o.quiet && st.best_epoch > 0)
    fmt::print("best {} {:.3f} at epoch {}; model: {}; metrics: {}\n", task->best_name(),
               st.best_dev, st.best_epoch, model_path, metrics_path);
  return 0;
}

int run_eval(const EvalOptions& o) {
  ModelConfig device;
  device.device = o.device;
  device.threads = o.threads;
  Model model = Model::load(o.model, device);
  if (model.arity() == 2) {  // a pair model: a SICK split
    SickSplit split = read_sick_split(o.data);
    const auto pairs = sick_examples(split, model.vocab(), false);
    const RelatednessScores sc = score_pairs(model, pairs, split.score);
    nlohmann::json j;
    j["pearson"] = sc.pearson;
    j["spearman"] = sc.spearman;
    j["mse"] = sc.mse;
    j["pairs"] = sc.pairs;
    fmt::print("{}\n", j.dump());
    return 0;
  }
  if (model.config().head.loss != HeadLoss::Softmax)
    fail("{}: copse eval scores classifiers; this model's head is squared error", o.model);
  auto trees = read_ptb_file(o.data, model.config().head.width);
  prepare_inputs(model.cell_name(), trees, &model.vocab(), false);
  std::vector<const scheduler::Graph*> g;
  for (const auto& t : trees) g.push_back(&t.graph);
  const models::EvalCounts c = model.evaluate(g, 256).counts;
  nlohmann::json j;
  j["fine"] = c.fine();
  j["binary"] = c.binary();
  j["trees"] = c.trees;
  j["binary_trees"] = c.binary_trees;
  fmt::print("{}\n", j.dump());
  return 0;
}

int run_synth(const SynthOptions& o) {
  if (o.out.empty()) fail("--out: a directory is needed");
  if (o.train <= 0 || o.dev < 0 || o.test < 0)
    fail("--train must be positive and --dev, --test >= 0 (got {}, {}, {})", o.train, o.dev,
         o.test);
  auto s = make_synthetic_splits(o.seed, o.train, o.dev, o.test);
  fs::create_directories(o.out);
  // Each file via a temporary and a rename: a reader never sees half a file.
  for (auto [name, trees] : {std::pair{"train.txt", &s.train}, std::pair{"dev.txt", &s.dev},
                             std::pair{"test.txt", &s.test}}) {
    const std::string path = (fs::path(o.out) / name).string();
    write_ptb_file(path + ".tmp", *trees);
    fs::rename(path + ".tmp", path);
  }
  fmt::print("copse synth: {} / {} / {} trees (seed {}) in {}\n", s.train.size(), s.dev.size(),
             s.test.size(), o.seed, o.out);
  return 0;
}

}  // namespace copse::models
