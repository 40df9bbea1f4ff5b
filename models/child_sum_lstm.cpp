// Child-sum Tree-LSTM (Tai et al. 2015): per-child forget gates through the
// edge function; children of any count.
#include "models/cells.h"

namespace copse::models {

using vertex::VertexBuilder;

vertex::VertexFunction child_sum_tree_lstm(int embed, int hidden) {
  VertexBuilder v("child_sum_tree_lstm", /*child_slots=*/1);
  v.state("h", hidden);
  v.state("c", hidden);
  auto x = v.pull("word", embed);
  auto hsum = v.gather_sum("h");                                 // h~ [H]
  auto gx = v.linear({x}, 4 * hidden, "W", /*bias=*/false);      // [4H] rows i o u f
  auto gh = v.linear({hsum}, 3 * hidden, "U");                   // [3H]
  auto [xi, xo, xu, xf] = v.split<4>(gx);
  auto [hi, ho, hu] = v.split<3>(gh);
  // sum_k f_k * c_k with f_k = sig(W_f x + U_f h_k + b_f)
  auto fc = v.over_children([&](vertex::EdgeScope& e) {
    auto f = sigmoid(e.parent(xf) + v.linear({e.child("h")}, hidden, "Uf"));
    return f * e.child("c");
  });
  auto c = sigmoid(xi + hi) * tanh(xu + hu) + fc;
  auto h = sigmoid(xo + ho) * tanh(c);
  v.scatter("h", h);
  v.scatter("c", c);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
