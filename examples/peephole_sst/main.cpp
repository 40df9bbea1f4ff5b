// A binary Tree-LSTM with peephole connections, written with copse's vertex
// API, trained on SST-style PTB files (train.txt, dev.txt in DATA_DIR):
//
//   [i f_l f_r u] = W [x; h_l; h_r; c_l; c_r] + b   (the gates see the children's cells)
//   c = sig(i) * tanh(u) + sig(f_l) * c_l + sig(f_r) * c_r
//   o = sig(Wo [x; h_l; h_r; c] + bo)                (the output gate sees the new cell)
//   h = o * tanh(c)
//
// Usage: peephole_sst DATA_DIR [STEPS=300] [THREADS=1]
// Prints the mean loss per labelled vertex of the first and last 50 steps,
// and the dev root accuracy before and after.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "models/model.h"
#include "models/ptb_reader.h"
#include "models/trainer.h"
#include "vertex/builder.h"

using namespace copse;

vertex::VertexFunction peephole_tree_lstm(int embed, int hidden) {
  vertex::VertexBuilder v("peephole_tree_lstm", /*child_slots=*/2);
  v.state("h", hidden);
  v.state("c", hidden);
  auto x = v.pull("word", embed);
  auto hl = v.gather(0, "h"), hr = v.gather(1, "h");
  auto cl = v.gather(0, "c"), cr = v.gather(1, "c");
  auto [i, fl, fr, u] = v.split<4>(v.linear({x, hl, hr, cl, cr}, 4 * hidden, "W"));
  auto c = sigmoid(i) * tanh(u) + sigmoid(fl) * cl + sigmoid(fr) * cr;
  auto o = sigmoid(v.linear({x, hl, hr, c}, hidden, "Wo"));
  auto h = o * tanh(c);
  v.scatter("h", h);
  v.scatter("c", c);
  v.push("h", h);
  return v.build();
}

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR [STEPS=300] [THREADS=1]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int steps = argc > 2 ? std::stoi(argv[2]) : 300;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 1;
  auto train = models::read_ptb_file(dir + "/train.txt");
  auto dev = models::read_ptb_file(dir + "/dev.txt");

  // Words -> embedding rows; dev words never seen in training read <unk>.
  Vocab vocab = Vocab::build(train);
  for (auto* split : {&train, &dev})
    for (auto& t : *split) vocab.assign_inputs(t);

  ModelConfig cfg;
  cfg.vocab = vocab.size();
  cfg.embed = 64;
  cfg.hidden = 64;
  cfg.head = Head::softmax(5);  // a label at every vertex, as in SST
  cfg.threads = threads;
  Model model(peephole_tree_lstm(cfg.embed, cfg.hidden), cfg);
  model.vocab() = vocab;

  TrainerOptions opts;
  opts.optimizer = optimizer("adam", 2e-3f);
  opts.threads = threads;
  Trainer trainer(model, opts);

  std::vector<const Graph*> dev_graphs;
  for (const auto& t : dev) dev_graphs.push_back(&t.graph);
  const double dev_before = trainer.evaluate(dev_graphs).accuracy();

  std::mt19937 rng(1);
  std::vector<int> order(train.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t batch = 25;
  size_t next = order.size();
  double first = 0, last = 0;
  long first_n = 0, last_n = 0;
  for (int step = 0; step < steps; ++step) {
    if (next + batch > order.size()) {  // a new pass over the data
      std::shuffle(order.begin(), order.end(), rng);
      next = 0;
    }
    std::vector<const Graph*> b;
    for (size_t k = 0; k < batch; ++k) b.push_back(&train[order[next++]].graph);
    StepResult r = trainer.step(b);
    if (!r.taken) {
      std::fprintf(stderr, "step %d: %s\n", step, r.problem.c_str());
      return 1;
    }
    if (step < 50) first += r.loss, first_n += r.labelled;
    if (step >= steps - 50) last += r.loss, last_n += r.labelled;
    if ((step + 1) % 50 == 0)
      std::printf("step %4d  loss %.4f\n", step + 1, r.loss / std::max(1L, r.labelled));
  }
  const double dev_after = trainer.evaluate(dev_graphs).accuracy();
  model.save("peephole_sst.safetensors");
  std::printf("result: first_loss=%.4f last_loss=%.4f dev_fine_before=%.3f dev_fine_after=%.3f\n",
              first / std::max(1L, first_n), last / std::max(1L, last_n), dev_before, dev_after);
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "peephole_sst: error: %s\n", e.what());
  return 2;
}
