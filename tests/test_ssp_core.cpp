// The SSP core (memory/ssp_clock.h), the partition (memory/shard_map.h) and
// the sharded thread server: the bound measured at the shards holds under an
// injected straggler, workers wait only when the bound requires it, the
// sharded optimizer equals one unsharded store applying the same pushes, a
// non-finite push changes no shard, and reads move only what they must.
#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "memory/shard_map.h"
#include "memory/ssp_clock.h"
#include "memory/ssp_server.h"
#include "ops/cpu_backend.h"

using namespace copse;
using memory::ParamStore;

namespace {

constexpr int kRows = 20, kWidth = 4;

// Dense "w" [10] and "b" [3], table "embed" [20, 4].
void add_toy(ParamStore<float>& ps) {
  ps.add({"w", {10}, memory::Init::Zeros, 0.f, false});
  ps.add({"b", {3}, memory::Init::Zeros, 0.f, false});
  ps.add({"embed", {kRows, kWidth}, memory::Init::Zeros, 0.f, true});
  ps.finalize();
}

memory::OptimizerConfig sgd(float lr) {
  memory::OptimizerConfig oc;
  oc.kind = memory::OptimizerConfig::Sgd;
  oc.lr = lr;
  return oc;
}

// The row worker w touches at clock k (1-based).
int row_of(int w, long k) { return static_cast<int>((w * 7 + k * 3) % kRows); }

// Gradient of worker w at clock k: 1 on w[0] and on every element of its row.
void toy_grad(ParamStore<float>& r, int w, long k) {
  r.zero_grads();
  r.grad(0)[0] = 1.f;
  const int row = row_of(w, k);
  for (int j = 0; j < kWidth; ++j) r.grad(2)[row * kWidth + j] = 1.f;
  r.touch_rows(2, &row, 1);
}

TEST(ShardMap, SlicesCoverEveryElementOnceAndRowsGoById) {
  ops::CpuBackend<float> be(1);
  ParamStore<float> ps(be);
  add_toy(ps);
  for (int n : {1, 2, 3, 5, 13}) {
    memory::ShardMap map(memory::ShardMap::layout(ps), n);
    std::vector<int> seen(13, 0);  // logical dense elements: w then b
    std::size_t prev_end = 0;
    for (int s = 0; s < n; ++s) {
      EXPECT_EQ(map.dense_begin(s), prev_end);
      EXPECT_GT(map.dense_end(s), map.dense_begin(s));
      prev_end = map.dense_end(s);
      std::size_t len = 0;
      for (const auto& pc : map.pieces(s)) {
        for (std::size_t e = pc.begin; e < pc.end; ++e) ++seen[(pc.id == 0 ? 0 : 10) + e];
        len += pc.end - pc.begin;
      }
      EXPECT_EQ(len, map.dense_end(s) - map.dense_begin(s));
    }
    EXPECT_EQ(prev_end, 13u);
    for (int v : seen) EXPECT_EQ(v, 1);
    int rows = 0;
    for (int s = 0; s < n; ++s) rows += map.local_rows(2, s);
    EXPECT_EQ(rows, kRows);
    for (int r = 0; r < kRows; ++r) {
      EXPECT_EQ(map.global_row(map.owner(r), map.local_row(r)), r);
      EXPECT_LT(map.local_row(r), map.local_rows(2, map.owner(r)));
    }
  }
  EXPECT_EQ(memory::ShardMap::max_shards(memory::ShardMap::layout(ps)), 13);
  EXPECT_THROW(memory::ShardMap(memory::ShardMap::layout(ps), 14), Error);
  ParamStore<float> few(be);
  few.add({"w", {100}, memory::Init::Zeros, 0.f, false});
  few.add({"embed", {3, 2}, memory::Init::Zeros, 0.f, true});
  few.finalize();
  try {
    memory::ShardMap(memory::ShardMap::layout(few), 4);
    FAIL() << "4 shards of a 3-row table";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'embed' has only 3 rows"), std::string::npos) << e.what();
  }
}

// W workers on the toy store, worker 0 slowed by `straggle_us` per clock.
// Independent checks of every read: by the test's own count of the pushes
// that must be in it, and whether the worker may wait at all.
void run_straggler(int workers, int staleness, int clocks, int straggle_us, bool list_rows) {
  SCOPED_TRACE(::testing::Message() << "W=" << workers << " s=" << staleness
                                    << " listed=" << list_rows);
  ops::CpuBackend<float> be(1);
  ParamStore<float> master(be);
  add_toy(master);
  master.set_optimizer(sgd(1.f));
  memory::SspServer<float> server(master, workers, staleness, std::chrono::seconds(30));
  EXPECT_EQ(server.shards(), std::min(workers, 13));
  server.set_straggler_hook([&](int rank, long) {
    if (rank == 0) std::this_thread::sleep_for(std::chrono::microseconds(straggle_us));
  });
  std::atomic<long> short_reads{0}, unneeded_waits{0}, needless_rows{0};
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      ops::CpuBackend<float> wbe(1);
      ParamStore<float> replica(wbe);
      add_toy(replica);
      for (long k = 1; k <= clocks; ++k) {
        toy_grad(replica, w, k);
        server.push(w, replica);
        // May this worker go on without blocking? Clocks only grow, so if
        // every other worker has completed k - s clocks now, the advance
        // to clock k must not wait.
        bool may_pass = true;
        for (int x = 0; x < workers; ++x)
          if (x != w && server.clock(x) < k - staleness) may_pass = false;
        const long waits_before = server.stats().waits[w];
        const int next_row = row_of(w, k + 1);
        if (list_rows) server.read_rows(w, 2, {next_row, next_row});
        server.advance(w, replica);
        if (may_pass && server.stats().waits[w] != waits_before) ++unneeded_waits;
        // Pushes of clocks <= k - s: W each, all on w[0]; on next_row, those
        // of the workers x with row_of(x, j) == next_row.
        const long need = std::max(0L, k - staleness);
        if (-replica.param(0)[0] < workers * need) ++short_reads;
        long on_row = 0;
        for (int x = 0; x < workers; ++x)
          for (long j = 1; j <= need; ++j) on_row += row_of(x, j) == next_row;
        if (-replica.param(2)[next_row * kWidth] < on_row) ++short_reads;
        // A listed read leaves every other row of the replica alone.
        if (list_rows)
          for (int r = 0; r < kRows; ++r)
            if (r != next_row && r != row_of(w, k) && replica.param(2)[r * kWidth] != 0.f &&
                k == 1)
              ++needless_rows;
      }
      server.finish(w);
    });
  for (auto& t : pool) t.join();
  const auto st = server.stats();
  EXPECT_EQ(short_reads.load(), 0);
  EXPECT_EQ(unneeded_waits.load(), 0);
  EXPECT_EQ(needless_rows.load(), 0);
  EXPECT_EQ(st.violations, 0);
  EXPECT_EQ(st.reads, static_cast<long>(workers) * clocks);
  long reads = 0;
  for (auto [stale, n] : st.oldest_histogram) {
    EXPECT_LE(stale, staleness);
    EXPECT_GE(stale, 0);
    reads += n;
  }
  EXPECT_EQ(reads, st.reads);
  EXPECT_LE(st.max_lead, staleness);
  // The straggler is never the one that waits for long; the fast workers,
  // held by the bound, do wait unless the bound exceeds the run.
  long fast_waits = 0;
  for (int w = 1; w < workers; ++w) fast_waits += st.waits[w];
  if (staleness < clocks) {
    EXPECT_GT(fast_waits, 0);
  }
  // Every push was applied once: the master got them all back at the end.
  EXPECT_FLOAT_EQ(master.param(0)[0], -static_cast<float>(workers) * clocks);
  for (int r = 0; r < kRows; ++r) {
    long n = 0;
    for (int x = 0; x < workers; ++x)
      for (long j = 1; j <= clocks; ++j) n += row_of(x, j) == r;
    EXPECT_FLOAT_EQ(master.param(2)[r * kWidth + 3], -static_cast<float>(n)) << "row " << r;
  }
}

