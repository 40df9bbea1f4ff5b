// copse::Trainer (models/trainer.h): the bulk-synchronous step over the
// transport's workers, and the stale-synchronous walk through the thread
// parameter server.
#include "models/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <numeric>
#include <thread>

#include <fmt/format.h>
#include <omp.h>

#include "common/error.h"
#include "memory/ssp_server.h"
#ifdef COPSE_HAVE_MPI
#include "memory/mpi_ssp.h"
#endif
#include "models/checkpoint.h"
#include "models/train_util.h"
#include "models/transport.h"

namespace copse {

using models::FaultPhase;

memory::OptimizerConfig optimizer(const std::string& kind, float lr, float l2, float clip_norm) {
  memory::OptimizerConfig oc;
  oc.kind = memory::parse_optimizer_kind(kind);
  oc.lr = lr;
  oc.l2 = l2;
  oc.clip_norm = clip_norm;
  oc.validate();
  return oc;
}

namespace {

// Identifies a replica's state: its parameters and optimizer state.
std::uint64_t replica_hash(memory::ParamStore<float>& ps) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (int k = -1; k < ps.optimizer_state_slots(); ++k) {
    std::vector<float> v = ps.get_flat_host(k);
    h = models::fnv1a(v.data(), v.size() * sizeof(float), h);
  }
  return h;
}

// Shares items of the given sizes among `workers` so each gets a similar
// total (largest first to the least loaded); shards keep the items' order.
std::vector<std::vector<int>> shard_sizes(const std::vector<int>& size, int workers) {
  std::vector<int> idx(size.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return size[a] > size[b]; });
  std::vector<long> load(workers, 0);
  std::vector<int> owner(size.size());
  for (int i : idx) {
    const int w = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = w;
    load[w] += size[i];
  }
  std::vector<std::vector<int>> shards(workers);
  for (size_t i = 0; i < size.size(); ++i) shards[owner[i]].push_back(static_cast<int>(i));
  return shards;
}

}  // namespace

struct Trainer::Impl {
  Model& model;
  TrainerOptions o;
  std::unique_ptr<models::Transport> tr;
  std::vector<Model*> workers;               // local worker k (worker number local[k])
  std::vector<std::unique_ptr<Model>> owned;  // the replicas
  // SSP: the thread server, or the MPI one (one worker and shard per rank).
  std::unique_ptr<memory::SspEndpoint<float>> server;
  bool mpi_ssp = false;
  models::TestFault fault;
  models::Straggler straggle;  // COPSE_TEST_STRAGGLE (with test_faults)
  bool is_ssp = false;
  bool failed = false;  // an SSP run threw: no collective may follow
  long ssp_reported_waits = 0;

  Impl(Model& m, const TrainerOptions& opts) : model(m), o(opts) {}

