// The transports of `copse train` (see transport.h): threads in one process,
// or one MPI rank per worker (gradients over MPI or NCCL).
#include "models/transport.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>

#include "common/error.h"
#include "memory/grad_sync_registry.h"
#include "memory/thread_sync.h"
#include "models/train_util.h"
#ifdef COPSE_HAVE_MPI
#include "memory/mpi_sync.h"
#endif

namespace copse::models {

namespace {

std::chrono::milliseconds to_ms(double s) {
  return std::chrono::milliseconds(static_cast<long>(std::llround(s * 1000.0)));
}

class ThreadTransport : public Transport {
 public:
  ThreadTransport(int workers, int threads, double timeout_s) : threads_(threads) {
    workers_ = workers;
    for (int r = 0; r < workers; ++r) local_.push_back(r);
    if (workers > 1)
      sync_ = std::make_unique<memory::ThreadGradSync<float>>(workers, to_ms(timeout_s));
  }
  std::string name() const override { return "thread"; }
  void run_local(const std::function<void(int)>& fn) override {
    on_workers(workers_, threads_, sync_.get(), fn);
  }
  memory::GradSync<float>* grad_sync(int i) override {
    return sync_ ? sync_->endpoint(i) : nullptr;
  }
  std::vector<double> sum(const std::vector<std::vector<double>>& per_local,
                          const std::string&) override {
    std::vector<double> out(per_local.at(0).size(), 0.0);
    for (const auto& v : per_local)
      for (size_t j = 0; j < out.size(); ++j) out[j] += v.at(j);
    return out;
  }
  std::vector<std::uint64_t> gather(const std::vector<std::uint64_t>& per_local,
                                    const std::string&) override {
    return per_local;
  }
  SyncStats take_stats() override {
    SyncStats s;
    if (!sync_) return s;
    for (int r = 0; r < workers_; ++r) {
      s.wait_s += sync_->stats(r).wait_s;
      s.bytes += sync_->stats(r).bytes;
    }
    s.wait_s /= workers_;
    sync_->reset_stats();
    return s;
  }

 private:
  int threads_;
  std::unique_ptr<memory::ThreadGradSync<float>> sync_;
};

#ifdef COPSE_HAVE_MPI
class MpiTransport : public Transport {
 public:
  MpiTransport(const std::string& kind, int workers, double timeout_s)
      : kind_(kind), mpi_(to_ms(timeout_s)) {
    workers_ = mpi_.size();
    local_ = {mpi_.rank()};
    if (workers > 0 && workers != workers_)
      fail(
          "--workers {} disagrees with the {} MPI rank(s): with --transport {} every rank is one "
          "worker (leave --workers out, or match mpirun -np)",
          workers, workers_, kind);
    if (kind == "nccl") {
      const memory::MpiGradSyncFactory* nccl = memory::find_mpi_grad_sync("nccl");
      if (!nccl)
        fail(
            "--transport nccl: this copse was built without NCCL (it needs the CUDA toolkit, "
            "NCCL and MPI at build time; use --transport mpi)");
      nccl_ = (*nccl)(mpi_);
    }
  }
  std::string name() const override { return kind_; }
  void run_local(const std::function<void(int)>& fn) override { fn(0); }
  memory::GradSync<float>* grad_sync(int) override {
    return nccl_ ? nccl_.get() : static_cast<memory::GradSync<float>*>(&mpi_);
  }
  std::vector<double> sum(const std::vector<std::vector<double>>& per_local,
                          const std::string& what) override {
    return mpi_.sum(per_local.at(0), what);
  }
  std::vector<std::uint64_t> gather(const std::vector<std::uint64_t>& per_local,
                                    const std::string& what) override {
    return mpi_.allgather(per_local.at(0), what);
  }
  SyncStats take_stats() override {
    memory::MpiSyncStats m = mpi_.stats();
    mpi_.reset_stats();
    auto all =
        mpi_.sum({m.wait_s, double(m.bytes), double(m.sent_bytes), m.exchange_s}, "the statistics");
    SyncStats s;
    s.wait_s = all[0] / workers_;
    s.exchange_s = all[3] / workers_;
    s.bytes = std::llround(all[1]);
    s.sent_bytes = std::llround(all[2]);
    return s;
  }

 private:
  std::string kind_;
  memory::MpiGradSync<float> mpi_;
  std::unique_ptr<memory::GradSync<float>> nccl_;
};
#endif

}  // namespace

std::unique_ptr<Transport> make_transport(const std::string& kind, int workers, int threads,
                                          double timeout_s) {
  if (!(timeout_s > 0) || !std::isfinite(timeout_s))
    fail("--sync-timeout must be a positive number of seconds, got {}", timeout_s);
  if (kind == "thread") {
    // Under mpirun every rank would train alone and write the same files.
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
      const char* n = std::getenv(var);
      if (n && std::atoi(n) > 1)
        fail("this is one of {} MPI ranks ({}), but --transport is thread: pass --transport mpi", n,
             var);
    }
    if (workers == 0) workers = 1;
    if (workers < 1 || workers > 64) fail("--workers must be in [1, 64], got {}", workers);
    return std::make_unique<ThreadTransport>(workers, threads, timeout_s);
  }
  if (kind == "mpi" || kind == "nccl") {
#ifdef COPSE_HAVE_MPI
    if (workers < 0) fail("--workers must be positive, got {}", workers);
    return std::make_unique<MpiTransport>(kind, workers, timeout_s);
#else
    fail("--transport {}: this copse was built without MPI (install libopenmpi-dev and rebuild)",
         kind);
#endif
  }
  fail("--transport must be thread, mpi or nccl, got '{}'", kind);
}

