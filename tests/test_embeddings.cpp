// Tests for the GloVe loader: rows filled for vocab words only, and located
// errors for bad widths, bad numbers and unreadable files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/error.h"
#include "models/embeddings.h"
#include "tests/test_files.h"

namespace copse::models {
namespace {

class EmbeddingsTest : public testutil::TempDirTest {
 protected:
  EmbeddingsTest() : TempDirTest("copse_glove") {}
  void SetUp() override {
    TempDirTest::SetUp();
    for (const char* w : {"the", "cat", "caf\xC3\xA9", "dog"}) vocab_.add(w);
  }

  // Table of vocab_.size() rows of width 3, poisoned with NaN.
  std::vector<float> poisoned() {
    return std::vector<float>(vocab_.size() * 3, std::numeric_limits<float>::quiet_NaN());
  }

  std::string load_error(const std::string& path, int dim = 3) {
    std::vector<float> table = poisoned();
    try {
      load_glove(path, vocab_, dim, table.data());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  Vocab vocab_;  // <unk>=0 the=1 cat=2 café=3 dog=4
};

TEST_F(EmbeddingsTest, FillsRowsOfKnownWords) {
  const std::string path = write_file("glove.txt",
                                      "the 0.5 -1 2.25\r\n"
                                      "zebra 9 9 9\r\n"
                                      "caf\xC3\xA9 1e-3 -2.5E+2 0\n"
                                      "the 7 7 7\n"    // repeated word: first vector kept
                                      "cat\t3  4 5");  // tabs, double space, no final newline
  std::vector<float> table = poisoned();
  EXPECT_EQ(load_glove(path, vocab_, 3, table.data()), 3);
  EXPECT_EQ(table[1 * 3 + 0], 0.5f);
  EXPECT_EQ(table[1 * 3 + 1], -1.0f);
  EXPECT_EQ(table[1 * 3 + 2], 2.25f);
  EXPECT_EQ(table[2 * 3 + 0], 3.0f);
  EXPECT_EQ(table[2 * 3 + 2], 5.0f);
  EXPECT_EQ(table[3 * 3 + 0], 1e-3f);
  EXPECT_EQ(table[3 * 3 + 1], -250.0f);
  for (int row : {0, 4})  // <unk> and dog: not in the file, left alone
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(std::isnan(table[row * 3 + k])) << row;
}

TEST_F(EmbeddingsTest, WrongWidthNamesLineAndColumn) {
  // Too few: column one past the end of "dog 1 2" (7 bytes).
  const std::string few = write_file("few.txt", "the 1 2 3\ndog 1 2\n");
  EXPECT_EQ(load_error(few), few + ":2:8: expected 3 values, found 2");
  // Too many: column of the fourth value in "zebra 1 2 3 44" (words not in
  // the vocab are checked too).
  const std::string many = write_file("many.txt", "the 1 2 3\nzebra 1 2 3 44\r\n");
  EXPECT_EQ(load_error(many), many + ":2:13: expected 3 values, found 4");
  // A word2vec-style "count dim" header line.
  const std::string header = write_file("header.txt", "400000 3\nthe 1 2 3\n");
  EXPECT_EQ(load_error(header), header + ":1:9: expected 3 values, found 1");
}

TEST_F(EmbeddingsTest, NonNumericValue) {
  const std::string path = write_file("nan.txt", "the 1 2 3\ncat 1 x 3\n");
  EXPECT_EQ(load_error(path), path + ":2:7: expected a number, found 'x'");
  const std::string suffix = write_file("suffix.txt", "cat 1.5abc 2 3\n");
  EXPECT_EQ(load_error(suffix), suffix + ":1:5: expected a number, found '1.5abc'");
}

TEST_F(EmbeddingsTest, EmptyLineAndBadDim) {
  const std::string path = write_file("gap.txt", "the 1 2 3\n\ncat 1 2 3\n");
  EXPECT_EQ(load_error(path), path + ":2:1: empty line");
  const std::string ok = write_file("ok.txt", "the 1 2 3\n");
  EXPECT_EQ(load_error(ok, 0), ok + ": load_glove: expected_dim must be positive, got 0");
}

TEST_F(EmbeddingsTest, UnreadablePath) {
  const std::string missing = (dir_ / "missing.txt").string();
  EXPECT_EQ(load_error(missing), missing + ": cannot open: No such file or directory");
}

}  // namespace
}  // namespace copse::models
