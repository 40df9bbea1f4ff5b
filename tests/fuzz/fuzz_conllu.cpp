// libFuzzer target: the dependency-tree readers on arbitrary bytes. The input
// is read as CoNLL-U text (parse_conllu, and read_conllu_file on it as a
// file), then split at its first NUL byte into a SICK toks part and a parents
// part (parse_parents_line on the two as one line each, read_parents_files on
// them as two files). A tree that reads must be a tree over its words: one
// parent per word but the root, children in word order, label only on the
// root, a non-empty token on every vertex (so assign_all_inputs gives every
// vertex an input).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/conllu_reader.h"
#include "models/sequence_reader.h"
#include "tests/fuzz/fuzz_checks.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

using copse::models::LabeledTree;

using copse::fuzz::validates;

void check_tree(const LabeledTree& t, int num_labels, bool sick) {
  const auto& g = t.graph;
  const int n = t.num_vertices();
  COPSE_FUZZ_CHECK(n > 0);
  COPSE_FUZZ_CHECK(static_cast<int>(t.token.size()) == n);
  COPSE_FUZZ_CHECK(static_cast<int>(g.label.size()) == n);
  COPSE_FUZZ_CHECK(t.root >= 0 && t.root < n);
  COPSE_FUZZ_CHECK(!g.name.empty());
  COPSE_FUZZ_CHECK(validates(g));
  std::vector<int> parents(n, 0);
  for (int v = 0; v < n; ++v) {
    COPSE_FUZZ_CHECK(g.input[v] == -1);
    COPSE_FUZZ_CHECK(!t.token[v].empty());
    if (sick) COPSE_FUZZ_CHECK(t.token[v].find(' ') == std::string::npos);
    if (v == t.root) {
      COPSE_FUZZ_CHECK(g.label[v] >= -1 && g.label[v] < num_labels);
      if (sick) COPSE_FUZZ_CHECK(g.label[v] == -1);
    } else {
      COPSE_FUZZ_CHECK(g.label[v] == -1);
    }
    for (int e = g.child_ptr[v]; e < g.child_ptr[v + 1]; ++e) {
      ++parents[g.children[e]];
      if (e > g.child_ptr[v]) COPSE_FUZZ_CHECK(g.children[e - 1] < g.children[e]);
    }
  }
  for (int v = 0; v < n; ++v) COPSE_FUZZ_CHECK(parents[v] == (v == t.root ? 0 : 1));
}

void check_trees(std::vector<LabeledTree> trees, int num_labels, bool sick) {
  COPSE_FUZZ_CHECK(!trees.empty());
  for (const auto& t : trees) check_tree(t, num_labels, sick);
  copse::fuzz::check_all_inputs_assignable(trees);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  constexpr int kNumLabels = 5;
  copse::fuzz::expect_ok_or_error(
      [&] { check_trees(copse::models::parse_conllu(bytes, "fuzz.conllu", kNumLabels), kNumLabels, false); });
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error(
      [&] { check_trees(copse::models::read_conllu_file(path, kNumLabels), kNumLabels, false); });

  // SICK: toks before the first NUL, parents after it.
  const size_t nul = bytes.find('\0');
  const std::string_view toks = bytes.substr(0, nul);
  const std::string_view parents =
      nul == std::string_view::npos ? std::string_view() : bytes.substr(nul + 1);
  copse::fuzz::expect_ok_or_error([&] {
    std::vector<LabeledTree> one;
    one.push_back(copse::models::parse_parents_line(toks, parents, "a.toks", "a.parents", 1));
    check_trees(std::move(one), kNumLabels, true);
  });
  const std::string& toks_path =
      copse::fuzz::write_input_file(reinterpret_cast<const uint8_t*>(toks.data()), toks.size(), 0);
  const std::string& parents_path = copse::fuzz::write_input_file(
      reinterpret_cast<const uint8_t*>(parents.data()), parents.size(), 1);
  copse::fuzz::expect_ok_or_error([&] {
    check_trees(copse::models::read_parents_files(toks_path, parents_path), kNumLabels, true);
  });
  return 0;
}
