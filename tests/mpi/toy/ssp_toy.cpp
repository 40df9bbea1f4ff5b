// A toy model on a ParamStore, one worker per MPI rank, trained for
// tests/mpi/test_mpi_ssp.cpp:
//   --mode ssp  through MpiSspServer (every rank a worker and a shard);
//   --mode ref  the bulk-synchronous reference in one process: at each clock
//               the sum of every worker's gradient, one SGD step (no MPI
//               traffic; run it as one rank).
// Worker w's gradient at clock k (1-based):
//   own[4w+j]  = own[4w+j] - (w + j + 1)   (only w writes its slice)
//   ledger[w]  = -1 / lr                   (SGD: ledger[w] counts w's pushes)
//   bias[j]    = 0.01 (w + 1) k - 0.02 j
//   embed rows (7w + 3k) % R, (7w + 3k + 1) % R, 5k % R: 0.1 sin(w + k + r + col)
// After each read the ledger shows, independently of the server's own
// measurement, how many pushes of every worker the read held: a read after
// clock k must hold k - S of each. Options:
//   --staleness S --clocks N --lr LR --timeout-ms MS --out PREFIX
//   --workers W (ref) --straggle RANK:MS (sleep before every push)
//   --stop RANK:CLOCK (SIGSTOP: the rank, its shard included, stops answering)
//   --die RANK:CLOCK (SIGKILL)
// Writes PREFIX.params (rank 0: the collected parameters, one per line) and
// PREFIX.rankR.json (its statistics). Errors: "copse: error: ...", then
// MPI_Abort.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <mpi.h>

#include "common/error.h"
#include "memory/mpi_ssp.h"
#include "memory/param_store.h"
#include "ops/cpu_backend.h"

using copse::memory::ParamStore;

namespace {

struct Options {
  std::string mode = "ssp", out = "toy";
  int staleness = 0, clocks = 20, workers = 0;
  float lr = 0.5f;
  long timeout_ms = 20000;
  int straggle_rank = -1, straggle_ms = 0;
  int stop_rank = -1, stop_clock = 0, die_rank = -1, die_clock = 0;
};

std::pair<int, int> pair_of(const std::string& s) {
  const auto c = s.find(':');
  if (c == std::string::npos) copse::fail("expected RANK:VALUE, got '{}'", s);
  return {std::stoi(s.substr(0, c)), std::stoi(s.substr(c + 1))};
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) copse::fail("{} needs a value", a);
    const std::string v = argv[++i];
    if (a == "--mode") o.mode = v;
    else if (a == "--out") o.out = v;
    else if (a == "--staleness") o.staleness = std::stoi(v);
    else if (a == "--clocks") o.clocks = std::stoi(v);
    else if (a == "--workers") o.workers = std::stoi(v);
    else if (a == "--lr") o.lr = std::stof(v);
    else if (a == "--timeout-ms") o.timeout_ms = std::stol(v);
    else if (a == "--straggle") std::tie(o.straggle_rank, o.straggle_ms) = pair_of(v);
    else if (a == "--stop") std::tie(o.stop_rank, o.stop_clock) = pair_of(v);
    else if (a == "--die") std::tie(o.die_rank, o.die_clock) = pair_of(v);
    else copse::fail("unknown option {}", a);
  }
  return o;
}

struct Toy {
  int W, R, own, ledger, bias, embed;
  explicit Toy(int workers) : W(workers), R(4 * workers + 3) {}
  void build(ParamStore<float>& ps) {
    own = ps.add({"own", {4 * W}});
    ledger = ps.add({"ledger", {W}, copse::memory::Init::Zeros});
    bias = ps.add({"bias", {5}});
    embed = ps.add({"embed", {R, 3}, copse::memory::Init::Uniform, 0.5f, true});
    ps.finalize();
    ps.init(7);
  }
  std::vector<int> rows(int w, long k) const {
    std::vector<int> r{static_cast<int>((7 * w + 3 * k) % R), static_cast<int>((7 * w + 3 * k + 1) % R),
                       static_cast<int>((5 * k) % R)};
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
    return r;
  }
  // Adds worker w's gradient of clock k (on the parameters in ps) to ps.
  void add_grad(ParamStore<float>& ps, int w, long k, float lr) const {
    for (int j = 0; j < 4; ++j)
      ps.grad(own)[4 * w + j] += ps.param(own)[4 * w + j] - float(w + j + 1);
    ps.grad(ledger)[w] += -1.0f / lr;
    for (int j = 0; j < 5; ++j) ps.grad(bias)[j] += 0.01f * float((w + 1) * k) - 0.02f * float(j);
    const auto rs = rows(w, k);
    for (int r : rs)
      for (int c = 0; c < 3; ++c)
        ps.grad(embed)[r * 3 + c] += 0.1f * std::sin(float(w + k + r + c));
    ps.touch_rows(embed, rs.data(), static_cast<int>(rs.size()));
  }
};

