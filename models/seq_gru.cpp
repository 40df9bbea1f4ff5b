// Sequence GRU over a chain of words.
#include "models/cells.h"

#include "models/cell_util.h"

namespace copse::models {

using vertex::VertexBuilder;

vertex::VertexFunction seq_gru(int embed, int hidden) {
  VertexBuilder v("seq_gru", /*child_slots=*/1);
  v.state("h", hidden);
  auto x = v.pull("word", embed);
  auto hp = v.gather(0, "h");
  auto [xz, xr, xn] = v.split<3>(v.linear({x}, 3 * hidden, "W"));  // [3H] each part [H]
  auto [hz, hr, hn] = v.split<3>(v.linear({hp}, 3 * hidden, "U"));
  auto az = xz + hz;
  auto n = tanh(xn + sigmoid(xr + hr) * hn);
  auto h = one_minus_sigmoid(az) * n + sigmoid(az) * hp;
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
