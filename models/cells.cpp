// The model zoo's cells, written only with the vertex API (see cells.h).
#include "models/cells.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "models/tree_lstm.h"

namespace copse::models {
namespace {

using vertex::Value;
using vertex::VertexBuilder;

// 1 - sig(a) == sig(-a); -a is (a - a) - a, exact in floating point, since
// the API has no constants.
Value one_minus_sigmoid(const Value& a) { return sigmoid((a - a) - a); }

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

vertex::VertexFunction tree_fc(int embed, int hidden, bool use_relu) {
  VertexBuilder v(use_relu ? "tree_fc_relu" : "tree_fc", /*child_slots=*/1);
  v.state("h", hidden);
  auto pre = v.linear({v.pull("word", embed), v.gather_sum("h")}, hidden, "W");
  auto h = use_relu ? relu(pre) : tanh(pre);
  v.scatter("h", h);
  v.push("h", h);
  return v.build();
}

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
