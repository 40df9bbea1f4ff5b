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
#include "models/train_util.h"
#include "models/embeddings.h"
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

// Identifies a replica's state: its parameters and optimizer state.
std::uint64_t replica_hash(memory::ParamStore<float>& ps) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (int k = -1; k < ps.optimizer_state_slots(); ++k) {
    std::vector<float> v = ps.get_flat_host(k);
    h = fnv1a(v.data(), v.size() * sizeof(float), h);
  }
  return h;
}

// The workers whose value differs from worker 0's, as "1, 3".
std::string differing(const std::vector<std::uint64_t>& v) {
  std::string out;
  for (size_t r = 1; r < v.size(); ++r)
    if (v[r] != v[0]) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

// Root accuracy over `batches`, each worker evaluating every W-th batch.
EvalCounts evaluate_split(Transport& tr, std::vector<Worker>& workers,
                          const std::vector<GraphBatch>& batches) {
  const auto& local = tr.local_workers();
  std::vector<std::vector<double>> part(local.size(), std::vector<double>(6, 0.0));
  tr.run_local([&](int k) {
    EvalCounts c;
    for (size_t b = local[k]; b < batches.size(); b += tr.workers())
      workers[k].model->evaluate_batch(batches[b], c);
    part[k] = {double(c.trees),          double(c.fine_correct), double(c.binary_trees),
               double(c.binary_correct), c.loss,                 double(c.vertices)};
  });
  auto s = tr.sum(part, "evaluation");
  EvalCounts c;
  c.trees = std::llround(s[0]);
  c.fine_correct = std::llround(s[1]);
  c.binary_trees = std::llround(s[2]);
  c.binary_correct = std::llround(s[3]);
  c.loss = s[4];
  c.vertices = std::llround(s[5]);
  return c;
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
  if (o.staleness >= 0 && o.transport != "thread")
    fail("--staleness (SSP) needs --transport thread; with {} the workers are bulk-synchronous",
         o.transport);
  // The transport fixes the number of workers (with mpi: the world size) and
  // which of them this process runs; only the process running worker 0
  // prints and writes files.
  const int workers_given = o.workers;  // 0: not given; resuming: the run's
  std::unique_ptr<Transport> tr = make_transport(
      o.transport, resuming && o.transport != "thread" ? 0 : o.workers, o.threads, o.sync_timeout);
  o.workers = tr->workers();
  if (resuming && workers_given != o.workers)
    fail("{}: the run has {} workers, this job {} MPI ranks; resume it under mpirun -np {} (or "
         "with --transport thread)",
         checkpoint_path, workers_given, o.workers, workers_given);
  const bool root = tr->root();
  if (!root) {
    o.quiet = true;
    o.progress = false;
  }
  const std::vector<int>& local = tr->local_workers();
  TestFault fault = test_fault_from_env(o.transport);
  const bool ssp = o.staleness >= 0 && o.workers > 1;
  if (ssp && o.checkpoint_every > 0)
    fail("--checkpoint-every is not supported with --staleness (SSP checkpoints at epoch ends)");
  if (o.checkpoint_every < 0) fail("--checkpoint-every must be >= 0, got {}", o.checkpoint_every);
  if (o.max_skipped < 0) fail("--max-skipped must be >= 0, got {}", o.max_skipped);
  ops::DeviceOptions device;
  device.device = ops::resolve_device(o.device);
  device.threads = o.threads;
  device.tf32 = o.tf32;
  // The gradient exchanges (thread, mpi, nccl) still read the gradients in
  // host memory; the CUDA backend keeps them on the device.
  if (device.device == "cuda" && o.workers > 1)
    fail("--device cuda trains one worker for now ({} asked for): the gradient exchanges read "
         "host memory; use --device cpu for data parallelism",
         o.workers);
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
  vertex::VertexFunction cell = make_cell(o.model, o.embed, o.hidden);
  Vocab vocab;
  prepare_inputs(o.model, data.train, &vocab, true);
  prepare_inputs(o.model, data.dev, &vocab, false);
  prepare_inputs(o.model, data.test, &vocab, false);

  SentimentConfig cfg;
  cfg.vocab = vocab.size();
  cfg.embed = o.embed;
  cfg.hidden = o.hidden;
  // Workers are replicas: same initial parameters, same optimizer; under BSP
  // they apply the same summed gradient and stay identical.
  // workers[k] is local worker k, worker number local[k] of the run.
  std::vector<Worker> workers(local.size());
  std::vector<float> pretrained;
  int found = -1;
  for (size_t r = 0; r < workers.size(); ++r) {
    auto& w = workers[r];
    ops::DeviceOptions wd = device;
    wd.gpu = r;
    w.backend = ops::make_backend(wd);
    w.model = std::make_unique<SentimentModel<float>>(cell, cfg, *w.backend);
    auto& wps = w.model->params();
    wps.init(o.seed);
    if (!o.embeddings.empty()) {
      if (r == 0) {
        pretrained = wps.get_host(wps.id("embed"));
        found = load_glove(o.embeddings, vocab, o.embed, pretrained.data());
      }
      wps.set_host(wps.id("embed"), pretrained);
    }
    wps.set_optimizer(oc);
    if (!ssp) wps.set_grad_sync(tr->grad_sync(static_cast<int>(r)));
  }
  // Under SSP the master (a model of its own) holds the parameters; the
  // workers hold replicas refreshed from it.
  std::unique_ptr<ops::CpuBackend<float>> master_backend;
  std::unique_ptr<SentimentModel<float>> master;
  std::unique_ptr<memory::SspServer<float>> server;
  if (ssp) {
    master_backend = std::make_unique<ops::CpuBackend<float>>(o.threads);
    master = std::make_unique<SentimentModel<float>>(cell, cfg, *master_backend);
    master->params().init(o.seed);
    if (!pretrained.empty()) master->params().set_host(master->params().id("embed"), pretrained);
    master->params().set_optimizer(oc);
    server = std::make_unique<memory::SspServer<float>>(
        master->params(), o.workers, o.staleness,
        std::chrono::milliseconds(std::llround(o.sync_timeout * 1000)));
    server->set_nonfinite_policy(o.skip_nonfinite, o.max_skipped);
  }
  SentimentModel<float>& model = ssp ? *master : *workers[0].model;
  auto& ps = model.params();

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  TrainState st;
  st.options = options_map(o);
  if (resuming) {
    if (resumed.params.size() != ps.total_elements() ||
        static_cast<int>(resumed.opt_state.size()) != ps.optimizer_state_slots())
      fail("{}: checkpoint does not match the model (parameters or optimizer state differ)",
           checkpoint_path);
    std::vector<SentimentModel<float>*> all;
    for (auto& w : workers) all.push_back(w.model.get());
    if (master) all.push_back(master.get());
    for (auto* wm : all) {
      auto& wps = wm->params();
      wps.set_flat_host(-1, resumed.params);
      for (int k = 0; k < wps.optimizer_state_slots(); ++k) {
        if (resumed.opt_state[k].size() != wps.total_elements())
          fail("{}: optimizer state {} has the wrong size", checkpoint_path, k);
        wps.set_flat_host(k, resumed.opt_state[k]);
      }
      wps.set_step_counts(resumed.step, resumed.optimizer_steps);
    }
    std::istringstream(resumed.rng) >> rng;
    st = std::move(resumed);
    st.params.clear();
    st.opt_state.clear();
  }

  auto dev_batches = make_batches(data.dev, 256);
  auto test_batches = make_batches(data.test, 256);
  long train_vertices = 0;
  for (const auto& t : data.train) train_vertices += t.num_vertices();

  if (!o.quiet) {
    fmt::print("copse train: {} | train {} trees ({} vertices), dev {}, test {} | vocab {}{}\n",
               data.source, data.train.size(), train_vertices, data.dev.size(), data.test.size(),
               vocab.size(), found >= 0 ? fmt::format(" ({} with pretrained vectors)", found) : "");
    fmt::print("{} embed={} hidden={} | {} lr={} l2={} | batch {} | {} epochs | {} worker(s) ({}) x "
               "{} thread(s) | seed {}\n",
               o.model, o.embed, o.hidden, o.optimizer, o.lr, o.l2, o.batch, o.epochs, o.workers,
               ssp ? "thread, SSP" : tr->name(), o.threads, o.seed);
    if (resuming)
      fmt::print("resuming from {} at epoch {}, step {}\n", checkpoint_path, st.epoch, st.step);
    std::fflush(stdout);
  }
  // Every replica starts from the same state; across processes this checks
  // that every rank read the same data and options.
  {
    const std::string opts = nlohmann::json(st.options).dump();
    std::uint64_t setup = fnv1a(opts.data(), opts.size());
    const long sizes[] = {static_cast<long>(data.train.size()), vocab.size(), st.step, st.epoch};
    setup = fnv1a(sizes, sizeof(sizes), setup);
    std::vector<std::uint64_t> h;
    for (auto& w : workers) h.push_back(replica_hash(w.model->params()) ^ setup);
    std::string bad = differing(tr->gather(h, "the start-up check"));
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

  std::vector<const scheduler::Graph*> g;
  for (; st.epoch <= o.epochs; ++st.epoch) {
    const int epoch = st.epoch;
    if (st.order.empty()) {
      st.order.resize(data.train.size());
      std::iota(st.order.begin(), st.order.end(), 0);
      std::shuffle(st.order.begin(), st.order.end(), rng);
    }
    const auto& order = st.order;
    const long epoch_first_step = st.step;
    Progress bar(fmt::format("epoch {}/{}", epoch, o.epochs), static_cast<long>(order.size()),
                 "trees", stderr, false);
    if (!o.progress) bar.finish();
    if (ssp) {
      // Every worker walks its shards of this epoch's batches; one clock per batch.
      double t0 = now_s();
      std::vector<double> losses(o.workers, 0.0);
      std::vector<long> labels(o.workers, 0);
      server->start_epoch();
      const long skipped_before = server->skipped();
      try {
      on_workers(o.workers, o.threads, nullptr, [&](int r) {
        try {
          std::vector<const scheduler::Graph*> gb;
          for (size_t i = 0; i < order.size(); i += o.batch) {
            gb.clear();
            for (size_t j = i; j < std::min(order.size(), i + o.batch); ++j)
              gb.push_back(&data.train[order[j]].graph);
            auto shards = shard_batch(gb, o.workers);
            auto& wm = *workers[r].model;
            wm.params().zero_grads();
            if (!shards[r].empty()) {
              GraphBatch b = scheduler::make_batch(shards[r]);
              double l = wm.train_batch(b, 1.0f / static_cast<float>(gb.size()));
              if (!std::isfinite(l)) {
                server->skip(r, fmt::format("epoch {}, batch at tree {}: non-finite loss", epoch, i));
                server->advance(r, wm.params());
                continue;
              }
              losses[r] += l;
              for (int lab : b.label) labels[r] += lab >= 0;
            }
            maybe_inject_fault(fault, r, server->clock(r) + 1, wm.params());
            server->push(r, wm.params());
            server->advance(r, wm.params());
          }
          server->finish(r);
        } catch (const std::exception& e) {
          server->abort(r, e.what());
          throw;
        }
      });
      } catch (const Error& e) {
        fail("{}; last checkpoint: {}", e.what(),
             fs::exists(checkpoint_path) ? checkpoint_path : std::string("none"));
      }
      const long skipped_now = server->skipped() - skipped_before;
      st.skipped += skipped_now;
      if (root && skipped_now > 0)
        fmt::print(stderr, "copse: warning: epoch {}: {} push{} skipped for non-finite values\n",
                   epoch, skipped_now, skipped_now == 1 ? "" : "es");
      for (int r = 0; r < o.workers; ++r) st.loss_sum += losses[r], st.labelled += labels[r];
      st.step += static_cast<long>((order.size() + o.batch - 1) / o.batch);
      st.next = static_cast<long>(order.size());
      st.train_s += now_s() - t0;
    }
    for (size_t i = st.next; i < order.size(); i += o.batch) {
      double t0 = now_s();
      g.clear();
      for (size_t j = i; j < std::min(order.size(), i + o.batch); ++j)
        g.push_back(&data.train[order[j]].graph);
      if (omit_batch(fault, st.step + 1)) {
        st.next = static_cast<long>(i + g.size());
        continue;
      }
      // Each worker: forward and backward over its shard, gradients scaled
      // by 1/(global batch) so that their sum is the batch's gradient.
      // Per local worker: loss, labelled roots, 1 if its gradient is not finite.
      auto shards = shard_batch(g, o.workers);
      std::vector<std::vector<double>> part(local.size(), std::vector<double>(3, 0.0));
      const float scale = 1.0f / static_cast<float>(g.size());
      tr->run_local([&](int k) {
        auto& wps = workers[k].model->params();
        wps.zero_grads();
        const auto& shard = shards[local[k]];
        if (shard.empty()) return;
        GraphBatch b = scheduler::make_batch(shard);
        part[k][0] = workers[k].model->train_batch(b, scale);
        for (int l : b.label) part[k][1] += l >= 0;
        // Before the exchange each worker holds its own shard's gradient: the
        // sum is finite iff every worker's norm is.
        part[k][2] = std::isfinite(part[k][0]) && !std::isfinite(wps.grad_norm());
      });
      const std::vector<double> sums = tr->sum(part, "gradient sync (losses)");
      const double loss = sums[0];
      const long batch_labels = std::llround(sums[1]);
      st.next = static_cast<long>(i + g.size());
      auto batch_name = [&] {
        return fmt::format("step {} (epoch {}, batch of trees {}..{} in this epoch's order)",
                           st.step + 1, epoch, i, i + g.size() - 1);
      };
      if (!std::isfinite(loss) || sums[2] > 0) {
        skips.skip(fmt::format("{}: non-finite {}", batch_name(),
                               std::isfinite(loss) ? "gradient" : "loss"));
        continue;
      }
      // The exchange, then the check of what the update would write; every
      // worker takes the step or none does (no worker writes a value that
      // another found non-finite).
      std::vector<std::vector<double>> bad(local.size(), std::vector<double>(1, 0.0));
      std::vector<std::string> bad_name(local.size());
      tr->run_local([&](int k) {
        auto& wps = workers[k].model->params();
        maybe_inject_fault(fault, local[k], st.step + 1, wps);
        bad_name[k] = wps.prepare_step();
        bad[k][0] = bad_name[k].empty() ? 0.0 : 1.0;
      });
      const bool update_bad = tr->sum(bad, "the update check")[0] > 0;
      tr->run_local([&](int k) {
        auto& wps = workers[k].model->params();
        if (update_bad)
          wps.discard_step();
        else
          wps.apply_step();
      });
      if (update_bad) {
        std::string name = "on another worker";
        for (const auto& n : bad_name)
          if (!n.empty()) name = n;
        skips.skip(fmt::format("{}: non-finite parameters after the update ({})", batch_name(),
                               name));
        continue;
      }
      skips.taken();
      ++st.step;
      st.loss_sum += loss;
      st.labelled += batch_labels;
      st.train_s += now_s() - t0;
      bar.update(static_cast<long>(st.next),
                 fmt::format("loss {:.3f}", st.loss_sum / std::max(1L, st.labelled)));
      if (o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0) checkpoint();
    }
    bar.finish();
    skips.end_epoch(epoch);
    // Under BSP every worker evaluates its share of the batches; the replicas
    // must still be identical (a cheap check that the exchange works).
    EvalCounts dev, test;
    if (ssp) {
      dev = evaluate(model, dev_batches);
      test = evaluate(model, test_batches);
    } else {
      dev = evaluate_split(*tr, workers, dev_batches);
      test = evaluate_split(*tr, workers, test_batches);
      std::vector<std::uint64_t> h;
      for (auto& w : workers) h.push_back(replica_hash(w.model->params()));
      std::string bad = differing(tr->gather(h, "the replica check"));
      if (!bad.empty())
        fail("after epoch {}: the replicas of worker(s) {} differ from worker 0's", epoch, bad);
    }
    nlohmann::json m;
    m["epoch"] = epoch;
    m["train_loss"] = st.loss_sum / std::max(1L, st.labelled);
    m["train_trees_per_s"] = data.train.size() / std::max(1e-9, st.train_s);
    m["train_s"] = st.train_s;
    m["dev_fine"] = dev.fine();
    m["dev_binary"] = dev.binary();
    m["test_fine"] = test.fine();
    m["test_binary"] = test.binary();
    m["peak_arena_bytes"] = model.arena().peak_bytes();
    m["skipped_batches"] = st.skipped;
    m["workers"] = o.workers;
    m["steps"] = st.step - epoch_first_step;
    if (server) {
      m["staleness"] = o.staleness;
      m["ssp_waits"] = server->waits();
      m["ssp_max_lead"] = server->max_lead();
      m["sync_bytes"] = server->bytes();
      nlohmann::json h;
      for (auto [lead, n] : server->staleness_histogram()) h[std::to_string(lead)] = n;
      m["ssp_lead_histogram"] = h;
    } else {
      SyncStats sync = tr->take_stats();
      m["transport"] = tr->name();
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
    if (dev.fine() > st.best_dev) {
      st.best_dev = dev.fine();
      st.best_epoch = epoch;
      if (root)
        save_model(model_path, model, vocab,
                 {{"copse.epoch", std::to_string(epoch)},
                  {"copse.seed", std::to_string(o.seed)},
                  {"copse.model", o.model}});
    }
    if (!o.quiet) {
      fmt::print("epoch {:>3}  loss {:.4f}  {:>7.0f} trees/s  dev fine {:.3f} bin {:.3f}  test fine "
                 "{:.3f} bin {:.3f}{}\n",
                 epoch, m["train_loss"].get<double>(), m["train_trees_per_s"].get<double>(),
                 dev.fine(), dev.binary(), test.fine(), test.binary(),
                 st.best_epoch == epoch ? "  *" : "");
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
    fmt::print("best dev fine {:.3f} at epoch {}; model: {}; metrics: {}\n", st.best_dev,
               st.best_epoch, model_path, metrics_path);
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
  std::string cell_name = meta.count("copse.model") ? meta.at("copse.model") : "tree-lstm";
  auto trees = read_ptb_file(o.data, cfg.classes);
  prepare_inputs(cell_name, trees, &vocab, false);
  ops::DeviceOptions dev;
  dev.device = o.device;
  dev.threads = o.threads;
  auto backend = ops::make_backend(dev);
  SentimentModel<float> model(make_cell(cell_name, cfg.embed, cfg.hidden), cfg, *backend);
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