  // The BSP step over a batch whose item i has `sizes[i]` vertices; make(k,
  // items) builds local worker k's batch from its items.
  template <typename MakeBatch>
  StepResult bsp_step(const std::vector<int>& sizes, const MakeBatch& make) {
    const auto& local = tr->local_workers();
    const long step_no = model.params().step_count() + 1;
    auto shards = shard_sizes(sizes, tr->workers());
    // Per local worker: loss, labelled vertices, 1 if its gradient is not
    // finite, its gradient norm.
    std::vector<std::vector<double>> part(local.size(), std::vector<double>(4, 0.0));
    const float scale = 1.0f / static_cast<float>(sizes.size());
    tr->run_local([&](int k) {
      auto& wps = workers[k]->params();
      wps.zero_grads();
      const auto& shard = shards[local[k]];
      if (shard.empty()) return;
      Batch b = make(shard);
      const double t0 = models::now_s();
      part[k][0] = workers[k]->train(b, scale);
      part[k][1] = static_cast<double>(workers[k]->labelled(b));
      straggle.delay(local[k], step_no, tr->workers(), models::now_s() - t0);
      maybe_inject_fault(fault, local[k], step_no, wps, FaultPhase::Gradient);
      // Before the exchange each worker holds its own shard's gradient: the
      // sum is finite iff every worker's norm is, and no entry of the sum
      // exceeds the sum of the norms (the bound the update check takes).
      const double norm = wps.grad_norm();
      part[k][2] = std::isfinite(part[k][0]) && !std::isfinite(norm);
      part[k][3] = std::isfinite(norm) ? norm : 0.0;
    });
    const std::vector<double> sums = tr->sum(part, "gradient sync (losses)");
    StepResult r;
    r.loss = sums[0];
    r.labelled = std::llround(sums[1]);
    if (!std::isfinite(r.loss) || sums[2] > 0) {
      r.problem = std::isfinite(r.loss) ? "non-finite gradient" : "non-finite loss";
      return r;
    }
    // The exchange, then the check of what the update would write; every
    // worker takes the step or none does.
    std::vector<std::vector<double>> bad(local.size(), std::vector<double>(1, 0.0));
    std::vector<std::string> bad_name(local.size());
    const double grad_bound = sums[3] * 1.001;  // rounding in the exchange's sums
    tr->run_local([&](int k) {
      auto& wps = workers[k]->params();
      maybe_inject_fault(fault, local[k], step_no, wps, FaultPhase::Exchange);
      bad_name[k] = wps.prepare_step(grad_bound);
      bad[k][0] = bad_name[k].empty() ? 0.0 : 1.0;
    });
    const bool update_bad = tr->sum(bad, "the update check")[0] > 0;
    tr->run_local([&](int k) {
      auto& wps = workers[k]->params();
      if (update_bad)
        wps.discard_step();
      else
        wps.apply_step();
    });
    if (update_bad) {
      std::string name = "on another worker";
      for (const auto& n : bad_name)
        if (!n.empty()) name = n;
      r.problem = fmt::format("non-finite parameters after the update ({})", name);
      return r;
    }
    r.taken = true;
    return r;
  }
};

Trainer::Trainer(Model& model, const TrainerOptions& opts) : impl_(std::make_unique<Impl>(model, opts)) {
  auto& I = *impl_;
  auto& o = I.o;
  if (o.staleness < -1) fail("staleness must be >= 0 (or -1 for BSP), got {}", o.staleness);
  if (o.staleness >= 0 && o.transport == "nccl")
    fail("staleness (SSP) runs over the thread or mpi transport; nccl is bulk-synchronous");
  if (o.threads <= 0) fail("threads must be positive, got {}", o.threads);
  o.optimizer.validate();
  I.tr = models::make_transport(o.transport, o.workers, o.threads, o.sync_timeout);
  o.workers = I.tr->workers();
  if (!model.backend().host_accessible() && o.workers > 1)
    fail("the {} backend trains one worker for now ({} asked for): the gradient exchanges read "
         "host memory; use the cpu backend for data parallelism",
         model.backend().name(), o.workers);
  if (o.test_faults) {
    I.fault = models::test_fault_from_env(o.transport);
    I.straggle = models::straggler_from_env();
  }
  I.mpi_ssp = o.staleness >= 0 && o.transport == "mpi" && o.workers > 1;
  I.is_ssp = o.staleness >= 0 && o.workers > 1;
  model.params().set_optimizer(o.optimizer);
  const auto& local = I.tr->local_workers();
  // Under BSP worker 0 (or this rank's worker) is the model itself; under
  // SSP every worker is a replica and the model is the server's store.
  for (size_t k = 0; k < local.size(); ++k) {
    if (k == 0 && !I.is_ssp) {
      I.workers.push_back(&model);
    } else {
      I.owned.push_back(model.replica(static_cast<int>(k)));
      I.workers.push_back(I.owned.back().get());
    }
    if (!I.is_ssp) I.workers.back()->params().set_grad_sync(I.tr->grad_sync(static_cast<int>(k)));
  }
  const auto timeout = std::chrono::milliseconds(std::llround(o.sync_timeout * 1000));
  if (I.mpi_ssp) {
#ifdef COPSE_HAVE_MPI
    I.server = std::make_unique<memory::MpiSspServer<float>>(model.params(), o.staleness, timeout);
#endif
  } else if (I.is_ssp) {
    I.server = std::make_unique<memory::SspServer<float>>(model.params(), o.workers, o.staleness,
                                                          timeout);
  }
  if (I.server) I.server->set_nonfinite_policy(o.skip_nonfinite, o.max_skipped);
}

