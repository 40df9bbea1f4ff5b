// The copse command-line tool: `copse train`, `copse eval`.
#include <csignal>
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/error.h"
#include "models/train.h"

int main(int argc, char** argv) {
  // A write past a file-size limit fails with EFBIG (reported, old files kept)
  // instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"copse: batched training of dynamic neural networks (Tree-LSTM on SST)"};
  app.require_subcommand(1);
  copse::models::TrainOptions t;
  auto* train = app.add_subcommand("train", "train a Tree-LSTM (SST if --data, else synthetic)");
  train->add_option("--data", t.data_dir, "directory with train.txt, dev.txt, test.txt (PTB trees)");
  train->add_option("--model", t.model,
                    "tree-lstm | child-sum-lstm | tree-gru | tree-fc | dag-gated (over the trees); "
                    "lstm | gru | lstm2 (over the sentences)")
      ->capture_default_str();
  train->add_option("--epochs", t.epochs, "epochs")->capture_default_str();
  train->add_option("--batch", t.batch, "trees per minibatch")->capture_default_str();
  train->add_option("--embed", t.embed, "word vector size")->capture_default_str();
  train->add_option("--hidden", t.hidden, "Tree-LSTM state size")->capture_default_str();
  train->add_option("--optimizer", t.optimizer, "adagrad | adam | sgd")->capture_default_str();
  train->add_option("--lr", t.lr, "learning rate")->capture_default_str();
  train->add_option("--l2", t.l2, "L2 regularisation")->capture_default_str();
  train->add_option("--clip", t.clip, "global gradient-norm clip (0: off)")->capture_default_str();
  train->add_option("--embeddings", t.embeddings, "GloVe text file (words + embed values a line)");
  train->add_option("--threads", t.threads, "threads for the math, per worker")->capture_default_str();
  train->add_option("--device", t.device, "cpu | cuda | auto (the GPU when one is usable)")
      ->capture_default_str();
  train->add_flag("--tf32", t.tf32, "cuda: allow TF32 tensor-core GEMMs (faster, less exact)");
  train->add_option("--workers", t.workers,
                    "data-parallel workers (threads, BSP); --batch stays the global batch")
      ->capture_default_str();
  train->add_option("--seed", t.seed, "random seed")->capture_default_str();
  train->add_option("--out", t.out, "output directory")->capture_default_str();
  train->add_flag("--quiet", t.quiet, "no per-epoch lines");
  train->add_option("--checkpoint-every", t.checkpoint_every,
                    "full training state to OUT/checkpoint.safetensors every N steps "
                    "(0: at the end of each epoch only)")
      ->capture_default_str();
  train->add_option("--resume", t.resume, "continue the run in DIR from its checkpoint");
  train->add_flag("--skip-nonfinite", t.skip_nonfinite,
                  "skip a batch whose loss or gradient is not finite (default: stop)");
  train->add_option("--staleness", t.staleness,
                    "with --workers: -1 = BSP (summed gradients), s >= 0 = SSP, at most s clocks "
                    "ahead of the slowest worker")
      ->capture_default_str();
  copse::models::EvalOptions e;
  auto* eval = app.add_subcommand("eval", "root accuracy of a saved model on a PTB file");
  eval->add_option("--model", e.model, "model.safetensors")->required();
  eval->add_option("--data", e.data, "PTB file")->required();
  eval->add_option("--threads", e.threads, "threads")->capture_default_str();
  eval->add_option("--device", e.device, "cpu | cuda | auto")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    int rc = app.exit(err);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*train) return copse::models::run_train(t);
    if (*eval) return copse::models::run_eval(e);
  } catch (const copse::Error& err) {
    fmt::print(stderr, "copse: error: {}\n", err.what());
    return 2;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "copse: error: out of memory\n");
    return 3;
  } catch (const std::exception& err) {
    fmt::print(stderr, "copse: internal error: {}\n", err.what());
    return 70;
  }
  return 0;
}
