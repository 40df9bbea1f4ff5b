// N-ary Tree-GRU: a reset gate per child slot, an update gate against the
// mean of the children.
#include "models/cells.h"

#include "common/error.h"
#include "models/cell_util.h"

namespace copse::models {

using vertex::Value;
using vertex::VertexBuilder;

vertex::VertexFunction nary_tree_gru(int embed, int hidden, int slots) {
  if (slots < 1) fail("nary_tree_gru: slots must be at least 1, got {}", slots);
  VertexBuilder v("nary_tree_gru", slots);
  v.state("h", hidden);
  auto x = v.pull("word", embed);
  std::vector<Value> hk;
  for (int k = 0; k < slots; ++k) hk.push_back(v.gather(k, "h"));
  auto gx = v.split(v.linear({x}, (slots + 2) * hidden, "W", /*bias=*/false), slots + 2);
  auto gh = v.split(v.linear(hk, (slots + 1) * hidden, "U"), slots + 1);
  std::vector<Value> reset_h;  // r_k * h_k
  for (int k = 0; k < slots; ++k) reset_h.push_back(sigmoid(gx[k] + gh[k]) * hk[k]);
  auto az = gx[slots] + gh[slots];
  auto cand = tanh(gx[slots + 1] + v.linear(reset_h, hidden, "Uh"));  // h^
  auto h = sigmoid(az) * v.gather_mean("h") + one_minus_sigmoid(az) * cand;
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
