// libFuzzer target: the PTB bracket-tree reader on arbitrary bytes, both one
// line (parse_ptb_line) and a whole file (read_ptb_file). A tree that parses
// must print back (to_ptb) to a line that parses to the same tree.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "models/ptb_reader.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

using copse::models::LabeledTree;

// The structure of a parsed tree is consistent: post-order, root last.
void check_tree(const LabeledTree& t) {
  const int n = t.num_vertices();
  COPSE_FUZZ_CHECK(n > 0);
  COPSE_FUZZ_CHECK(t.root == n - 1);
  COPSE_FUZZ_CHECK(static_cast<int>(t.token.size()) == n);
  for (int v = 0; v < n; ++v) COPSE_FUZZ_CHECK(t.is_leaf(v) == !t.token[v].empty());
}

void round_trip(const LabeledTree& t, int num_labels) {
  check_tree(t);
  const std::string line = copse::models::to_ptb(t);
  const LabeledTree again = copse::models::parse_ptb_line(line, "round-trip", 1, num_labels);
  COPSE_FUZZ_CHECK(copse::models::to_ptb(again) == line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  constexpr int kNumLabels = 5;
  copse::fuzz::expect_ok_or_error([&] {
    round_trip(copse::models::parse_ptb_line(bytes, "fuzz.txt", 1, kNumLabels), kNumLabels);
  });
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error([&] {
    for (const auto& t : copse::models::read_ptb_file(path, kNumLabels)) round_trip(t, kNumLabels);
  });
  return 0;
}
