// CoNLL-U and SICK (toks + parents) readers: structure, labels, skipped lines,
// the exact FILE:LINE:COL of every kind of bad input, and all of the SICK data.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "models/conllu_reader.h"
#include "tests/test_files.h"

namespace copse::models {
namespace {

namespace fs = std::filesystem;

std::string conllu_error(const std::string& text) {
  try {
    parse_conllu(text, "d.conllu");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

using testutil::kids;

// ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC
std::string word(int id, const std::string& form, const std::string& head) {
  return std::to_string(id) + "\t" + form + "\t_\t_\t_\t_\t" + head + "\tdep\t_\t_\n";
}

TEST(ConlluReader, ParsesSentencesWithCommentsMultiwordAndEmptyNodes) {
  const std::string text = "# sent_id = 1\n# label = 3\n" + word(1, "The", "2") +
                           word(2, "cat", "3") + "3-4\tsat\t_\t_\t_\t_\t_\t_\t_\t_\n" +
                           word(3, "sat", "0") + "3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n" +
                           word(4, "down", "3") + "\n\n" + word(1, "Hi", "0") + word(2, "!", "1");
  auto trees = parse_conllu(text, "d.conllu");
  ASSERT_EQ(trees.size(), 2u);
  const LabeledTree& t = trees[0];
  ASSERT_EQ(t.num_vertices(), 4);
  EXPECT_EQ(t.root, 2);
  EXPECT_EQ(t.token, (std::vector<std::string>{"The", "cat", "sat", "down"}));
  EXPECT_EQ(kids(t, 2), (std::vector<int>{1, 3}));  // dependents in word order
  EXPECT_EQ(kids(t, 1), (std::vector<int>{0}));
  EXPECT_EQ(t.graph.label, (std::vector<int>{-1, -1, 3, -1}));
  EXPECT_EQ(t.graph.name, "d.conllu:1");
  EXPECT_EQ(trees[1].root, 0);
  EXPECT_EQ(trees[1].graph.label, (std::vector<int>{-1, -1}));
  EXPECT_EQ(trees[1].graph.name, "d.conllu:11");
  trees[0].graph.validate();
}

TEST(ConlluReader, ToleratesCrlfAndMissingFinalBlankLine) {
  auto trees = parse_conllu("1\ta\t_\t_\t_\t_\t0\t_\t_\t_\r\n", "d.conllu");
  ASSERT_EQ(trees.size(), 1u);
  EXPECT_EQ(trees[0].token[0], "a");
}

TEST(ConlluReader, LocatesEveryKindOfBadInput) {
  // Too few / too many columns.
  EXPECT_EQ(conllu_error("1\ta\t_\t_\t_\t_\t0\t_\t_\n"),
            "d.conllu:1:18: expected 10 tab-separated columns, found 9");
  EXPECT_EQ(conllu_error(word(1, "a", "0") + "2\tb\t_\t_\t_\t_\t1\t_\t_\t_\textra\n"),
            "d.conllu:2:21: expected 10 tab-separated columns, found 11");
  // Non-integer and out-of-range HEAD (COL of the HEAD column: 3+2*5+1 = 14 for "ab").
  EXPECT_EQ(conllu_error(word(1, "ab", "x")), "d.conllu:1:14: HEAD 'x' is not an integer");
  EXPECT_EQ(conllu_error(word(1, "a", "0") + word(2, "b", "3")),
            "d.conllu:2:13: HEAD 3 of word 2 out of range [0, 2]");
  EXPECT_EQ(conllu_error(word(1, "a", "0") + word(2, "b", "-1")),
            "d.conllu:2:13: HEAD -1 of word 2 out of range [0, 2]");
  // Several roots, no root, a cycle.
  EXPECT_EQ(conllu_error("# c\n" + word(1, "a", "0") + word(2, "b", "0")),
            "d.conllu:3:13: several roots: words 1 and 2 both have HEAD 0");
  EXPECT_EQ(conllu_error("# c\n" + word(1, "a", "2") + word(2, "b", "1")),
            "d.conllu:2:1: no root: no word has HEAD 0");
  EXPECT_EQ(conllu_error(word(1, "a", "0") + word(2, "b", "4") + word(3, "c", "2") +
                         word(4, "d", "3")),
            "d.conllu:2:13: HEAD creates a cycle: 2 -> 4 -> 3 -> 2");
  // An empty FORM (found with fuzz_conllu: it made a word without a token).
  EXPECT_EQ(conllu_error(word(1, "a", "0") + word(2, "", "1")),
            "d.conllu:2:3: empty FORM of word 2");
  // IDs out of sequence, bad labels, comments only, empty input.
  EXPECT_EQ(conllu_error(word(1, "a", "0") + word(3, "b", "1")),
            "d.conllu:2:1: word ID '3' out of sequence, expected 2");
  EXPECT_EQ(conllu_error("# label = x\n" + word(1, "a", "0")),
            "d.conllu:1:11: sentence label 'x' is not an integer");
  EXPECT_EQ(conllu_error("# label = 5\n" + word(1, "a", "0")),
            "d.conllu:1:11: sentence label 5 out of range [0, 5)");
  EXPECT_EQ(conllu_error(word(1, "a", "0") + "\n# only a comment\n"),
            "d.conllu:3:1: sentence has comments but no words");
  EXPECT_EQ(conllu_error(""), "d.conllu:1:1: empty file, no sentences");
  EXPECT_EQ(conllu_error("\n\n"), "d.conllu:1:1: no sentences");
  // The error is reported for the right sentence of several.
  EXPECT_EQ(conllu_error(word(1, "a", "0") + "\n" + word(1, "a", "0") + word(2, "b", "0")),
            "d.conllu:4:13: several roots: words 1 and 2 both have HEAD 0");
}

TEST(ConlluReader, ReadsFilesAndReportsUnreadablePaths) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("copse_conllu_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "a.conllu").string();
  std::ofstream(path, std::ios::binary) << word(1, "x", "0") << "\n";
  EXPECT_EQ(read_conllu_file(path).size(), 1u);
  try {
    read_conllu_file((dir / "missing").string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing: cannot open"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

std::string parents_error(const std::string& toks, const std::string& parents) {
  try {
    parse_parents_line(toks, parents, "a.toks", "a.parents", 7);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SickReader, ParsesOneLine) {
  LabeledTree t = parse_parents_line("A dog runs", "2 3 0", "a.toks", "a.parents", 7);
  EXPECT_EQ(t.root, 2);
  EXPECT_EQ(kids(t, 2), (std::vector<int>{1}));
  EXPECT_EQ(kids(t, 1), (std::vector<int>{0}));
  EXPECT_EQ(t.graph.name, "a.parents:7");
  EXPECT_EQ(parents_error("a b", "2 0 1"), "a.parents:7:5: more heads than the 2 words of a.toks:7");
  EXPECT_EQ(parents_error("a b c", "2 0"), "a.parents:7:4: 2 heads for the 3 words of a.toks:7");
  EXPECT_EQ(parents_error("a b", "2 z"), "a.parents:7:3: head 'z' is not an integer");
  EXPECT_EQ(parents_error("a b", "2 9"), "a.parents:7:3: HEAD 9 of word 2 out of range [0, 2]");
  EXPECT_EQ(parents_error("a b", "0 0"),
            "a.parents:7:3: several roots: words 1 and 2 both have HEAD 0");
  EXPECT_EQ(parents_error("a b", "2 1"), "a.parents:7:1: no root: no word has HEAD 0");
  EXPECT_EQ(parents_error("a b c", "0 3 2"), "a.parents:7:3: HEAD creates a cycle: 2 -> 3 -> 2");
  EXPECT_EQ(parents_error("", "0"), "a.toks:7:1: empty line");
}

TEST(SickReader, ParsesAllOfTheSickData) {
  const fs::path root = "/work/shared/data/sick";
  if (!fs::exists(root / "train" / "a.parents")) GTEST_SKIP() << "no SICK data at " << root;
  long trees = 0, words = 0;
  for (const char* split : {"train", "dev", "test"}) {
    for (const char* side : {"a", "b"}) {
      const fs::path toks = root / split / (std::string(side) + ".toks");
      const fs::path parents = root / split / (std::string(side) + ".parents");
      if (!fs::exists(toks)) continue;
      for (const LabeledTree& t : read_parents_files(toks.string(), parents.string())) {
        t.graph.validate();
        ++trees;
        words += t.num_vertices();
      }
    }
  }
  EXPECT_GE(trees, 4500 + 500 + 4927);
  std::printf("  SICK: %ld dependency trees, %ld words\n", trees, words);
}

}  // namespace
}  // namespace copse::models
