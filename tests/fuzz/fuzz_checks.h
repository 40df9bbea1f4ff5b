// Properties of successful reads that several fuzz targets check.
#pragma once

#include <vector>

#include "common/error.h"
#include "models/sequence_reader.h"
#include "scheduler/graph.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace copse::fuzz {

// Whether the graph passes Graph::validate().
inline bool validates(const scheduler::Graph& g) {
  try {
    g.validate();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// A vocabulary over every token of `trees` gives every vertex an input in
// range.
inline void check_all_inputs_assignable(std::vector<models::LabeledTree>& trees) {
  const auto vocab = models::build_vocab_all_tokens(trees);
  for (auto& t : trees) {
    models::assign_all_inputs(vocab, t);
    for (int v = 0; v < t.num_vertices(); ++v)
      COPSE_FUZZ_CHECK(t.graph.input[v] >= 0 && t.graph.input[v] < vocab.size());
  }
}

}  // namespace copse::fuzz
