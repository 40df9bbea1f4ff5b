// Tests for the synthetic compositional treebank: determinism, well-formed
// trees, labels by the documented rules, PTB round trip, structure-dependence.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "models/synthetic_treebank.h"

namespace copse::models {
namespace {

namespace fs = std::filesystem;

// Labels of a hand-bracketed tree under the synthetic rules (the labels in
// `ptb` are placeholders and get overwritten).
std::vector<int> labels_of(const std::string& ptb) {
  LabeledTree t = parse_ptb_line(ptb, "hand", 1, 10);
  label_synthetic_tree(t);
  return t.graph.label;
}

int root_label_of(const std::string& ptb) { return labels_of(ptb).back(); }

void expect_same_tree(const LabeledTree& a, const LabeledTree& b) {
  EXPECT_EQ(a.root, b.root);
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.graph.child_ptr, b.graph.child_ptr);
  EXPECT_EQ(a.graph.children, b.graph.children);
  EXPECT_EQ(a.graph.label, b.graph.label);
  EXPECT_EQ(a.graph.input, b.graph.input);
}

TEST(SyntheticTreebank, IsDeterministicInTheSeed) {
  const auto a = make_synthetic_treebank(200, 42);
  const auto b = make_synthetic_treebank(200, 42);
  const auto c = make_synthetic_treebank(200, 43);
  ASSERT_EQ(a.size(), 200u);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(to_ptb(a[i]), to_ptb(b[i]));
    EXPECT_EQ(a[i].graph.name, b[i].graph.name);
    differ += to_ptb(a[i]) != to_ptb(c[i]);
  }
  EXPECT_GT(differ, 190);
  EXPECT_EQ(a[4].graph.name, "synthetic-42:5");
}

TEST(SyntheticTreebank, TreesAreWellFormedBinaryPostOrder) {
  const std::vector<std::string>& words = synthetic_words();
  EXPECT_EQ(words.size(), 60u);
  const std::set<std::string> vocabulary(words.begin(), words.end());
  EXPECT_EQ(vocabulary.size(), words.size());
  for (const LabeledTree& t : make_synthetic_treebank(500, 7)) {
    const int n = t.num_vertices();
    ASSERT_EQ(n % 2, 1);
    const int length = (n + 1) / 2;
    EXPECT_GE(length, 4);
    EXPECT_LE(length, 20);
    EXPECT_EQ(t.root, n - 1);
    ASSERT_EQ(static_cast<int>(t.token.size()), n);
    ASSERT_EQ(t.graph.label.size(), t.token.size());
    for (int v = 0; v < n; ++v) {
      EXPECT_GE(t.graph.label[v], 0);
      EXPECT_LT(t.graph.label[v], 5);
      EXPECT_EQ(t.graph.input[v], -1);
      if (t.is_leaf(v)) {
        EXPECT_TRUE(vocabulary.count(t.token[v])) << t.token[v];
      } else {
        EXPECT_EQ(t.graph.num_children(v), 2);
        EXPECT_TRUE(t.token[v].empty());
        for (int e = t.graph.child_ptr[v]; e < t.graph.child_ptr[v + 1]; ++e)
          EXPECT_LT(t.graph.children[e], v);
      }
    }
  }
}

TEST(SyntheticTreebank, LabelsFollowTheRules) {
  // Leaves: polarity -> class (+-1 and +-2 share a class); operators are neutral.
  EXPECT_EQ(labels_of("(9 (9 good) (9 awful))"), (std::vector<int>{3, 1, 1}));  // 1 - 2 = -1
  EXPECT_EQ(labels_of("(9 (9 great) (9 excellent))"), (std::vector<int>{3, 3, 4}));
  EXPECT_EQ(root_label_of("(9 (9 not) (9 very))"), 2);
  // Intensifier doubles, negator flips, on either side.
  EXPECT_EQ(root_label_of("(9 (9 very) (9 good))"), 3);               // 2
  EXPECT_EQ(root_label_of("(9 (9 really) (9 great))"), 4);            // 4
  EXPECT_EQ(root_label_of("(9 (9 great) (9 not))"), 1);               // -2
  EXPECT_EQ(root_label_of("(9 (9 not) (9 (9 very) (9 great)))"), 0);  // -4
  EXPECT_EQ(root_label_of("(9 (9 (9 not) (9 very)) (9 great))"), 0);  // same, composed
  EXPECT_EQ(root_label_of("(9 (9 (9 not) (9 not)) (9 bad))"), 1);     // double negation
  // Sums clip to [-4, 4]: (great + great + great) - awful = 4 - 2.
  EXPECT_EQ(root_label_of("(9 (9 (9 great) (9 (9 great) (9 great))) (9 awful))"), 3);
  EXPECT_EQ(root_label_of("(9 (9 the) (9 movie))"), 2);
  // Three children fold left to right.
  EXPECT_EQ(root_label_of("(9 (9 not) (9 good) (9 bad))"), 1);  // (not good) + bad = -2
}

