// Tests for the PTB bracket-tree reader: structure, labels, UTF-8 words, and
// the exact FILE:LINE:COL of every kind of bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "models/ptb_reader.h"
#include "tests/test_files.h"

namespace copse::models {
namespace {

class PtbReaderTest : public testutil::TempDirTest {
 protected:
  PtbReaderTest() : TempDirTest("copse_ptb") {}
};

// The message of the copse::Error that parse_ptb_line throws ("" if none).
std::string parse_error(const std::string& line, int num_labels = 5) {
  try {
    parse_ptb_line(line, "t.txt", 3, num_labels);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string file_error(const std::string& path) {
  try {
    read_ptb_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

using testutil::kids;

TEST_F(PtbReaderTest, ParsesPostOrderWithLabelsAndWords) {
  const LabeledTree t = parse_ptb_line("(3 (2 (2 The) (1 Rock)) (4 rocks))", "f.txt", 7, 5);
  ASSERT_EQ(t.num_vertices(), 5);
  EXPECT_EQ(t.root, 4);
  EXPECT_EQ(t.graph.name, "f.txt:7");
  EXPECT_EQ(t.token, (std::vector<std::string>{"The", "Rock", "", "rocks", ""}));
  EXPECT_EQ(t.graph.label, (std::vector<int>{2, 1, 2, 4, 3}));
  EXPECT_EQ(t.graph.input, (std::vector<int>(5, -1)));
  EXPECT_EQ(t.graph.child_ptr, (std::vector<int>{0, 0, 0, 2, 2, 4}));
  EXPECT_EQ(kids(t, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(kids(t, 4), (std::vector<int>{2, 3}));
  EXPECT_TRUE(t.is_leaf(0));
  EXPECT_FALSE(t.is_leaf(4));
}

TEST_F(PtbReaderTest, KeepsUtf8AndPunctuationWordsAsBytes) {
  const LabeledTree t =
      parse_ptb_line("(2 (3 caf\xC3\xA9) (2 (2 ``) (2 'S)) (1 na\xC3\xAFve-ish))", "f", 1, 5);
  ASSERT_EQ(t.num_vertices(), 6);
  EXPECT_EQ(t.token[0], "caf\xC3\xA9");
  EXPECT_EQ(t.token[1], "``");
  EXPECT_EQ(t.token[2], "'S");
  EXPECT_EQ(t.token[4], "na\xC3\xAFve-ish");
  EXPECT_EQ(kids(t, 5), (std::vector<int>{0, 3, 4}));  // three children are fine
}

TEST_F(PtbReaderTest, AcceptsUnaryNodesTabsAndExtraSpaces) {
  const LabeledTree t = parse_ptb_line("  (1\t(0  (4 a ) )  )\r", "f", 1, 5);
  ASSERT_EQ(t.num_vertices(), 3);
  EXPECT_EQ(t.graph.label, (std::vector<int>{4, 0, 1}));
  EXPECT_EQ(kids(t, 1), (std::vector<int>{0}));
  EXPECT_EQ(kids(t, 2), (std::vector<int>{1}));
}

TEST_F(PtbReaderTest, ParsesVeryDeepTreesWithoutRecursion) {
  const int depth = 200000;
  std::string line;
  for (int i = 0; i < depth; ++i) line += "(1 ";
  line += "(2 x)";
  line += std::string(depth, ')');
  const LabeledTree t = parse_ptb_line(line, "deep", 1, 5);
  ASSERT_EQ(t.num_vertices(), depth + 1);
  EXPECT_EQ(t.root, depth);
  EXPECT_EQ(t.token[0], "x");
  EXPECT_EQ(kids(t, depth), (std::vector<int>{depth - 1}));
}

TEST_F(PtbReaderTest, ReadsFilesWithCrlfAndNoFinalNewline) {
  const std::string path = write_file("crlf.txt", "(2 (2 a) (3 b))\r\n(4 c)\r\n(0 (1 d) (2 e))");
  const std::vector<LabeledTree> trees = read_ptb_file(path);
  ASSERT_EQ(trees.size(), 3u);
  EXPECT_EQ(trees[0].token[1], "b");
  EXPECT_EQ(trees[1].token[0], "c");
  EXPECT_EQ(trees[2].token[1], "e");
  EXPECT_EQ(trees[2].graph.name, path + ":3");
  EXPECT_EQ(trees[2].graph.label, (std::vector<int>{1, 2, 0}));
}

TEST_F(PtbReaderTest, ToPtbInvertsTheParser) {
  const std::string line = "(3 (2 (2 The) (1 Rock)) (4 (0 x) (1 y) (2 z)))";
  EXPECT_EQ(to_ptb(parse_ptb_line(line, "f", 1, 5)), line);
}

// Columns below are counted by hand, 1-based, in bytes.
TEST_F(PtbReaderTest, UnbalancedBrackets) {
  EXPECT_EQ(parse_error("(2 a))"), "t.txt:3:6: unexpected ')': more ')' than '('");
  EXPECT_EQ(parse_error("(2 (2 a)"),
            "t.txt:3:9: missing ')' at end of line: '(' at column 1 is not closed");
  EXPECT_EQ(parse_error("(2 (2 a) (3 (1 b)\r"),  // the innermost open '(' is named
            "t.txt:3:18: missing ')' at end of line: '(' at column 10 is not closed");
  EXPECT_EQ(parse_error("(2 (3 (1 b)"),
            "t.txt:3:12: missing ')' at end of line: '(' at column 4 is not closed");
  EXPECT_EQ(parse_error(")"), "t.txt:3:1: expected '(' to start a tree, found ')'");
}

TEST_F(PtbReaderTest, MissingLabel) {
  EXPECT_EQ(parse_error("(2 ( (2 a)))"), "t.txt:3:4: missing label after '('");
  EXPECT_EQ(parse_error("(2 (2 a) ())"), "t.txt:3:10: missing label after '('");
}

TEST_F(PtbReaderTest, NonIntegerLabel) {
  EXPECT_EQ(parse_error("(2 (x a) (2 b))"), "t.txt:3:5: label 'x' is not an integer");
  EXPECT_EQ(parse_error("(2.5 a)"), "t.txt:3:2: label '2.5' is not an integer");
  EXPECT_EQ(parse_error("(+1 a)"), "t.txt:3:2: label '+1' is not an integer");
}

TEST_F(PtbReaderTest, LabelOutOfRange) {
  EXPECT_EQ(parse_error("(2 (2 a) (5 b))"), "t.txt:3:11: label 5 out of range [0, 5)");
  EXPECT_EQ(parse_error("(-1 a)"), "t.txt:3:2: label -1 out of range [0, 5)");
  EXPECT_EQ(parse_error("(99999999999999999999 a)"),
            "t.txt:3:2: label 99999999999999999999 out of range [0, 5)");
  EXPECT_EQ(parse_error("(3 a)", 3), "t.txt:3:2: label 3 out of range [0, 3)");
  EXPECT_EQ(parse_error("(3 a)", 4), "");
}

TEST_F(PtbReaderTest, NodeWithoutChildrenOrWord) {
  EXPECT_EQ(parse_error("(2 (3) (2 b))"), "t.txt:3:4: node has neither a word nor subtrees");
  EXPECT_EQ(parse_error("(2)"), "t.txt:3:1: node has neither a word nor subtrees");
}

TEST_F(PtbReaderTest, WordsAndSubtreesDoNotMix) {
  EXPECT_EQ(parse_error("(2 a b)"), "t.txt:3:6: expected ')' after the word 'a', found 'b'");
  EXPECT_EQ(parse_error("(2 (2 a) b)"), "t.txt:3:10: unexpected word 'b' in a node with subtrees");
  EXPECT_EQ(
      parse_error("(2 a (2 b))"),
      "t.txt:3:6: unexpected '(' after the word 'a': a node has a word or subtrees, not both");
}

TEST_F(PtbReaderTest, TextAfterTheTree) {
  EXPECT_EQ(parse_error("(2 a) b"), "t.txt:3:7: unexpected text after the tree: 'b'");
  EXPECT_EQ(parse_error("(2 a)  (2 b)"), "t.txt:3:8: unexpected text after the tree: '(2 b)'");
  EXPECT_EQ(parse_error("x (2 a)"), "t.txt:3:1: expected '(' to start a tree, found 'x'");
}

TEST_F(PtbReaderTest, ColumnsCountBytesOfUtf8Words) {
  // "(2 (2 caf" is 9 bytes, "\xC3\xA9" 2 more, ")" 12, " " 13, "(" 14, "7" 15.
  EXPECT_EQ(parse_error("(2 (2 caf\xC3\xA9) (7 b))"), "t.txt:3:15: label 7 out of range [0, 5)");
}

TEST_F(PtbReaderTest, EmptyLineInsideTheFile) {
  const std::string path = write_file("gap.txt", "(2 a)\n(3 b)\n\n(4 c)\n");
  EXPECT_EQ(file_error(path), path + ":3:1: empty line");
  const std::string blank = write_file("blank.txt", "(2 a)\n \t\r\n");
  EXPECT_EQ(file_error(blank), blank + ":2:1: empty line");
  const std::string trailing = write_file("trailing.txt", "(2 a)\n\n");
  EXPECT_EQ(file_error(trailing), trailing + ":2:1: empty line");
}

TEST_F(PtbReaderTest, ErrorsInFilesNameTheLine) {
  const std::string path = write_file("bad.txt", "(2 a)\r\n(3 b)\r\n(1 (2 c) (9 d))\r\n");
  EXPECT_EQ(file_error(path), path + ":3:11: label 9 out of range [0, 5)");
}

TEST_F(PtbReaderTest, EmptyFile) {
  const std::string path = write_file("empty.txt", "");
  EXPECT_EQ(file_error(path), path + ":1:1: empty file, no trees");
}

TEST_F(PtbReaderTest, UnreadablePath) {
  const std::string missing = (dir_ / "no_such.txt").string();
  EXPECT_EQ(file_error(missing), missing + ": cannot open: No such file or directory");
  EXPECT_EQ(file_error(dir_.string()), dir_.string() + ": cannot read: Is a directory");
}

}  // namespace
}  // namespace copse::models
