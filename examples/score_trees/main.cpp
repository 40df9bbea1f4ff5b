// Inference with a model written by `copse train`: loads model.safetensors
// (its cell, sizes and vocabulary are in the file), reads the trees of a PTB
// file, and scores each root from the predicted class probabilities:
//   fine:   the most probable of the 5 classes is the root's label;
//   binary: neutral roots (label 2) left out, positive iff p3 + p4 > p0 + p1.
// Prints one JSON line {"fine", "binary", "trees", "binary_trees"}, the
// same figures as `copse eval --model MODEL --data FILE`.
//
// Usage: score_trees MODEL FILE [THREADS=1]
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"
#include "models/graphs.h"
#include "models/model.h"
#include "models/ptb_reader.h"

using namespace copse;

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL FILE [THREADS=1]\n", argv[0]);
    return 2;
  }
  ModelConfig device;
  device.threads = argc > 3 ? std::stoi(argv[3]) : 1;
  Model model = Model::load(argv[1], device);
  if (model.config().head.width != 5)
    fail("{}: a 5-class sentiment model is needed, this one has {} outputs", argv[1],
         model.config().head.width);
  if (model.cell_name() == "lstm" || model.cell_name() == "gru" || model.cell_name() == "lstm2")
    fail("{}: this example reads trees; the model's cell '{}' reads sequences", argv[1],
         model.cell_name());

  auto trees = models::read_ptb_file(argv[2]);
  std::vector<const Graph*> graphs;
  for (auto& t : trees) {
    model.vocab().assign_inputs(t);  // leaf words -> the model's embedding rows
    graphs.push_back(&t.graph);
  }
  const auto probs = model.predict(graphs);

  long correct = 0, binary = 0, binary_correct = 0;
  for (size_t k = 0; k < trees.size(); ++k) {
    const auto& p = probs[k];
    const int label = trees[k].graph.label[root_of(trees[k].graph)];
    const int best = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
    correct += best == label;
    if (label == 2) continue;
    ++binary;
    binary_correct += (p[3] + p[4] > p[0] + p[1]) == (label > 2);
  }
  const double n = static_cast<double>(trees.size());
  std::printf("{\"binary\":%.17g,\"binary_trees\":%ld,\"fine\":%.17g,\"trees\":%zu}\n",
              binary ? binary_correct / double(binary) : 0.0, binary, n ? correct / n : 0.0,
              trees.size());
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "score_trees: error: %s\n", e.what());
  return 2;
}
