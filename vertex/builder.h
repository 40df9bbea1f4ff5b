// VertexBuilder: the user API for writing a vertex function once.
//
//   copse::vertex::VertexBuilder v("tree_lstm", /*child_slots=*/2);
//   auto x = v.pull("word", E);
//   auto h0 = v.gather(0, "h"), h1 = v.gather(1, "h");
//   auto g = v.linear({h0, h1}, 5 * H, "U");
//   ...  v.scatter("h", h); v.push("h", h);  auto fn = v.build();
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "vertex/ir.h"

namespace copse::vertex {

class VertexBuilder;

// A handle to a node of the function being built.
class Value {
 public:
  Value() = default;
  // Node `id` of builder `b`.
  Value(VertexBuilder* b, int id) : b_(b), id_(id) {}
  // The node's id in the function.
  int id() const { return id_; }
  // Its columns.
  int width() const;
  // Per vertex or per edge.
  Domain domain() const;
  // The builder it belongs to (nullptr for a default-constructed Value).
  VertexBuilder* builder() const { return b_; }
  // Whether it names a node.
  bool valid() const { return b_ != nullptr; }

 private:
  VertexBuilder* b_ = nullptr;
  int id_ = -1;
};

// Elementwise a + b (VertexBuilder::add).
Value operator+(const Value& a, const Value& b);
// Elementwise a - b (VertexBuilder::sub).
Value operator-(const Value& a, const Value& b);
// Elementwise a * b (VertexBuilder::mul).
Value operator*(const Value& a, const Value& b);
// Elementwise logistic sigmoid.
Value sigmoid(const Value& a);
// Elementwise tanh.
Value tanh(const Value& a);
// Elementwise max(a, 0).
Value relu(const Value& a);

// Inside VertexBuilder::over_children: values of one (parent, child) edge.
class EdgeScope {
 public:
  // The scope of `b`'s edge function (over_children makes it).
  explicit EdgeScope(VertexBuilder* b) : b_(b) {}
  Value child(const std::string& state);  // the child's state on this edge
  Value parent(const Value& v);           // a value of the parent vertex
 private:
  VertexBuilder* b_;
};

// Builds a vertex function (see the top of this file); build() validates it.
class VertexBuilder {
 public:
  // A function named `name` whose vertices have `child_slots` ordered child
  // slots (for gather(k, ...); 0 when it only reduces over children).
  VertexBuilder(std::string name, int child_slots);

  // Declares a state (scattered later) so that gathers can precede the scatter.
  void state(const std::string& name, int width);
  // External per-vertex input of `width` columns (zeros where a vertex has none).
  Value pull(const std::string& name, int width);
  // The state `state` of the child in `slot` (zeros where there is no such child).
  Value gather(int slot, const std::string& state);
  // Sum / mean of a state over all children (zero for a leaf).
  Value gather_sum(const std::string& state);
  // The mean (1/deg times the sum; zero for a leaf).
  Value gather_mean(const std::string& state);
  // Per-edge function reduced over children: fn sees one (parent, child) edge.
  Value over_children(const std::function<Value(EdgeScope&)>& fn, Reduce reduce = Reduce::Sum);
  // Per-edge primitives (what over_children uses).
  Value edge_child(const std::string& state);
  // Per edge: the parent's value `v` (a vertex value).
  Value edge_parent(const Value& v);
  // Per vertex: the sum or mean of an edge value over the vertex's edges.
  Value reduce_edges(const Value& edge_value, Reduce reduce);

  // y = [inputs...] W^T (+ b): one weight [width, sum of input widths] named
  // `param`, and a bias `param + ".b"` when `bias`.
  Value linear(const std::vector<Value>& inputs, int width, const std::string& param,
               bool bias = true);
  // a + b (same width and domain).
  Value add(const Value& a, const Value& b);
  // a - b.
  Value sub(const Value& a, const Value& b);
  // a * b, elementwise.
  Value mul(const Value& a, const Value& b);
  // The logistic sigmoid of a.
  Value sigmoid(const Value& a);
  // tanh(a).
  Value tanh(const Value& a);
  // max(a, 0).
  Value relu(const Value& a);
  // Columns [offset, offset + width) of a (a view, no copy).
  Value slice(const Value& a, int offset, int width);
  // a cut into `parts` slices of equal width.
  std::vector<Value> split(const Value& a, int parts);
  // The same into N parts, as an array (for structured bindings).
  template <int N>
  std::array<Value, N> split(const Value& a) {
    auto v = split(a, N);
    std::array<Value, N> out;
    for (int i = 0; i < N; ++i) out[i] = v[i];
    return out;
  }
  // The parts side by side.
  Value concat(const std::vector<Value>& parts);

  // The state a parent gathers from this vertex.
  void scatter(const std::string& state, const Value& v);
  // A per-vertex output, read by the loss head.
  void push(const std::string& name, const Value& v);

  // Validates and returns the function. Errors name the function and the op.
  VertexFunction build();

  // Node `id` of the function so far.
  const Node& node(int id) const { return fn_.nodes.at(id); }

 private:
  friend class EdgeScope;
  int add_node(Node n);
  void check(const Value& v, const char* op) const;
  Value elementwise(Op op, const Value& a, const Value& b, const char* what);
  Value unary(Op op, const Value& a);
  int state_width(const std::string& state, const char* op);
  [[noreturn]] void error(const std::string& what) const;

  VertexFunction fn_;
  struct PendingGather {
    int node;
    std::string state;
  };
  std::vector<PendingGather> pending_gathers_;
  std::vector<std::pair<std::string, int>> declared_states_;
  bool built_ = false;
};

}  // namespace copse::vertex
