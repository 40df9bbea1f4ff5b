// BSP data parallelism over threads: W workers on shards of each batch end
// with the parameters of one worker on the whole batch; a silent or failing
// worker makes the others fail instead of hanging.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "memory/safetensors.h"
#include "memory/thread_sync.h"
#include "models/sentiment_model.h"
#include "models/synthetic_treebank.h"
#include "models/tree_lstm.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"

namespace fs = std::filesystem;
using namespace copse;

namespace {

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d / std::max(n, 1e-30));
}

struct Replica {
  std::unique_ptr<ops::CpuBackend<float>> be;
  std::unique_ptr<models::SentimentModel<float>> model;
};

Replica make_replica(int vocab, const memory::OptimizerConfig& oc) {
  Replica r;
  r.be = std::make_unique<ops::CpuBackend<float>>(1);
  models::SentimentConfig cfg;
  cfg.vocab = vocab;
  cfg.embed = 8;
  cfg.hidden = 8;
  r.model = std::make_unique<models::SentimentModel<float>>(models::tree_lstm_cell(8, 8), cfg, *r.be);
  r.model->params().init(42);
  r.model->params().set_optimizer(oc);
  return r;
}

void check_bsp(memory::OptimizerConfig::Kind kind, int workers) {
  auto trees = models::make_synthetic_treebank(96, 5);
  models::Vocab vocab;
  for (auto& t : trees)
    for (const auto& w : t.token)
      if (!w.empty()) vocab.add(w);
  for (auto& t : trees) vocab.assign_inputs(t);
  memory::OptimizerConfig oc;
  oc.kind = kind;
  oc.lr = kind == memory::OptimizerConfig::Adam ? 0.01f : 0.1f;
  oc.l2 = 1e-4f;

  Replica single = make_replica(vocab.size(), oc);
  std::vector<Replica> reps;
  memory::ThreadGradSync<float> sync(workers, std::chrono::seconds(30));
  for (int r = 0; r < workers; ++r) {
    reps.push_back(make_replica(vocab.size(), oc));
    reps.back().model->params().set_grad_sync(sync.endpoint(r));
  }
  const int batch = 24, steps = 4;
  for (int s = 0; s < steps; ++s) {
    std::vector<const scheduler::Graph*> g;
    for (int k = 0; k < batch; ++k) g.push_back(&trees[s * batch + k].graph);
    const float scale = 1.0f / batch;
    auto& sp = single.model->params();
    sp.zero_grads();
    single.model->train_batch(scheduler::make_batch(g), scale);
    sp.step();
    // Round-robin shards of the same batch.
    std::vector<std::thread> pool;
    std::vector<std::string> errors(workers);
    for (int r = 0; r < workers; ++r)
      pool.emplace_back([&, r] {
        try {
          std::vector<const scheduler::Graph*> mine;
          for (int k = r; k < batch; k += workers) mine.push_back(g[k]);
          auto& rp = reps[r].model->params();
          rp.zero_grads();
          reps[r].model->train_batch(scheduler::make_batch(mine), scale);
          rp.step();
        } catch (const std::exception& e) {
          errors[r] = e.what();
          sync.abort(r, e.what());
        }
      });
    for (auto& t : pool) t.join();
    for (auto& e : errors) ASSERT_TRUE(e.empty()) << e;
  }
  auto& sp = single.model->params();
  for (int r = 0; r < workers; ++r) {
    auto& rp = reps[r].model->params();
    for (int id = 0; id < sp.size(); ++id) {
      double d = rel_diff(rp.get_host(id), sp.get_host(id));
      EXPECT_LE(d, 1e-5) << memory::optimizer_kind_name(kind) << ", " << workers << " workers, worker "
                         << r << ", parameter " << sp.spec(id).name;
    }
  }
  // The workers really moved away from the initial parameters.
  Replica fresh = make_replica(vocab.size(), oc);
  EXPECT_GT(rel_diff(sp.get_host(sp.id("U")), fresh.model->params().get_host(sp.id("U"))), 1e-4);
  EXPECT_EQ(sync.stats(0).clocks, steps);
}

TEST(DataParallel, BspEqualsOneWorkerOnTheSummedBatch) {
  for (auto kind : {memory::OptimizerConfig::Sgd, memory::OptimizerConfig::Adagrad,
                    memory::OptimizerConfig::Adam})
    for (int workers : {1, 2, 4}) check_bsp(kind, workers);
}

TEST(DataParallel, SilentWorkerIsReportedNotAwaited) {
  ops::CpuBackend<float> be(1);
  memory::ParamStore<float> ps(be);
  ps.add({"w", {4}, memory::Init::Zeros, 0.f, false});
  ps.finalize();
  memory::ThreadGradSync<float> sync(2, std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  try {
    sync.endpoint(0)->sync(ps);  // worker 1 never arrives
    FAIL() << "sync returned without worker 1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("worker(s) 1 did not answer"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(DataParallel, FailingWorkerAbortsTheOthers) {
  ops::CpuBackend<float> be(1);
  memory::ParamStore<float> ps(be);
  ps.add({"w", {4}, memory::Init::Zeros, 0.f, false});
  ps.finalize();
  memory::ThreadGradSync<float> sync(2, std::chrono::seconds(60));
  std::thread failing([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    sync.abort(1, "out of memory");
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(
      {
        try {
          sync.endpoint(0)->sync(ps);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("worker 1 failed: out of memory"),
                    std::string::npos);
          throw;
        }
      },
      Error);
  failing.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// The command-line check: --workers 2 and --workers 1 with the same
// flags save the same model.safetensors (to 1e-5).
TEST(DataParallel, CommandLineWorkersAgree) {
  fs::path dir = fs::path(::testing::TempDir()) / ("copse_dp_" + std::to_string(getpid()));
  fs::remove_all(dir);
  std::vector<std::vector<memory::TensorData>> models;
  for (int w : {1, 2}) {
    fs::path out = dir / ("w" + std::to_string(w));
    std::string cmd = std::string(COPSE_BINARY_DIR) + "/copse train --workers " + std::to_string(w) +
                      " --batch 32 --optimizer sgd --seed 1 --epochs 2 --embed 24 --hidden 24 "
                      "--quiet --out " + out.string() + " > /dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    models.push_back(memory::load_safetensors((out / "model.safetensors").string()));
  }
  ASSERT_EQ(models[0].size(), models[1].size());
  for (size_t k = 0; k < models[0].size(); ++k) {
    EXPECT_EQ(models[0][k].name, models[1][k].name);
    EXPECT_LE(rel_diff(models[1][k].data, models[0][k].data), 1e-5) << models[0][k].name;
  }
  fs::remove_all(dir);
}

}  // namespace