TestFault test_fault_from_env(const std::string& transport) {
  TestFault f;
  const char* env = std::getenv("COPSE_TEST_FAULT");
  if (!env || !*env) return f;
  std::vector<std::string> parts;
  std::istringstream in(env);
  for (std::string part; std::getline(in, part, ':');) parts.push_back(part);
  char* end = nullptr;
  if (parts.size() == 3) {
    f.worker = static_cast<int>(std::strtol(parts[1].c_str(), &end, 10));
    if (*end == 0 && !parts[1].empty()) f.step = std::strtol(parts[2].c_str(), &end, 10);
  }
  if (parts.size() != 3 || *end != 0 || parts[2].empty() || f.worker < 0 || f.step < 1)
    fail("COPSE_TEST_FAULT='{}': expected KIND:WORKER:STEP", env);
  const std::string& kind = parts[0];
  if (kind == "kill")
    f.kind = TestFault::Kill;
  else if (kind == "hang")
    f.kind = TestFault::Hang;
  else if (kind == "perturb")
    f.kind = TestFault::Perturb;
  else if (kind == "overflow")
    f.kind = TestFault::Overflow;
  else if (kind == "overflow-always")
    f.kind = TestFault::OverflowAlways;
  else if (kind == "omit")
    f.kind = TestFault::Omit;
  else
    fail("COPSE_TEST_FAULT='{}': KIND must be kill, hang, perturb, overflow, overflow-always or omit", env);
  if (transport == "thread" && (f.kind == TestFault::Hang || f.kind == TestFault::Perturb))
    fail("COPSE_TEST_FAULT={}: needs --transport mpi or nccl", kind);
  return f;
}

Straggler straggler_from_env() {
  Straggler s;
  const char* env = std::getenv("COPSE_TEST_STRAGGLE");
  if (!env || !*env) return s;
  const std::string v = env;
  const auto colon = v.find(':');
  char* end = nullptr;
  bool ok = colon != std::string::npos && colon > 0;
  if (ok) {
    const std::string who = v.substr(0, colon), factor = v.substr(colon + 1);
    s.any = who == "any";
    if (!s.any) {
      s.worker = static_cast<int>(std::strtol(who.c_str(), &end, 10));
      ok = *end == 0 && s.worker >= 0;
    }
    s.factor = std::strtod(factor.c_str(), &end);
    ok = ok && !factor.empty() && *end == 0 && std::isfinite(s.factor) && s.factor >= 1;
  }
  if (!ok) fail("COPSE_TEST_STRAGGLE='{}': expected WHO:FACTOR (WHO a worker or 'any', FACTOR >= 1)", v);
  return s;
}

bool Straggler::slows(int w, long step, int workers) const {
  if (factor <= 1) return false;
  if (!any) return w == worker;  // worker -1: none
  // splitmix64 of the step: every rank draws the same worker.
  std::uint64_t z = static_cast<std::uint64_t>(step) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<int>(z % static_cast<std::uint64_t>(workers)) == w;
}

void Straggler::delay(int w, long step, int workers, double compute_s) const {
  if (!slows(w, step, workers) || compute_s <= 0) return;
  std::this_thread::sleep_for(std::chrono::duration<double>((factor - 1) * compute_s));
}

bool omit_batch(TestFault& f, long step) {
  if (f.kind != TestFault::Omit || f.step != step || f.fired) return false;
  f.fired = true;
  std::fprintf(stderr, "copse: test fault: step %ld: batch omitted\n", step);
  return true;
}

void maybe_inject_fault(TestFault& f, int worker, long step, memory::ParamStore<float>& ps,
                        FaultPhase phase) {
  if (f.kind == TestFault::None || f.kind == TestFault::Omit || f.worker != worker || f.fired)
    return;
  const bool overflow = f.kind == TestFault::Overflow || f.kind == TestFault::OverflowAlways;
  if (overflow != (phase == FaultPhase::Gradient)) return;
  if (f.kind == TestFault::OverflowAlways ? step < f.step : step != f.step) return;
  f.fired = f.kind == TestFault::Overflow;  // the skipped step's number comes again
  std::fprintf(stderr, "copse: test fault: worker %d, step %ld: %s\n", worker, step,
               f.kind == TestFault::Kill       ? "kill"
               : f.kind == TestFault::Hang     ? "hang"
               : f.kind == TestFault::Perturb  ? "perturb"
                                               : "overflow");
  std::fflush(stderr);
  switch (f.kind) {
    case TestFault::Kill:
      std::raise(SIGKILL);
      break;
    case TestFault::Hang:
      // Stops answering; ends by itself after a while so that no test leaves
      // a stray process behind.
      std::this_thread::sleep_for(std::chrono::seconds(300));
      std::raise(SIGKILL);
      break;
    case TestFault::Perturb:
      ps.params_flat()[0] += 1e-3f;
      ps.note_external_write();
      break;
    case TestFault::Overflow:
    case TestFault::OverflowAlways: {
      const float huge = 3e38f;  // finite: the gradient checks pass
      ps.backend().upload(ps.grads_flat(), &huge, sizeof huge);
      break;
    }
    case TestFault::None:
    case TestFault::Omit:
      break;
  }
}

}  // namespace copse::models
