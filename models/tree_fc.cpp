// Tree-FC (the Cavs evaluation): a fully connected layer over the word and
// the sum of the children.
#include "models/cells.h"

namespace copse::models {

using vertex::VertexBuilder;

vertex::VertexFunction tree_fc(int embed, int hidden, bool use_relu) {
  VertexBuilder v(use_relu ? "tree_fc_relu" : "tree_fc", /*child_slots=*/1);
  v.state("h", hidden);
  auto pre = v.linear({v.pull("word", embed), v.gather_sum("h")}, hidden, "W");
  auto h = use_relu ? relu(pre) : tanh(pre);
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
