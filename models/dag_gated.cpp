// Gated message passing over DAGs: gated messages from every child, averaged.
#include "models/cells.h"

#include "models/cell_util.h"

namespace copse::models {

using vertex::VertexBuilder;

vertex::VertexFunction dag_gated(int embed, int hidden) {
  VertexBuilder v("dag_gated", /*child_slots=*/1);
  v.state("h", hidden);
  auto x = v.pull("word", embed);
  auto px = v.linear({x}, hidden, "P", /*bias=*/false);
  auto m = v.over_children(
      [&](vertex::EdgeScope& e) {
        auto hk = e.child("h");
        return sigmoid(e.parent(px) + v.linear({hk}, hidden, "Ue")) * hk;
      },
      vertex::Reduce::Mean);
  auto [g, a] = v.split<2>(v.linear({x, m}, 2 * hidden, "W"));
  auto h = sigmoid(g) * tanh(a) + one_minus_sigmoid(g) * m;
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