copse::memory::OptimizerConfig sgd(float lr) {
  copse::memory::OptimizerConfig oc;
  oc.lr = lr;
  return oc;
}

void write_params(const std::string& path, const ParamStore<float>& ps) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) copse::fail("cannot write {}", path);
  for (float v : ps.get_flat_host(-1)) std::fprintf(f, "%.9g\n", v);
  std::fclose(f);
}

void run_ref(const Options& o) {
  copse::ops::CpuBackend<float> be(1);
  ParamStore<float> ps(be);
  Toy toy(o.workers);
  toy.build(ps);
  ps.set_optimizer(sgd(o.lr));
  for (long k = 1; k <= o.clocks; ++k) {
    ps.zero_grads();
    for (int w = 0; w < o.workers; ++w) toy.add_grad(ps, w, k, o.lr);
    ps.step();
  }
  write_params(o.out + ".params", ps);
}

void run_ssp(const Options& o, int rank, int size) {
  copse::ops::CpuBackend<float> be(1);
  ParamStore<float> ps(be);
  Toy toy(size);
  toy.build(ps);
  ps.set_optimizer(sgd(o.lr));
  copse::memory::MpiSspServer<float> server(ps, o.staleness,
                                            std::chrono::milliseconds(o.timeout_ms));
  long ledger_violations = 0, ahead = -1000000, behind = 0;
  for (long k = 1; k <= o.clocks; ++k) {
    if (rank == o.stop_rank && k == o.stop_clock) raise(SIGSTOP);
    if (rank == o.die_rank && k == o.die_clock) raise(SIGKILL);
    ps.zero_grads();
    toy.add_grad(ps, rank, k, o.lr);
    if (rank == o.straggle_rank) std::this_thread::sleep_for(std::chrono::milliseconds(o.straggle_ms));
    server.push(rank, ps);
    if (k < o.clocks) {
      const auto next = toy.rows(rank, k + 1);
      server.read_rows(rank, toy.embed, next);
    } else {
      server.read_rows(rank, toy.embed, {});
    }
    server.advance(rank, ps);
    // The ledger: pushes of every worker this read held.
    for (int q = 0; q < size; ++q) {
      const long held = std::lround(ps.param(toy.ledger)[q]);
      if (held < k - o.staleness) ++ledger_violations;
      behind = std::max(behind, k - held);
      ahead = std::max(ahead, held - k);
    }
  }
  server.finish(rank);
  ParamStore<float> full(be);
  Toy(size).build(full);
  full.set_optimizer(sgd(o.lr));
  server.collect(full);
  server.close();
  if (rank == 0) write_params(o.out + ".params", full);
  const auto st = server.stats();
  std::string hist;
  for (auto [d, n] : st.oldest_histogram) hist += fmt::format("{}\"{}\":{}", hist.empty() ? "" : ",", d, n);
  std::ofstream js(fmt::format("{}.rank{}.json", o.out, rank));
  js << fmt::format(
      "{{\"rank\":{},\"reads\":{},\"waits\":{},\"wait_s\":{},\"violations\":{},\"max_lead\":{},"
      "\"ledger_violations\":{},\"max_behind\":{},\"max_ahead\":{},\"bytes_pushed\":{},"
      "\"bytes_pulled\":{},\"staleness_histogram\":{{{}}}}}\n",
      rank, st.reads, st.waits.at(rank), st.wait_s.at(rank), st.violations, st.max_lead,
      ledger_violations, behind, ahead, st.bytes_pushed, st.bytes_pulled, hist);
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    const Options o = parse(argc, argv);
    if (o.mode == "ref") {
      if (rank == 0) run_ref(o);
    } else if (o.mode == "ssp") {
      run_ssp(o, rank, size);
    } else {
      copse::fail("--mode must be ssp or ref, got {}", o.mode);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "copse: error: %s\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return 0;
}