TEST(SspCore, BoundHoldsAndWaitsOnlyWhenRequiredWithAStraggler) {
  for (int s : {0, 1, 3}) run_straggler(4, s, 200, 1500, false);
  run_straggler(3, 2, 200, 1500, true);
}

TEST(SspCore, NoWaitsWhenTheBoundExceedsTheRun) {
  ops::CpuBackend<float> be(1);
  ParamStore<float> master(be);
  add_toy(master);
  master.set_optimizer(sgd(1.f));
  const int clocks = 30;
  memory::SspServer<float> server(master, 3, clocks, std::chrono::seconds(30));
  server.set_straggler_hook([](int rank, long) {
    if (rank == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  });
  std::vector<std::thread> pool;
  for (int w = 0; w < 3; ++w)
    pool.emplace_back([&, w] {
      ops::CpuBackend<float> wbe(1);
      ParamStore<float> replica(wbe);
      add_toy(replica);
      for (long k = 1; k <= clocks; ++k) {
        toy_grad(replica, w, k);
        server.push(w, replica);
        server.advance(w, replica);
      }
      server.finish(w);
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(server.waits(), 0);
  EXPECT_GT(server.max_lead(), 0);  // the fast workers did run ahead
}

// One thread plays 3 workers in a fixed order (no waits with s = 10): the
// sharded server (Adam, clipping, L2; each shard its own state) must end
// where one unsharded store applying the same pushes in the same order ends.
TEST(SspCore, ShardedOptimizerEqualsOneStoreStepByStep) {
  ops::CpuBackend<float> be(1);
  memory::OptimizerConfig oc;
  oc.kind = memory::OptimizerConfig::Adam;
  oc.lr = 0.05f;
  oc.l2 = 1e-3f;
  oc.clip_norm = 2.f;
  ParamStore<float> master(be), ref(be);
  add_toy(master);
  add_toy(ref);
  master.init(3);
  ref.init(3);
  master.set_optimizer(oc);
  ref.set_optimizer(oc);
  // Each shard decays its dense slice by l2 / W per push (W pushes a clock).
  ref.set_dense_l2_scale(1.f / 3);
  memory::SspServer<float> server(master, 3, 10, std::chrono::seconds(10));
  ASSERT_EQ(server.shards(), 3);
  std::vector<std::unique_ptr<ParamStore<float>>> reps;
  for (int w = 0; w < 3; ++w) {
    reps.push_back(std::make_unique<ParamStore<float>>(be));
    add_toy(*reps.back());
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  for (long k = 1; k <= 8; ++k)
    for (int w = 0; w < 3; ++w) {
      auto& r = *reps[w];
      r.zero_grads();
      ref.zero_grads();
      for (std::size_t i = 0; i < 13; ++i) {
        const float g = u(rng);
        (i < 10 ? r.grad(0)[i] : r.grad(1)[i - 10]) = g;
        (i < 10 ? ref.grad(0)[i] : ref.grad(1)[i - 10]) = g;
      }
      const int rows[2] = {row_of(w, k), (row_of(w, k) + 5) % kRows};
      for (int row : rows)
        for (int j = 0; j < kWidth; ++j) {
          const float g = u(rng);
          r.grad(2)[row * kWidth + j] = g;
          ref.grad(2)[row * kWidth + j] = g;
        }
      r.touch_rows(2, rows, 2);
      ref.touch_rows(2, rows, 2);
      ASSERT_TRUE(server.push(w, r));
      ref.step();
      server.advance(w, r);
    }
  for (int w = 0; w < 3; ++w) server.finish(w);
  const auto a = master.get_flat_host(-1), b = ref.get_flat_host(-1);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << "element " << i;
  for (int k = 0; k < ref.optimizer_state_slots(); ++k) {
    const auto sa = master.get_flat_host(k), sb = ref.get_flat_host(k);
    for (std::size_t i = 0; i < sa.size(); ++i) EXPECT_NEAR(sa[i], sb[i], 1e-6) << "state " << k;
  }
  EXPECT_EQ(master.optimizer_steps(), ref.optimizer_steps());
  // The last worker's replica read every shard after its push: it equals the reference too.
  const auto rp = reps[2]->get_flat_host(-1);
  for (std::size_t i = 0; i < rp.size(); ++i) EXPECT_NEAR(rp[i], b[i], 1e-6);
}

// A push whose update overflows on one shard only (w[0] lives on shard 0)
// changes no shard: skipped and counted, or, by default, a failure of all.
TEST(SspCore, NonFinitePushChangesNoShard) {
  for (bool skip : {true, false}) {
    ops::CpuBackend<float> be(1);
    ParamStore<float> master(be), replica(be);
    add_toy(master);
    add_toy(replica);
    master.set_optimizer(sgd(4.f));
    memory::SspServer<float> server(master, 2, 1, std::chrono::seconds(10));
    server.set_nonfinite_policy(skip, 0);
    toy_grad(replica, 0, 1);
    ASSERT_TRUE(server.push(0, replica));
    server.collect(master);
    const auto before = master.get_flat_host(-1);
    toy_grad(replica, 0, 2);
    replica.grad(0)[0] = 3e38f;  // lr 4: w[0] -> -inf
    replica.grad(1)[2] = 1.f;    // on the last shard: finite
    if (skip) {
      EXPECT_FALSE(server.push(0, replica));
      EXPECT_EQ(server.skipped(), 1);
    } else {
      try {
        server.push(0, replica);
        FAIL() << "a non-finite update was not refused";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "SSP: worker 0 at clock 1: non-finite parameters after the update (w)"),
                  std::string::npos)
            << e.what();
      }
    }
    server.collect(master);
    EXPECT_EQ(master.get_flat_host(-1), before);
  }
}

// After the first read a worker's default (unlisted) read returns only the
// rows updated since its last one, not the whole table.
TEST(SspCore, ReadsMoveOnlyUpdatedRows) {
  ops::CpuBackend<float> be(1);
  ParamStore<float> master(be), replica(be);
  add_toy(master);
  add_toy(replica);
  master.set_optimizer(sgd(1.f));
  memory::SspServer<float> server(master, 1, 0, std::chrono::seconds(10));
  const long table = kRows * (kWidth * 4 + 4), dense = 13 * 4;
  toy_grad(replica, 0, 1);
  server.push(0, replica);
  server.advance(0, replica);  // first read: everything
  EXPECT_EQ(server.stats().bytes_pulled, dense + table);
  toy_grad(replica, 0, 2);
  server.push(0, replica);
  server.advance(0, replica);  // one row updated since
  EXPECT_EQ(server.stats().bytes_pulled, 2 * dense + table + (kWidth * 4 + 4));
  EXPECT_FLOAT_EQ(replica.param(2)[row_of(0, 2) * kWidth], -1.f);
  EXPECT_EQ(server.stats().bytes_pushed, 2 * (dense + kWidth * 4 + 4));
}

TEST(SspCore, AbortWakesAWaitingWorkerWithTheReason) {
  memory::SspClock clock(2, 0, std::chrono::seconds(30));
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    clock.abort("worker 1 failed: out of memory");
  });
  const long c = clock.tick(0);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    clock.wait_readable(0, c);
    FAIL() << "went past the bound";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "worker 1 failed: out of memory");
  }
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_THROW(clock.tick(1), Error);
}

TEST(SspCore, FinishedWorkersAreNotWaitedForUntilTheNextEpoch) {
  memory::SspClock clock(2, 0, std::chrono::milliseconds(200), "rank", "rank 0: ");
  clock.finish(1);
  clock.wait_readable(0, clock.tick(0));  // worker 1 finished: no wait
  EXPECT_EQ(clock.stats().waits[0], 0);
  clock.start_epoch();
  try {
    clock.wait_readable(0, clock.tick(0));
    FAIL() << "did not wait for rank 1";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "rank 0: SSP: rank 0 at clock 2 waited 200 ms for rank(s) 1 (clock 0)");
  }
  // A finish of an earlier epoch arriving late does not count now.
  memory::SspClock late(2, 0, std::chrono::milliseconds(100));
  late.start_epoch();
  late.finish(1, 0);
  EXPECT_FALSE(late.finished(1));
  late.finish(1, 1);
  EXPECT_TRUE(late.finished(1));
}

}  // namespace
