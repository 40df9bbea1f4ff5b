// Sequence LSTM over a chain of words, one and two layers.
#include <string>
#include <utility>

#include "models/cells.h"

namespace copse::models {

namespace {

using vertex::Value;
using vertex::VertexBuilder;

// One LSTM layer: [i f o u] = W x + U h_prev + b ; returns {h, c}.
std::pair<Value, Value> lstm_layer(VertexBuilder& v, const Value& x, const Value& h_prev,
                                   const Value& c_prev, int hidden, const std::string& w,
                                   const std::string& u) {
  auto gx = v.linear({x}, 4 * hidden, w, /*bias=*/false);  // [4H]
  auto gh = v.linear({h_prev}, 4 * hidden, u);             // [4H]
  auto [xi, xf, xo, xu] = v.split<4>(gx);
  auto [hi, hf, ho, hu] = v.split<4>(gh);
  auto c = sigmoid(xi + hi) * tanh(xu + hu) + sigmoid(xf + hf) * c_prev;
  auto h = sigmoid(xo + ho) * tanh(c);
  return {h, c};
}

}  // namespace

vertex::VertexFunction seq_lstm(int embed, int hidden) {
  VertexBuilder v("seq_lstm", /*child_slots=*/1);
  v.state("h", hidden);
  v.state("c", hidden);
  auto x = v.pull("word", embed);
  auto [h, c] = lstm_layer(v, x, v.gather(0, "h"), v.gather(0, "c"), hidden, "W", "U");
  v.scatter("h", h);
  v.scatter("c", c);
  v.push("h", h);
  return v.build();
}

vertex::VertexFunction seq_lstm2(int embed, int hidden) {
  VertexBuilder v("seq_lstm2", /*child_slots=*/1);
  for (const char* s : {"h1", "c1", "h2", "c2"}) v.state(s, hidden);
  auto x = v.pull("word", embed);
  auto [h1, c1] = lstm_layer(v, x, v.gather(0, "h1"), v.gather(0, "c1"), hidden, "W1", "U1");
  auto [h2, c2] = lstm_layer(v, h1, v.gather(0, "h2"), v.gather(0, "c2"), hidden, "W2", "U2");
  v.scatter("h1", h1);
  v.scatter("c1", c1);
  v.scatter("h2", h2);
  v.scatter("c2", c2);
  v.push("h", h2);
  return v.build();
}

}  // namespace copse::models
