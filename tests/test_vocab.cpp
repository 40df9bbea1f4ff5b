// Tests for Vocab: ordering, <unk>, input assignment and the text file format.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "models/vocab.h"
#include "tests/test_files.h"

namespace copse::models {
namespace {

class VocabTest : public testutil::TempDirTest {
 protected:
  VocabTest() : TempDirTest("copse_vocab") {}

  std::string load_error(const std::string& path) {
    try {
      Vocab::load(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

std::vector<LabeledTree> sample_trees() {
  return {parse_ptb_line("(2 (2 (2 the) (3 cat)) (2 (2 the) (1 dog)))", "f", 1, 5),
          parse_ptb_line("(2 (2 the) (2 (2 dog) (2 caf\xC3\xA9)))", "f", 2, 5)};
}

TEST_F(VocabTest, BuildsByCountThenBytes) {
  const Vocab v = Vocab::build(sample_trees());
  ASSERT_EQ(v.size(), 5);
  EXPECT_EQ(v.token(0), "<unk>");
  EXPECT_EQ(v.token(1), "the");          // 3 times
  EXPECT_EQ(v.token(2), "dog");          // 2 times
  EXPECT_EQ(v.token(3), "caf\xC3\xA9");  // once each, byte order: "caf" < "cat"
  EXPECT_EQ(v.token(4), "cat");
  EXPECT_EQ(v.lookup("dog"), 2);
  EXPECT_EQ(v.lookup("zebra"), Vocab::kUnkId);
  EXPECT_THROW(v.token(5), Error);
  EXPECT_THROW(v.token(-1), Error);
}

TEST_F(VocabTest, MinCountDropsRareWords) {
  const Vocab v = Vocab::build(sample_trees(), 2);
  EXPECT_EQ(v.size(), 3);
  EXPECT_EQ(v.lookup("cat"), Vocab::kUnkId);
}

TEST_F(VocabTest, AssignsInputsToLeavesOnly) {
  std::vector<LabeledTree> trees = sample_trees();
  const Vocab v = Vocab::build(trees, 2);
  v.assign_inputs(trees[0]);
  // Post-order: the(0) cat(1) [2] the(3) dog(4) [5] [6].
  EXPECT_EQ(trees[0].graph.input, (std::vector<int>{1, 0, -1, 1, 2, -1, -1}));
}

TEST_F(VocabTest, SaveLoadRoundTrip) {
  const Vocab v = Vocab::build(sample_trees());
  const std::string path = (dir_ / "vocab.txt").string();
  v.save(path);
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "<unk>\nthe\ndog\ncaf\xC3\xA9\ncat\n");
  const Vocab w = Vocab::load(path);
  ASSERT_EQ(w.size(), v.size());
  for (int i = 0; i < v.size(); ++i) EXPECT_EQ(w.token(i), v.token(i));
  EXPECT_EQ(Vocab::load(write_file("crlf.txt", "<unk>\r\na\r\nb")).lookup("b"), 2);
}

TEST_F(VocabTest, LoadErrors) {
  const std::string no_unk = write_file("no_unk.txt", "a\nb\n");
  EXPECT_EQ(load_error(no_unk), no_unk + ":1:1: expected '<unk>' on the first line, found 'a'");
  const std::string dup = write_file("dup.txt", "<unk>\na\nb\na\n");
  EXPECT_EQ(load_error(dup), dup + ":4:1: duplicate word 'a'");
  const std::string gap = write_file("gap.txt", "<unk>\na\n\nb\n");
  EXPECT_EQ(load_error(gap), gap + ":3:1: empty line");
  const std::string empty = write_file("empty.txt", "");
  EXPECT_EQ(load_error(empty), empty + ":1:1: empty file, expected '<unk>' on the first line");
  const std::string missing = (dir_ / "missing.txt").string();
  EXPECT_EQ(load_error(missing), missing + ": cannot open: No such file or directory");
}

}  // namespace
}  // namespace copse::models
