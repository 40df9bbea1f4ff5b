// What `copse train` trains on and how it scores a model: the loop of
// models/train.cpp is the same for every task.
//   sentiment    SST-style PTB trees (or the synthetic treebank); a softmax
//                at every labelled vertex; dev/test root accuracy, fine and
//                binary; the best model by dev fine accuracy.
//   relatedness  pairs of dependency trees in the SICK layout of Tai et al.
//                (DIR/{train,dev,test}/{a,b}.toks, {a,b}.parents, sim.txt)
//                joined by the similarity head (models/join_head.h) with a KL
//                loss against the score's sparse distribution; dev/test
//                Pearson r, Spearman rho and MSE of the expected score; the
//                best model by dev Pearson r.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/model.h"
#include "models/ptb_reader.h"
#include "models/train.h"
#include "models/trainer.h"
#include "models/vocab.h"

namespace copse::models {

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual const char* unit() const = 0;   // what one training item is: "trees", "pairs"
  virtual std::size_t train_size() const = 0;
  virtual std::string describe() const = 0;  // the data, for the first line of the log
  const Vocab& vocab() const { return vocab_; }
  // The model this task trains: the cell, its head, and the vocabulary.
  virtual Model make_model(const TrainOptions& o, ModelConfig mc) const = 0;
  // One step over items order[begin, end) of the training set.
  virtual StepResult step(Trainer& t, const std::vector<int>& order, std::size_t begin,
                          std::size_t end) const = 0;
  // The graphs of those items (the SSP walk takes graphs); throws if the
  // task's items are not single graphs.
  virtual std::vector<const Graph*> graphs(const std::vector<int>& order, std::size_t begin,
                                           std::size_t end) const = 0;
  // Scores dev and test into `m`; returns the dev score the best model is
  // chosen by, and sets `line` to the figures the log prints.
  virtual double evaluate(Trainer& t, Model& model, nlohmann::json& m, std::string& line) = 0;
  virtual const char* best_name() const = 0;  // "dev fine", "dev pearson"

 protected:
  Vocab vocab_;
};

// Loads the task's data (o.task: sentiment | relatedness). Throws
// copse::Error naming the file and line of bad input.
std::unique_ptr<TrainTask> make_task(const TrainOptions& o);

// A split of the SICK layout: DIR/{a,b}.toks, {a,b}.parents, sim.txt, line k
// of each for pair k. Errors name the file and line ("FILE:LINE:COL: ..."
// for the trees, "sim.txt:LINE: ..." for a score that is not a number in
// [1, 5], and a file with another number of lines).
struct SickSplit {
  std::vector<LabeledTree> a, b;
  std::vector<double> score;
};
SickSplit read_sick_split(const std::string& dir);
// The pairs of a split as examples (inputs from `vocab`, every word a
// vertex input; grow_vocab: add the split's words first).
std::vector<Example> sick_examples(SickSplit& s, Vocab& vocab, bool grow_vocab);

// A pair model's expected scores r^T p (r = 1..5) on `pairs` against the
// true scores: Pearson r, Spearman rho, mean squared error.
struct RelatednessScores {
  double pearson = 0, spearman = 0, mse = 0;
  long pairs = 0;
};
RelatednessScores score_pairs(Model& model, const std::vector<Example>& pairs,
                              const std::vector<double>& truth);

// Pearson r and Spearman rho (ranks with ties averaged) of two series.
double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace copse::models
