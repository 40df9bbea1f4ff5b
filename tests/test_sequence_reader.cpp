// Sentence-per-line chains and PTB leaf sequences: structure, labels,
// vocabularies over every vertex, and the FILE:LINE:COL of bad input.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "models/sequence_reader.h"

namespace copse::models {
namespace {

std::string seq_error(const std::string& line) {
  try {
    parse_sequence_line(line, "s.txt", 4);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SequenceReader, ParsesLabelledAndUnlabelledLines) {
  LabeledTree t = parse_sequence_line("3\tgood  movie !\r", "s.txt", 4);
  ASSERT_EQ(t.num_vertices(), 3);
  EXPECT_EQ(t.token, (std::vector<std::string>{"good", "movie", "!"}));
  EXPECT_EQ(t.graph.label, (std::vector<int>{-1, -1, 3}));
  EXPECT_EQ(t.root, 2);
  EXPECT_EQ(t.graph.num_children(0), 0);
  EXPECT_EQ(t.graph.children, (std::vector<int>{0, 1}));  // vertex i's child is i-1
  EXPECT_EQ(t.graph.name, "s.txt:4");
  LabeledTree u = parse_sequence_line("just words", "s.txt", 4);
  EXPECT_EQ(u.graph.label, (std::vector<int>{-1, -1}));
  EXPECT_EQ(parse_sequence_line("one", "s.txt", 4).num_vertices(), 1);
}

TEST(SequenceReader, LocatesBadInput) {
  EXPECT_EQ(seq_error(""), "s.txt:4:1: empty line");
  EXPECT_EQ(seq_error("  \t "), "s.txt:4:1: empty line");
  EXPECT_EQ(seq_error("x\ta b"), "s.txt:4:1: label 'x' before the tab is not an integer");
  EXPECT_EQ(seq_error("\ta b"), "s.txt:4:1: label '' before the tab is not an integer");
  EXPECT_EQ(seq_error("7\ta b"), "s.txt:4:1: label 7 out of range [0, 5)");
  EXPECT_EQ(seq_error("2\t  "), "s.txt:4:5: label without tokens");
}

TEST(SequenceReader, PtbTreesBecomeLeafChainsWithTheRootLabel) {
  LabeledTree tree = parse_ptb_line("(4 (2 (2 A) (3 fine)) (3 film))", "t.txt", 1);
  LabeledTree chain = ptb_to_chain(tree);
  EXPECT_EQ(chain.token, (std::vector<std::string>{"A", "fine", "film"}));
  EXPECT_EQ(chain.graph.label, (std::vector<int>{-1, -1, 4}));
  EXPECT_EQ(chain.graph.name, "t.txt:1");
}

TEST(SequenceReader, VocabularyAndInputsCoverEveryVertex) {
  std::vector<LabeledTree> chains = {parse_sequence_line("b a b", "s", 1),
                                     parse_sequence_line("c b", "s", 2)};
  Vocab v = build_vocab_all_tokens(chains);
  ASSERT_EQ(v.size(), 4);
  EXPECT_EQ(v.token(1), "b");  // most frequent first
  EXPECT_EQ(v.token(2), "a");
  assign_all_inputs(v, chains[1]);
  EXPECT_EQ(chains[1].graph.input, (std::vector<int>{3, 1}));
  EXPECT_EQ(build_vocab_all_tokens(chains, 2).size(), 2);
}

}  // namespace
}  // namespace copse::models
