// Bounded staleness (SSP): with random stragglers no worker ever runs more
// than s clocks ahead of the slowest, a read at clock c sees every update of
// clocks <= c-s-1, and training still converges for s = 0, 1, 3.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "memory/ssp_server.h"
#include "ops/cpu_backend.h"

using namespace copse;
namespace fs = std::filesystem;

namespace {

// W workers push gradient 1 on one scalar parameter at every clock (SGD, lr 1:
// each push lowers the master by 1), with random delays injected by the hook.
void run_stragglers(int workers, int staleness, int clocks, unsigned seed) {
  ops::CpuBackend<float> be(1);
  memory::ParamStore<float> master(be);
  master.add({"p", {1}, memory::Init::Zeros, 0.f, false});
  master.finalize();
  memory::OptimizerConfig oc;
  oc.kind = memory::OptimizerConfig::Sgd;
  oc.lr = 1.f;
  master.set_optimizer(oc);
  memory::SspServer<float> server(master, workers, staleness, std::chrono::seconds(30));
  std::atomic<long> violations{0}, stale_reads{0};
  server.set_straggler_hook([&](int rank, long clock) {
    thread_local std::mt19937 rng(seed * 131 + rank);
    // One worker in four is slow now and then.
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    (void)clock;
  });
  std::vector<std::thread> pool;
  for (int r = 0; r < workers; ++r)
    pool.emplace_back([&, r] {
      ops::CpuBackend<float> wbe(1);
      memory::ParamStore<float> replica(wbe);
      replica.add({"p", {1}, memory::Init::Zeros, 0.f, false});
      replica.finalize();
      for (int c = 0; c < clocks; ++c) {
        replica.zero_grads();
        replica.grad(0)[0] = 1.f;
        server.push(r, replica);
        server.advance(r, replica);
        const long mine = server.clock(r);  // == c + 1
        if (mine - server.min_clock() > staleness) ++violations;
        // Every worker has pushed clocks 0 .. mine-s-1: at least W*(mine-s) updates.
        const long need = std::max(0L, static_cast<long>(workers) * (mine - staleness));
        if (-replica.param(0)[0] < need) ++stale_reads;
      }
      server.finish(r);
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(violations.load(), 0) << "s=" << staleness;
  EXPECT_EQ(stale_reads.load(), 0) << "s=" << staleness;
  EXPECT_LE(server.max_lead(), staleness);
  long reads = 0;
  for (auto [lead, n] : server.staleness_histogram()) {
    EXPECT_LE(lead, staleness);
    reads += n;
  }
  EXPECT_EQ(reads, static_cast<long>(workers) * clocks);
  EXPECT_FLOAT_EQ(master.param(0)[0], -static_cast<float>(workers) * clocks);
  if (staleness > 0) {
    EXPECT_GT(server.staleness_histogram().rbegin()->first, 0);
  }
}

TEST(Ssp, BoundHoldsWithRandomStragglers) {
  for (int s : {0, 1, 3}) run_stragglers(4, s, 1500, 11 + s);
}

TEST(Ssp, SilentWorkerIsReported) {
  ops::CpuBackend<float> be(1);
  memory::ParamStore<float> master(be), replica(be);
  for (auto* p : {&master, &replica}) {
    p->add({"p", {1}, memory::Init::Zeros, 0.f, false});
    p->finalize();
  }
  memory::OptimizerConfig oc;
  master.set_optimizer(oc);
  memory::SspServer<float> server(master, 2, 1, std::chrono::milliseconds(300));
  server.push(0, replica);
  server.advance(0, replica);  // lead 1: allowed
  server.push(0, replica);
  try {
    server.advance(0, replica);  // lead 2 > 1: waits for worker 1, which never comes
    FAIL() << "advanced past the bound";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("worker(s) 1 (clock 0)"), std::string::npos) << e.what();
  }
}

TEST(Ssp, TrainingConvergesForSeveralBounds) {
  fs::path dir = fs::path(::testing::TempDir()) / ("copse_ssp_" + std::to_string(getpid()));
  for (int s : {0, 1, 3}) {
    fs::path out = dir / std::to_string(s);
    std::string cmd = std::string(COPSE_BINARY_DIR) + "/copse train --workers 2 --staleness " +
                      std::to_string(s) + " --epochs 3 --embed 32 --hidden 32 --quiet --out " +
                      out.string() + " > /dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream m(out / "metrics.jsonl");
    std::string line, last;
    while (std::getline(m, line)) last = line;
    auto j = nlohmann::json::parse(last);
    EXPECT_GE(j["test_fine"].get<double>(), 0.75) << "s=" << s;
    EXPECT_LE(j["ssp_max_lead"].get<long>(), s);
  }
  fs::remove_all(dir);
}

}  // namespace
