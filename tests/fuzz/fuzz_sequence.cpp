// libFuzzer target: the sentence-per-line reader on arbitrary bytes, one line
// (parse_sequence_line) and a whole file (read_sequence_file); and the PTB
// leaves as a chain (ptb_to_chain) when the bytes parse as a PTB line. A line
// that reads must be a chain (vertex i's only child is i-1, root last) over
// non-empty tokens without spaces or tabs, labelled on the root only.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/sequence_reader.h"
#include "tests/fuzz/fuzz_checks.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

using copse::models::LabeledTree;

void check_chain(const LabeledTree& t, int num_labels) {
  const auto& g = t.graph;
  const int n = t.num_vertices();
  COPSE_FUZZ_CHECK(n > 0);
  COPSE_FUZZ_CHECK(static_cast<int>(t.token.size()) == n);
  COPSE_FUZZ_CHECK(static_cast<int>(g.label.size()) == n);
  COPSE_FUZZ_CHECK(t.root == n - 1);
  COPSE_FUZZ_CHECK(!g.name.empty());
  for (int v = 0; v < n; ++v) {
    COPSE_FUZZ_CHECK(g.num_children(v) == (v == 0 ? 0 : 1));
    if (v > 0) COPSE_FUZZ_CHECK(g.children[g.child_ptr[v]] == v - 1);
    COPSE_FUZZ_CHECK(g.input[v] == -1);
    COPSE_FUZZ_CHECK(!t.token[v].empty());
    COPSE_FUZZ_CHECK(t.token[v].find_first_of(" \t") == std::string::npos);
    if (v == t.root)
      COPSE_FUZZ_CHECK(g.label[v] >= -1 && g.label[v] < num_labels);
    else
      COPSE_FUZZ_CHECK(g.label[v] == -1);
  }
}

void check_chains(std::vector<LabeledTree> chains, int num_labels) {
  COPSE_FUZZ_CHECK(!chains.empty());
  for (const auto& t : chains) check_chain(t, num_labels);
  copse::fuzz::check_all_inputs_assignable(chains);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  constexpr int kNumLabels = 5;
  copse::fuzz::expect_ok_or_error([&] {
    std::vector<LabeledTree> one;
    one.push_back(copse::models::parse_sequence_line(bytes, "fuzz.txt", 1, kNumLabels));
    check_chains(std::move(one), kNumLabels);
  });
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error(
      [&] { check_chains(copse::models::read_sequence_file(path, kNumLabels), kNumLabels); });
  copse::fuzz::expect_ok_or_error([&] {
    const LabeledTree tree = copse::models::parse_ptb_line(bytes, "fuzz.ptb", 1, kNumLabels);
    std::vector<LabeledTree> one;
    one.push_back(copse::models::ptb_to_chain(tree));
    std::vector<std::string> leaves;
    for (int v = 0; v < tree.num_vertices(); ++v)
      if (tree.is_leaf(v)) leaves.push_back(tree.token[v]);  // post-order: left to right
    COPSE_FUZZ_CHECK(one[0].token == leaves);
    COPSE_FUZZ_CHECK(one[0].graph.label[one[0].root] == tree.graph.label[tree.root]);
    check_chains(std::move(one), kNumLabels);
  });
  return 0;
}
