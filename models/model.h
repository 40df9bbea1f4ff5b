// copse::Model: an embedding table (or dense per-vertex rows), a vertex
// function run over every vertex of a batch of graphs, and a head: the
// parameters and runtime of one model on one backend. Trained by
// copse::Trainer (models/trainer.h); saved and loaded as safetensors.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/param_store.h"
#include "models/graphs.h"
#include "models/sentiment_model.h"
#include "models/vocab.h"
#include "ops/backend.h"
#include "vertex/builder.h"

namespace copse {

using models::HeadLoss;
using models::Vocab;

// The head: a loss at the vertices that carry a label (softmax) or a target
// (squared error), on a linear layer over the cell's "h" or on the cell's own
// push "y" (a head written with the vertex API).
struct Head {
  HeadLoss loss = HeadLoss::Softmax;  // softmax cross-entropy or squared error
  int width = 2;        // classes, or the target width
  bool linear = true;   // false: the cell pushes "y" [width] itself

  // Softmax cross-entropy over `classes` on a linear layer over "h".
  static Head softmax(int classes) { return {HeadLoss::Softmax, classes, true}; }
  // Squared error of a `width`-wide linear layer over "h".
  static Head squared(int width) { return {HeadLoss::Squared, width, true}; }
  // The cell's push "y" is the head's output: logits, or the prediction.
  static Head own(HeadLoss loss, int width) { return {loss, width, false}; }
};

// What a Model is made of: its inputs, widths, head, initialisation and
// where it runs.
struct ModelConfig {
  int vocab = 0;      // embedding rows (the cell pulls "word" [embed]); 0: no table
  int embed = 0;      // width of an embedding row
  int features = 0;   // dense per-vertex rows (the cell pulls "x" [features]); 0: none
  int hidden = 0;     // width of the cell's push "h"
  Head head;          // the loss and its width (a join head: its width)
  float embed_init = 0.1f;   // embeddings start U[-embed_init, embed_init]
  std::uint64_t seed = 1;    // parameter initialisation
  std::string device = "cpu";  // cpu | cuda | auto (ops/device.h)
  int threads = 1;             // CPU math threads
  bool tf32 = false;           // cuda: allow TF32 GEMMs
  int gpu = 0;                 // cuda: which GPU
};

// A batch ready to run: the merged graphs and, in their row order, the dense
// rows and targets of the examples.
struct Batch {
  scheduler::GraphBatch graphs;  // every graph of the batch, merged
  // Examples of several graphs (a join head): per example, the batch rows
  // its head reads (example-major, `arity` each), and its target.
  int arity = 1;
  std::vector<int> join_rows;     // [examples * arity]
  std::vector<float> join_targets;  // [examples, head width]
  std::vector<float> features;  // [rows, features] indexed by the rows' input ids
  int feature_rows = 0;         // rows of `features`
  std::vector<float> targets;   // [N, head width] in row order, NaN: none
  models::BatchData data() const;  // the dense rows and targets as the core reads them
};

// Graphs carry their inputs and labels; examples also dense rows and targets
// (`features` and `target_width` are the model's; 0 when it reads none).
// arity > 1: examples of `arity` graphs each (Example::more) for a join
// head, whose width is target_width (every example needs a target).
Batch batch_of(const std::vector<const Graph*>& graphs);
// The examples' graphs, dense rows and targets (see above).
Batch batch_of(const std::vector<const Example*>& examples, int features, int target_width,
               int arity = 1);

// Root-level results summed over batches: see accuracy(), mse().
struct Evaluation {
  models::EvalCounts counts;      // roots, correct roots, binary SST accuracy, loss
  models::SquaredCounts squared;  // squared head: error over target entries
  // Mean loss per labelled vertex (per example with a join head).
  double loss() const { return counts.vertices ? counts.loss / counts.vertices : 0.0; }
  // Root accuracy (softmax heads).
  double accuracy() const { return counts.fine(); }
  // Mean squared error per target entry (squared heads).
  double mse() const { return squared.entries ? squared.sum / squared.entries : 0.0; }
};

// Embeddings (or dense rows) + a vertex function + a head, with its
// parameters and backend; trained by copse::Trainer.
class Model {
 public:
  // A model around the user's cell. Throws copse::Error when the cell does
  // not pull / push what the configuration says.
  Model(const vertex::VertexFunction& cell, const ModelConfig& cfg);
  // A cell of models/cells.h by name (tree-lstm, tree-gru, lstm, ...).
  Model(const std::string& cell_name, const ModelConfig& cfg);
  // Examples of several graphs joined by `join_head` (models/join_head.h):
  // its pulls in0 .. in{k-1} say how many (k); cfg.head.width is its width,
  // cfg.head.loss its loss (cfg.head.linear is not read).
  Model(const vertex::VertexFunction& cell, const vertex::VertexFunction& join_head,
        const ModelConfig& cfg);
  // The same with a cell and a join head by name (models/join_head.h).
  Model(const std::string& cell_name, const std::string& join_head, const ModelConfig& cfg);
  ~Model();
  Model(Model&&) noexcept;             // moves the parameters and the backend
  Model& operator=(Model&&) noexcept;  // likewise

