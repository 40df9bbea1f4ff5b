// The pair model of the relatedness task (child-sum Tree-LSTM over both
// trees of a SICK pair, Tai et al.'s similarity head, KL loss): training
// throughput with batching on (a batch's 2B trees in one level loop, one
// head call) and off (each pair alone: its two trees, then the head), both
// accumulating the gradient of the same batches (the optimizer step is the
// same for both and left out). Checks first that the two give the same
// gradient. Rounds alternate between the two; the fastest round is kept.
//   bench_pairs [--data DIR] [--embed 300] [--hidden 150] [--batch 25]
//               [--seconds 3] [--threads 1] [--dump DIR]
// --dump DIR writes the initial parameters, the first batch's loss and
// gradients and the vocabulary (DIR/params.safetensors, grads.safetensors,
// vocab.txt, batch.json) for the PyTorch peer's same-function check
// (benchmarks/peers/torch_pairs.py), and exits.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "benchmarks/bench_util.h"
#include "common/error.h"
#include "memory/safetensors.h"
#include "models/model.h"
#include "models/train_task.h"

using namespace copse;

namespace {

// One pass over `batches` (gradient accumulated, none applied).
double pass(Model& m, const std::vector<std::vector<const Example*>>& batches, bool batched) {
  double loss = 0;
  for (const auto& b : batches) {
    m.params().zero_grads();
    const float scale = 1.0f / static_cast<float>(b.size());
    if (batched) {
      loss += m.train(m.batch(b), scale);
    } else {
      for (const Example* e : b) loss += m.train(m.batch({e}), scale);
    }
  }
  return loss;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app("copse: the SICK pair model with batching on and off");
  std::string data = "../shared/data/sick";
  int embed = 300, hidden = 150, batch = 25, threads = 1;
  double seconds = 3;
  std::string dump;
  app.add_option("--data", data, "the SICK layout's directory (train/ is read)")->capture_default_str();
  app.add_option("--embed", embed)->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--seconds", seconds, "per mode")->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--dump", dump, "write the first batch's reference for the peer and exit");
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  models::SickSplit split = models::read_sick_split((std::filesystem::path(data) / "train").string());
  models::Vocab vocab;
  const std::vector<Example> pairs = models::sick_examples(split, vocab, true);
  ModelConfig mc;
  mc.vocab = vocab.size();
  mc.embed = embed;
  mc.hidden = hidden;
  mc.head = Head::softmax(5);
  mc.threads = threads;
  Model m("child-sum-lstm", "similarity", mc);
  std::vector<std::vector<const Example*>> batches(1);
  for (const auto& e : pairs) {
    if (static_cast<int>(batches.back().size()) == batch) batches.emplace_back();
    batches.back().push_back(&e);
  }
  long vertices = 0;
  for (const auto& e : pairs) vertices += e.num_vertices();
  fmt::print("bench_pairs: {}/train, {} pairs ({} vertices), {} batches of {} | child-sum-lstm "
             "e{} h{} + similarity head (50) | {} s per mode | {} thread(s)\nmachine: {} ({} "
             "cores)\n",
             data, pairs.size(), vertices, batches.size(), batch, embed, hidden, seconds, threads,
             bench::cpu_model(), std::thread::hardware_concurrency());

  // The check: one batch's gradient both ways (CPU memory).
  auto grads = [&](bool batched) {
    pass(m, {batches[0]}, batched);
    const float* g = m.params().grads_flat();
    return std::vector<float>(g, g + m.params().total_elements());
  };
  const std::vector<float> g1 = grads(true), g2 = grads(false);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g1.size(); ++i)
    diff += double(g1[i] - g2[i]) * (g1[i] - g2[i]), norm += double(g1[i]) * g1[i];
  const double rel = std::sqrt(diff / std::max(norm, 1e-300));
  fmt::print("check: batched vs per-pair gradient, relative difference {:.2e}\n", rel);
  if (!(rel < 1e-4)) {
    fmt::print(stderr, "bench_pairs: the two gradients differ ({:.2e}); not timing\n", rel);
    return 1;
  }

  if (!dump.empty()) {
    std::filesystem::create_directories(dump);
    auto& ps = m.params();
    std::vector<memory::TensorData> params, grad_tensors;
    for (int i = 0; i < ps.size(); ++i) {
      memory::TensorData t;
      t.name = ps.spec(i).name;
      for (int d : ps.spec(i).shape) t.shape.push_back(d);
      t.data = ps.get_host(i);
      params.push_back(t);
      t.data.assign(g1.begin() + ps.offset(i), g1.begin() + ps.offset(i) + ps.numel(i));
      grad_tensors.push_back(std::move(t));
    }
    memory::save_safetensors(dump + "/params.safetensors", params, {});
    memory::save_safetensors(dump + "/grads.safetensors", grad_tensors, {});
    vocab.save(dump + "/vocab.txt");
    m.params().zero_grads();
    const float scale = 1.0f / static_cast<float>(batches[0].size());
    const double loss_sum = m.train(m.batch(batches[0]), scale);
    nlohmann::json j;
    j["loss"] = loss_sum * scale;
    j["pairs"] = batches[0].size();
    j["embed"] = embed;
    j["hidden"] = hidden;
    j["data"] = data;
    std::ofstream(dump + "/batch.json") << j.dump(1) << "\n";
    fmt::print("bench_pairs: the first batch's reference in {}\n", dump);
    return 0;
  }

  double best[2] = {1e300, 1e300};
  long done[2] = {0, 0};
  const double t_end = bench::now_s() + 2 * seconds;
  size_t next = 0;
  while (bench::now_s() < t_end || done[0] == 0 || done[1] == 0) {
    // A round: 8 batches (or all) each way, in alternating order.
    std::vector<std::vector<const Example*>> round;
    for (int k = 0; k < 8; ++k) round.push_back(batches[(next + k) % batches.size()]);
    next += 8;
    long n = 0;
    for (const auto& b : round) n += static_cast<long>(b.size());
    for (int mode : {0, 1}) {
      const double t0 = bench::now_s();
      pass(m, round, mode == 0);
      best[mode] = std::min(best[mode], (bench::now_s() - t0) / n);
      done[mode] += n;
    }
  }
  fmt::print("\n| batching | pairs/s | ms per batch of {} | pairs timed |\n|---|---:|---:|---:|\n",
             batch);
  for (int mode : {0, 1})
    fmt::print("| {} | {:.0f} | {:.2f} | {} |\n", mode == 0 ? "on (2B trees per level loop)" : "off (one pair at a time)",
               1.0 / best[mode], 1e3 * best[mode] * batch, done[mode]);
  fmt::print("\nbatching on / off: {:.2f}x\n", best[1] / best[0]);
  return 0;
} catch (const copse::Error& e) {
  std::fprintf(stderr, "bench_pairs: error: %s\n", e.what());
  return 2;
}
