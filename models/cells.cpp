// The model zoo's registry (see cells.h); each cell lives in its own file
// (tree_lstm.cpp, child_sum_lstm.cpp, tree_gru.cpp, tree_fc.cpp, seq_lstm.cpp,
// seq_gru.cpp, dag_gated.cpp), written only with the vertex API.
#include "models/cells.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "models/tree_lstm.h"

namespace copse::models {

std::vector<std::string> cell_names() {
  return {"tree-lstm", "child-sum-lstm", "tree-gru", "tree-fc",
          "lstm",      "gru",            "lstm2",    "dag-gated"};
}

vertex::VertexFunction make_cell(const std::string& name, int embed, int hidden) {
  if (name == "tree-lstm") return tree_lstm_cell(embed, hidden);
  if (name == "child-sum-lstm") return child_sum_tree_lstm(embed, hidden);
  if (name == "tree-gru") return nary_tree_gru(embed, hidden, 2);
  if (name == "tree-fc") return tree_fc(embed, hidden);
  if (name == "lstm") return seq_lstm(embed, hidden);
  if (name == "gru") return seq_gru(embed, hidden);
  if (name == "lstm2") return seq_lstm2(embed, hidden);
  if (name == "dag-gated") return dag_gated(embed, hidden);
  fail("unknown cell '{}' (valid: {})", name, fmt::join(cell_names(), ", "));
}

}  // namespace copse::models