Trainer::~Trainer() {
  for (Model* w : impl_->workers) w->params().set_grad_sync(nullptr);
#ifdef COPSE_HAVE_MPI
  // A failed run leaves the job to the caller's MPI_Abort (no collective).
  if (impl_->mpi_ssp && !std::uncaught_exceptions() && !impl_->failed)
    static_cast<memory::MpiSspServer<float>&>(*impl_->server).close();
#endif
}

int Trainer::workers() const { return impl_->tr->workers(); }
bool Trainer::root() const { return impl_->tr->root(); }
bool Trainer::ssp() const { return impl_->is_ssp; }
const TrainerOptions& Trainer::options() const { return impl_->o; }

StepResult Trainer::step(const std::vector<const Graph*>& batch) {
  if (batch.empty()) fail("step: an empty batch");
  if (impl_->is_ssp) {
    AsyncResult a = run_async({batch});
    StepResult r;
    r.loss = a.loss;
    r.labelled = a.labelled;
    r.taken = a.skipped == 0;
    if (!r.taken) r.problem = "non-finite values (the push was skipped)";
    return r;
  }
  std::vector<int> sizes;
  for (const Graph* g : batch) sizes.push_back(g->num_vertices());
  return impl_->bsp_step(sizes, [&](const std::vector<int>& items) {
    std::vector<const Graph*> part;
    for (int i : items) part.push_back(batch[i]);
    return batch_of(part);
  });
}

StepResult Trainer::step(const std::vector<const Example*>& batch) {
  if (batch.empty()) fail("step: an empty batch");
  if (impl_->is_ssp)
    fail("step: SSP training takes graphs (the thread parameter server reads no dense rows)");
  std::vector<int> sizes;
  for (const Example* e : batch) sizes.push_back(e->num_vertices());
  return impl_->bsp_step(sizes, [&](const std::vector<int>& items) {
    std::vector<const Example*> part;
    for (int i : items) part.push_back(batch[i]);
    return impl_->model.batch(part);
  });
}

