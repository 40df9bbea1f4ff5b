// The copse command-line tool: `copse train`, `copse eval`, `copse synth`. With
// `--transport mpi|nccl` it is one rank of an MPI job: it initialises MPI,
// and on an error ends the whole job (MPI_Abort) so that no rank waits on.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/error.h"
#include "common/version.h"
#include "models/train.h"

#ifdef COPSE_HAVE_MPI
#include <mpi.h>
#endif

namespace {

// Runs the parsed subcommand; returns the exit status, errors printed.
int run(CLI::App* train, CLI::App* eval, CLI::App* synth, const copse::models::TrainOptions& t,
        const copse::models::EvalOptions& e, const copse::models::SynthOptions& s) {
  try {
    if (*train) return copse::models::run_train(t);
    if (*eval) return copse::models::run_eval(e);
    if (*synth) return copse::models::run_synth(s);
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

}  // namespace

int main(int argc, char** argv) {
  // A write past a file-size limit fails with EFBIG (reported, old files kept)
  // instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"copse: batched training of dynamic neural networks (Tree-LSTM on SST)"};
  app.set_version_flag("--version", std::string("copse ") + copse::kVersion);
  app.require_subcommand(1);
  copse::models::TrainOptions t;
  auto* train = app.add_subcommand("train", "train a Tree-LSTM (SST if --data, else synthetic)");
  train->add_option("--task", t.task,
                    "sentiment (PTB trees) | relatedness (pairs of dependency trees, SICK layout)")
      ->capture_default_str();
  train->add_option("--data", t.data_dir,
                    "sentiment: directory with train.txt, dev.txt, test.txt (PTB trees); "
                    "relatedness: directory with train/, dev/, test/ in the SICK layout");
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
                    "data-parallel workers (BSP); --batch stays the global batch (default: 1 "
                    "with threads, the number of MPI ranks with mpi/nccl)")
      ->check(CLI::PositiveNumber);
  train->add_option("--transport", t.transport,
                    "thread (workers in this process) | mpi (one worker per rank: mpirun -np W "
                    "copse train --transport mpi ...) | nccl (as mpi, dense gradients on GPUs)")
      ->capture_default_str();
  train->add_option("--sync-timeout", t.sync_timeout,
                    "seconds a worker waits for the others at an exchange before the run fails")
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
                  "skip a batch whose loss, gradient or update is not finite (default: stop)");
  train->add_option("--max-skipped", t.max_skipped,
                    "with --skip-nonfinite: stop as diverged after N skipped batches in a row "
                    "(0: never)")
      ->capture_default_str();
  train->add_option("--staleness", t.staleness,
                    "with --workers: -1 = BSP (summed gradients), s >= 0 = SSP, at most s clocks "
                    "ahead of the slowest worker")
      ->capture_default_str();
  copse::models::EvalOptions e;
  auto* eval = app.add_subcommand(
      "eval", "root accuracy of a saved model on a PTB file (a pair model: Pearson r, Spearman "
              "rho and MSE on a SICK split's directory)");
  eval->add_option("--model", e.model, "model.safetensors")->required();
  eval->add_option("--data", e.data, "PTB file, or a SICK split's directory")->required();
  eval->add_option("--threads", e.threads, "threads")->capture_default_str();
  eval->add_option("--device", e.device, "cpu | cuda | auto")->capture_default_str();
  copse::models::SynthOptions s;
  auto* synth = app.add_subcommand(
      "synth", "write the built-in synthetic treebank as PTB files (train/dev/test.txt)");
  synth->add_option("--out", s.out, "output directory")->required();
  synth->add_option("--seed", s.seed, "random seed")->capture_default_str();
  synth->add_option("--train", s.train, "training trees")->capture_default_str();
  synth->add_option("--dev", s.dev, "development trees")->capture_default_str();
  synth->add_option("--test", s.test, "test trees")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    int rc = app.exit(err);
    return rc == 0 ? 0 : 2;
  }
  const bool use_mpi = *train && (t.transport == "mpi" || t.transport == "nccl");
#ifdef COPSE_HAVE_MPI
  if (use_mpi) {
    int provided = 0;
    // SSP over MPI serves its shard from a progress thread.
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      fmt::print(stderr, "copse: error: MPI_Init_thread failed\n");
      return 2;
    }
    int rc = run(train, eval, synth, t, e, s);
    // A rank that failed ends the job: the others may wait in a collective.
    if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
  }
#else
  static_cast<void>(use_mpi);  // run_train says that MPI is not built in
#endif
  return run(train, eval, synth, t, e, s);
}
