// dump_first_batch: the reference for the peer benchmark suite's same-function
// check (benchmarks/peers/). Builds the vocabulary the way `copse train` does,
// initialises the Tree-LSTM sentiment model, runs one training step's forward
// and backward (no optimizer step) on the first B trees of the file in file
// order, and writes
//   DIR/params.safetensors  the initial parameters (ParamStore names/layouts)
//   DIR/grads.safetensors   their gradients (loss scaled by 1/B; "embed" dense [V, E])
//   DIR/vocab.txt           the vocabulary, one word per line, id order
//   DIR/batch.json          {"loss": sum * (1/B), "loss_sum": sum, "trees": [...], ...}
#include <filesystem>
#include <fstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "common/error.h"
#include "memory/safetensors.h"
#include "models/ptb_reader.h"
#include "models/sentiment_model.h"
#include "models/tree_lstm.h"
#include "models/vocab.h"
#include "ops/cpu_backend.h"

using namespace copse;

int main(int argc, char** argv) {
  CLI::App app{"dump_first_batch: initial parameters and first-batch gradients for the peers"};
  std::string data, out;
  int embed = 128, hidden = 128, batch = 64, threads = 1;
  uint64_t seed = 1;
  app.add_option("--data", data, "PTB file (e.g. SST train.txt)")->required();
  app.add_option("--embed", embed)->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--out", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);
  try {
    if (batch <= 0 || embed <= 0 || hidden <= 0) fail("--batch, --embed, --hidden must be positive");
    std::vector<models::LabeledTree> trees = models::read_ptb_file(data);
    // Exactly as models/train.cpp: words in first-appearance order after <unk>.
    models::Vocab vocab;
    for (auto& t : trees)
      for (const auto& w : t.token)
        if (!w.empty()) vocab.add(w);
    for (auto& t : trees) vocab.assign_inputs(t);
    const int B = std::min<int>(batch, static_cast<int>(trees.size()));

    ops::CpuBackend<float> be(threads);
    models::SentimentConfig cfg;
    cfg.vocab = vocab.size();
    cfg.embed = embed;
    cfg.hidden = hidden;
    models::SentimentModel<float> model(models::tree_lstm_cell(embed, hidden), cfg, be);
    auto& ps = model.params();
    ps.init(seed);

    std::filesystem::create_directories(out);
    std::vector<memory::TensorData> params, grads;
    for (int i = 0; i < ps.size(); ++i) {
      memory::TensorData t;
      t.name = ps.spec(i).name;
      for (int d : ps.spec(i).shape) t.shape.push_back(d);
      t.data = ps.get_host(i);
      params.push_back(std::move(t));
    }
    std::map<std::string, std::string> meta{{"copse.embed", std::to_string(embed)},
                                            {"copse.hidden", std::to_string(hidden)},
                                            {"copse.seed", std::to_string(seed)},
                                            {"copse.vocab_size", std::to_string(vocab.size())}};
    memory::save_safetensors(out + "/params.safetensors", params, meta);

    std::vector<const scheduler::Graph*> g;
    std::vector<int> idx;
    for (int i = 0; i < B; ++i) g.push_back(&trees[i].graph), idx.push_back(i);
    auto b = scheduler::make_batch(g);
    ps.zero_grads();
    const float scale = 1.0f / B;
    double loss_sum = model.train_batch(b, scale);

    // The CPU backend's buffers are host memory; the dense grad buffer of the
    // sparse "embed" table holds zeros in the rows this batch did not touch.
    for (int i = 0; i < ps.size(); ++i) {
      memory::TensorData t;
      t.name = ps.spec(i).name;
      t.shape = params[i].shape;
      const float* gp = ps.grad(i);
      t.data.assign(gp, gp + ps.numel(i));
      grads.push_back(std::move(t));
    }
    memory::save_safetensors(out + "/grads.safetensors", grads, meta);
    vocab.save(out + "/vocab.txt");

    long vertices = 0, labelled = 0;
    for (int r = 0; r < b.num_rows; ++r) ++vertices, labelled += b.label[r] >= 0;
    nlohmann::json j;
    j["loss"] = loss_sum * scale;
    j["loss_sum"] = loss_sum;
    j["loss_scale"] = scale;
    j["trees"] = idx;
    j["vertices"] = vertices;
    j["labelled_vertices"] = labelled;
    j["vocab_size"] = vocab.size();
    j["vocab_file"] = "vocab.txt";
    j["config"] = {{"data", data}, {"embed", embed}, {"hidden", hidden}, {"batch", B},
                   {"seed", seed}};
    std::vector<std::string> names;
    for (int i = 0; i < ps.size(); ++i) names.push_back(ps.spec(i).name);
    j["params"] = names;
    std::ofstream(out + "/batch.json") << j.dump(1) << "\n";
    fmt::print("{}\n", j.dump());
  } catch (const Error& e) {
    fmt::print(stderr, "dump_first_batch: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
