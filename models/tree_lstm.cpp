// Binary constituency Tree-LSTM cell.
#include "models/tree_lstm.h"

namespace copse::models {

vertex::VertexFunction tree_lstm_cell(int embed, int hidden) {
  vertex::VertexBuilder v("tree_lstm", /*child_slots=*/2);
  v.state("h", hidden);
  v.state("c", hidden);
  auto x = v.pull("word", embed);
  auto hl = v.gather(0, "h"), hr = v.gather(1, "h");
  auto cl = v.gather(0, "c"), cr = v.gather(1, "c");
  auto gx = v.linear({x}, 3 * hidden, "W", /*bias=*/false);
  auto gh = v.linear({hl, hr}, 5 * hidden, "U");
  auto [xi, xo, xu] = v.split<3>(gx);
  auto [hi, ho, hu, hfl, hfr] = v.split<5>(gh);
  auto i = sigmoid(xi + hi), o = sigmoid(xo + ho), u = tanh(xu + hu);
  auto c = i * u + sigmoid(hfl) * cl + sigmoid(hfr) * cr;
  auto h = o * tanh(c);
  v.scatter("h", h);
  v.scatter("c", c);
  v.push("h", h);
  return v.build();
}

}  // namespace copse::models