  // Loads a model written by save() or `copse train`: the cell by its name
  // (models/cells.h), or the given one; device and threads from `cfg`, the
  // sizes from the file. Throws naming the file and the tensor that does
  // not fit.
  static Model load(const std::string& path, const ModelConfig& device = {});
  // The same with the user's cell (its parameters must match the file's).
  static Model load(const std::string& path, const vertex::VertexFunction& cell,
                    const ModelConfig& device = {});
  // Parameters, sizes, vocabulary and `metadata`, written atomically.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {});

  // The word <-> id map saved with the model (empty but for <unk> unless the
  // program fills it).
  Vocab& vocab() { return vocab_; }
  // The same, read-only.
  const Vocab& vocab() const { return vocab_; }
  // The configuration as built (sizes from the file when loaded).
  const ModelConfig& config() const { return cfg_; }
  // The cell's registry name (models/cells.h), or its function's name.
  const std::string& cell_name() const { return cell_name_; }
  // The cell's vertex function.
  const vertex::VertexFunction& cell() const { return cell_; }
  // Graphs per example: 1, or the join head's k.
  int arity() const { return arity_; }
  // The join head's name ("" without one).
  const std::string& join_name() const { return join_name_; }
  // The examples in `batch` in the form this model reads (its features,
  // targets and arity).
  Batch batch(const std::vector<const Example*>& examples) const;
  // Forward, loss and backward over a batch: gradients are added to the
  // store's, the loss (summed, times `scale`) is returned unscaled.
  double train(const Batch& b, float scale);
  // The width of the targets an example carries (Example::targets per
  // vertex, or Example::target with a join head); 0 when it has none.
  int target_width() const;
  // The vertices (or, with a join head, the examples) that carry a loss.
  long labelled(const Batch& b) const;
  // Every parameter (embeddings, cell, head) and its gradient and optimizer state.
  memory::ParamStore<float>& params();
  // The runtime underneath (executors, arena, head); for benchmarks and tests.
  models::SentimentModel<float>& core() { return *core_; }
  // Where the model computes.
  ops::Backend<float>& backend() { return *backend_; }

  // Forward only over `examples`; results summed (batches of `batch`).
  Evaluation evaluate(const std::vector<const Example*>& examples, int batch = 256);
  // The same over graphs (no dense rows, no targets).
  Evaluation evaluate(const std::vector<const Graph*>& graphs, int batch = 256);
  // One batch, added to `into`.
  void evaluate(const Batch& b, Evaluation& into);
  // The head's output at each graph's root (with a join head: per example):
  // class probabilities (softmax) or the prediction (squared), one vector
  // per graph (example).
  std::vector<std::vector<float>> predict(const std::vector<const Example*>& examples,
                                          int batch = 256);
  // The same over graphs.
  std::vector<std::vector<float>> predict(const std::vector<const Graph*>& graphs,
                                          int batch = 256);

  // The same model on another backend (data-parallel workers), with this
  // model's parameters, optimizer state and step counts.
  std::unique_ptr<Model> replica(int gpu) const;
  // Copies this model's parameters, optimizer state and step counts to `to`.
  void copy_state_to(Model& to) const;

 private:
  std::vector<std::vector<float>> predict_batch(const Batch& b);
  void init(const vertex::VertexFunction* join_head);
  ModelConfig cfg_;
  std::string cell_name_;
  vertex::VertexFunction cell_;
  int arity_ = 1;
  std::string join_name_;
  vertex::VertexFunction join_;
  Vocab vocab_;
  std::unique_ptr<ops::Backend<float>> backend_;
  std::unique_ptr<models::SentimentModel<float>> core_;
};

}  // namespace copse