AsyncResult Trainer::run_async(const std::vector<std::vector<const Graph*>>& batches,
                               const std::string& tag) {
  auto& I = *impl_;
  AsyncResult res;
  if (!I.is_ssp) {
    for (const auto& b : batches) {
      StepResult r = step(b);
      if (!r.taken) {
        ++res.skipped;
        continue;
      }
      res.loss += r.loss, res.labelled += r.labelled;
    }
    return res;
  }
  const int W = I.o.workers;
  std::vector<double> losses(W, 0.0);
  std::vector<long> labels(W, 0);
  auto& server = *I.server;
#ifdef COPSE_HAVE_MPI
  if (I.mpi_ssp) static_cast<memory::MpiSspServer<float>&>(server).reload(I.model.params());
#endif
  server.start_epoch();
  const long skipped_before = server.stats().skipped;
  const std::string where = tag.empty() ? "" : tag + ", ";
  // Each worker's share of every batch; the replicas start the call from the
  // whole state (the server's master between calls), then each clock pulls
  // the dense parameters and only the embedding rows its next share reads.
  std::vector<std::vector<std::vector<int>>> shares;
  for (const auto& gb : batches) {
    std::vector<int> sizes;
    for (const Graph* g : gb) sizes.push_back(g->num_vertices());
    shares.push_back(shard_sizes(sizes, W));
  }
  auto& master = I.model.params();
  const int table = master.find("embed");
  const bool pull_rows = table >= 0 && master.spec(table).sparse_rows;
  const std::vector<float> start = master.get_flat_host(-1);
  // The local workers: every worker with threads, this rank's under MPI.
  const auto& local = I.tr->local_workers();
  const int nlocal = I.mpi_ssp ? 1 : W;
  auto walk = [&](int lk) {
    const int r = I.mpi_ssp ? local.at(0) : lk;
    Model& wm = *I.workers[lk];
    try {
      wm.params().set_flat_host(-1, start);
      for (size_t i = 0; i < batches.size(); ++i) {
        const auto& gb = batches[i];
        const auto& shards = shares[i];
        wm.params().zero_grads();
        if (pull_rows) {  // after the last batch: none (the next call starts from the master)
          std::vector<int> words;
          if (i + 1 < batches.size())
            for (int k : shares[i + 1][r])
              for (int id : batches[i + 1][k]->input)
                if (id >= 0) words.push_back(id);
          server.read_rows(r, table, std::move(words));
        }
        if (!shards[r].empty()) {
          std::vector<const Graph*> part;
          for (int k : shards[r]) part.push_back(gb[k]);
          Batch b = batch_of(part);
          const double t0 = models::now_s();
          const double l = wm.core().train_batch(b.graphs, 1.0f / static_cast<float>(gb.size()));
          I.straggle.delay(r, server.clock(r) + 1, W, models::now_s() - t0);
          if (!std::isfinite(l)) {
            server.skip(r, fmt::format("{}batch {}: non-finite loss", where, i));
            server.advance(r, wm.params());
            continue;
          }
          losses[r] += l;
          for (int lab : b.graphs.label) labels[r] += lab >= 0;
        }
        for (auto phase : {FaultPhase::Gradient, FaultPhase::Exchange})
          maybe_inject_fault(I.fault, r, server.clock(r) + 1, wm.params(), phase);
        server.push(r, wm.params());
        server.advance(r, wm.params());
      }
      server.finish(r);
    } catch (const std::exception& e) {
      I.failed = true;
      server.abort(r, e.what());
      throw;
    }
  };
  if (I.mpi_ssp) {
    walk(0);
    // Every rank's shard into every rank's model (a collective); the loss
    // and the label counts summed over the ranks.
    server.collect(master);
    const int me = local.at(0);
    std::vector<double> sums = I.tr->sum({{losses[me], double(labels[me]),
                                           double(server.stats().skipped - skipped_before)}},
                                         "the SSP epoch's losses");
    res.loss = sums[0];
    res.labelled = std::llround(sums[1]);
    res.skipped = std::llround(sums[2]);
    return res;
  }
  models::on_workers(nlocal, I.o.threads, nullptr, walk);
  res.skipped = server.stats().skipped - skipped_before;
  for (int r = 0; r < W; ++r) res.loss += losses[r], res.labelled += labels[r];
  return res;
}

Evaluation Trainer::evaluate(const std::vector<Batch>& batches) {
  auto& I = *impl_;
  Evaluation total;
  if (I.is_ssp && !I.mpi_ssp) {  // threads: the server's store, in this thread
    for (const auto& b : batches) I.model.evaluate(b, total);
    return total;
  }
  // Each worker evaluates every W-th batch (on its replica; under MPI SSP on
  // its rank's copy of the collected model); the sums are the same bits on
  // every rank.
  const auto& local = I.tr->local_workers();
  std::vector<std::vector<double>> part(local.size(), std::vector<double>(8, 0.0));
  I.tr->run_local([&](int k) {
    Evaluation e;
    Model& m = I.mpi_ssp ? I.model : *I.workers[k];
    for (size_t b = local[k]; b < batches.size(); b += I.tr->workers()) m.evaluate(batches[b], e);
    const auto& c = e.counts;
    part[k] = {double(c.trees),          double(c.fine_correct), double(c.binary_trees),
               double(c.binary_correct), c.loss,                 double(c.vertices),
               e.squared.sum,            double(e.squared.entries)};
  });
  auto s = I.tr->sum(part, "evaluation");
  auto& c = total.counts;
  c.trees = std::llround(s[0]);
  c.fine_correct = std::llround(s[1]);
  c.binary_trees = std::llround(s[2]);
  c.binary_correct = std::llround(s[3]);
  c.loss = s[4];
  c.vertices = std::llround(s[5]);
  total.squared.sum = s[6];
  total.squared.entries = std::llround(s[7]);
  return total;
}