TEST(SyntheticTreebank, SameWordsDifferentStructureDifferentLabel) {
  // Negation scope: (not good) bad = -2 -> 1, but not (good bad) = 0 -> 2.
  EXPECT_EQ(root_label_of("(9 (9 (9 not) (9 good)) (9 bad))"), 1);
  EXPECT_EQ(root_label_of("(9 (9 not) (9 (9 good) (9 bad)))"), 2);
  // (not great) great = 0 -> 2, but not (great great) = -4 -> 0.
  EXPECT_EQ(root_label_of("(9 (9 (9 not) (9 great)) (9 great))"), 2);
  EXPECT_EQ(root_label_of("(9 (9 not) (9 (9 great) (9 great)))"), 0);

  // On generated data: rebracketing the same words (right-branching) changes
  // the root label of many sentences, so the words alone do not fix it.
  int changed = 0, total = 0;
  for (const LabeledTree& t : make_synthetic_treebank(1000, 5)) {
    std::vector<std::string> sentence;
    for (int v = 0; v < t.num_vertices(); ++v)
      if (t.is_leaf(v)) sentence.push_back(t.token[v]);
    std::string right;
    for (size_t i = 0; i + 1 < sentence.size(); ++i) right += "(2 (2 " + sentence[i] + ") ";
    right += "(2 " + sentence.back() + ")" + std::string(sentence.size() - 1, ')');
    changed += root_label_of(right) != t.graph.label[t.root];
    ++total;
  }
  EXPECT_GT(changed, total / 5);
}

TEST(SyntheticTreebank, RootClassesAreNotDegenerate) {
  for (bool balance : {true, false}) {
    SyntheticOptions options;
    options.balance_root_classes = balance;
    const auto trees = make_synthetic_treebank(5000, 11, options);
    std::vector<int> roots(5, 0), all(5, 0);
    for (const LabeledTree& t : trees) {
      ++roots[t.graph.label[t.root]];
      for (int label : t.graph.label) ++all[label];
    }
    for (int c = 0; c < 5; ++c) {
      EXPECT_GE(roots[c], 5000 * 5 / 100) << "class " << c << " balance " << balance;
      EXPECT_GT(all[c], 0);
    }
    if (balance) {
      for (int c = 0; c < 5; ++c) EXPECT_NEAR(roots[c], 1000, 150) << "class " << c;
    }
  }
}

TEST(SyntheticTreebank, StoredLabelsMatchRelabelling) {
  for (LabeledTree t : make_synthetic_treebank(300, 3)) {
    const std::vector<int> stored = t.graph.label;
    label_synthetic_tree(t);
    EXPECT_EQ(t.graph.label, stored);
  }
}

TEST(SyntheticTreebank, RoundTripsThroughPtbText) {
  const auto trees = make_synthetic_treebank(300, 9);
  const fs::path path =
      fs::path(::testing::TempDir()) / fmt::format("copse_synthetic_{}.txt", ::getpid());
  write_ptb_file(path.string(), trees);
  const std::vector<LabeledTree> back = read_ptb_file(path.string());
  fs::remove(path);
  ASSERT_EQ(back.size(), trees.size());
  for (size_t i = 0; i < trees.size(); ++i) {
    expect_same_tree(back[i], trees[i]);
    EXPECT_EQ(back[i].graph.name, fmt::format("{}:{}", path.string(), i + 1));
  }
}

TEST(SyntheticTreebank, SplitsAreSlicesOfOneStream) {
  const TreebankSplits s = make_synthetic_splits(21, 40, 5, 7);
  ASSERT_EQ(s.train.size(), 40u);
  ASSERT_EQ(s.dev.size(), 5u);
  ASSERT_EQ(s.test.size(), 7u);
  const auto all = make_synthetic_treebank(52, 21);
  expect_same_tree(s.train[0], all[0]);
  expect_same_tree(s.dev[0], all[40]);
  expect_same_tree(s.test[6], all[51]);
  const TreebankSplits d = make_synthetic_splits(1);
  EXPECT_EQ(d.train.size(), 4000u);
  EXPECT_EQ(d.dev.size(), 500u);
  EXPECT_EQ(d.test.size(), 500u);
}

TEST(SyntheticTreebank, RejectsUnknownWords) {
  LabeledTree t = parse_ptb_line("(2 (2 good) (2 zebra))", "hand", 1, 5);
  try {
    label_synthetic_tree(t);
    FAIL() << "expected copse::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "hand:1: vertex 1: 'zebra' is not a synthetic-treebank word");
  }
}

}  // namespace
}  // namespace copse::models
