// A built-in synthetic sentiment treebank whose labels follow from the tree
// structure (negation scope), so a Tree-LSTM can learn it and a bag of words
// cannot. Deterministic from a seed; same LabeledTree form as the PTB reader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/ptb_reader.h"

namespace copse::models {

// The 60 words: 14 positive and 14 negative sentiment words (polarity +-1 or
// +-2), 24 neutral fillers (polarity 0), 3 negators ("not", "never", "n't")
// and 5 intensifiers ("very", "really", ...).
//
// Every node gets a label in 0..4 from its subtree alone:
//   phrase node:  integer score s in [-4, 4]; a leaf word's s is its polarity.
//   operator node: a negator or intensifier word, or two operators combined;
//                  it stands for x -> clip(sign * scale * x), scale in {1,2,4}.
//   combine(a, b): op + op        -> the composed operator;
//                  op + phrase s  -> phrase clip(sign * scale * s) (either side:
//                                    a negator flips the sibling it joins);
//                  phrase + phrase -> phrase clip(s_a + s_b).
//   clip to [-4, 4]; label = 0 if s <= -3, 1 if s in [-2,-1], 2 if s == 0,
//   3 if s in [1,2], 4 if s >= 3; an operator node has label 2.
// Nodes with more than two children fold left to right; a unary node copies.
// Hence "(not good) (bad)" is 1 but "not (good bad)" is 2: same words.
const std::vector<std::string>& synthetic_words();

// How the synthetic sentences are drawn.
struct SyntheticOptions {
  int min_length = 4;  // words per sentence, uniform in [min_length, max_length]
  int max_length = 20;  // (see min_length)
  // Draw each tree's root class uniformly first and resample the sentence
  // until it matches, so the five root classes are (nearly) equally frequent.
  bool balance_root_classes = true;
};

// n random binary trees. Words are drawn i.i.d. (45% fillers, 30% sentiment,
// 12% negators, 13% intensifiers); the bracketing splits each span at a
// uniform random point. Vertices are in post-order like the reader's output;
// graph.name is "synthetic-SEED:i" (i 1-based), graph.input is -1.
std::vector<LabeledTree> make_synthetic_treebank(int n, uint64_t seed,
                                                 const SyntheticOptions& options = {});

// Recomputes graph.label at every vertex by the rules above. Throws
// copse::Error naming the tree for a word outside synthetic_words() or a
// vertex order that is not children-before-parents.
void label_synthetic_tree(LabeledTree& tree);

// The three splits of one synthetic stream.
struct TreebankSplits {
  std::vector<LabeledTree> train;  // the first num_train trees
  std::vector<LabeledTree> dev;    // the next num_dev
  std::vector<LabeledTree> test;   // the last num_test
};

// One stream of num_train + num_dev + num_test trees from `seed`, cut in that
// order (default 4000 / 500 / 500).
TreebankSplits make_synthetic_splits(uint64_t seed, int num_train = 4000, int num_dev = 500,
                                     int num_test = 500, const SyntheticOptions& options = {});

}  // namespace copse::models