Evaluation Trainer::evaluate(const std::vector<const Graph*>& graphs, int batch) {
  if (batch <= 0) fail("evaluate: batch must be positive, got {}", batch);
  std::vector<Batch> bs;
  for (size_t i = 0; i < graphs.size(); i += batch)
    bs.push_back(batch_of(std::vector<const Graph*>(
        graphs.begin() + i, graphs.begin() + std::min(graphs.size(), i + batch))));
  return evaluate(bs);
}

Evaluation Trainer::evaluate(const std::vector<const Example*>& examples, int batch) {
  if (batch <= 0) fail("evaluate: batch must be positive, got {}", batch);
  std::vector<Batch> bs;
  for (size_t i = 0; i < examples.size(); i += batch)
    bs.push_back(impl_->model.batch(std::vector<const Example*>(
        examples.begin() + i, examples.begin() + std::min(examples.size(), i + batch))));
  return evaluate(bs);
}

void Trainer::sync_replicas() {
  for (auto& r : impl_->owned) impl_->model.copy_state_to(*r);
}

std::vector<int> Trainer::diverged_workers(std::uint64_t salt) {
  std::vector<std::uint64_t> h;
  for (Model* w : impl_->workers) h.push_back(replica_hash(w->params()) ^ salt);
  const auto all = impl_->tr->gather(h, "the replica check");
  std::vector<int> out;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) out.push_back(static_cast<int>(r));
  return out;
}

SyncReport Trainer::take_sync_report() {
  auto& I = *impl_;
  SyncReport s;
  if (I.server) {
    s.transport = I.mpi_ssp ? "ssp-mpi" : "ssp";
    s.staleness = I.o.staleness;
    memory::SspStats st = I.server->stats();
    if (I.mpi_ssp) {
      // Each rank measured its own worker's reads and pushes: one sum over
      // the ranks ([waits W][wait_s W][pushed, pulled, violations]
      // [lead 0..S, beyond][c - oldest 0..S, beyond]).
      const int W = I.o.workers, S = I.o.staleness;
      std::vector<double> v;
      for (long x : st.waits) v.push_back(double(x));
      for (double x : st.wait_s) v.push_back(x);
      v.insert(v.end(), {double(st.bytes_pushed), double(st.bytes_pulled), double(st.violations)});
      const std::size_t at = v.size();
      v.resize(at + 2 * (S + 2), 0.0);
      for (auto [k, n] : st.lead_histogram) v[at + std::min<long>(std::max(k, 0L), S + 1)] += n;
      for (auto [k, n] : st.oldest_histogram)
        v[at + S + 2 + std::min<long>(std::max(k, 0L), S + 1)] += n;
      v = I.tr->sum({v}, "the SSP statistics");
      for (int r = 0; r < W; ++r) st.waits[r] = std::llround(v[r]), st.wait_s[r] = v[W + r];
      st.bytes_pushed = std::llround(v[2 * W]);
      st.bytes_pulled = std::llround(v[2 * W + 1]);
      st.violations = std::llround(v[2 * W + 2]);
      st.lead_histogram.clear(), st.oldest_histogram.clear();
      st.max_lead = 0;
      for (int k = 0; k <= S + 1; ++k) {
        if (const long n = std::llround(v[at + k])) st.lead_histogram[k] = n, st.max_lead = k;
        if (const long n = std::llround(v[at + S + 2 + k])) st.oldest_histogram[k] = n;
      }
    }
    s.ssp_waits = std::accumulate(st.waits.begin(), st.waits.end(), 0L);
    s.ssp_max_lead = st.max_lead;
    s.bytes = st.bytes_pushed;
    s.lead_histogram = st.lead_histogram;
    s.staleness_histogram = st.oldest_histogram;
    s.violations = st.violations;
    s.clocks = st.clocks;
    s.pulled_bytes = st.bytes_pulled;
    s.worker_wait_s = st.wait_s;
    return s;
  }
  models::SyncStats st = I.tr->take_stats();
  s.transport = I.tr->name();
  s.wait_s = st.wait_s;
  s.bytes = st.bytes;
  s.sent_bytes = st.sent_bytes;
  s.exchange_s = st.exchange_s;
  return s;
}

}  // namespace copse
