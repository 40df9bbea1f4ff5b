// VertexBuilder: records the user's vertex function and checks it as it goes.
#include "vertex/builder.h"

#include <fmt/format.h>

#include "common/error.h"

namespace copse::vertex {

int Value::width() const { return b_->node(id_).width; }
Domain Value::domain() const { return b_->node(id_).domain; }

namespace {
VertexBuilder* builder_of(const Value& a, const Value& b, const char* op) {
  if (!a.valid() || !b.valid())
    throw Error(fmt::format("vertex function: {}: operand is an empty Value", op));
  if (a.builder() != b.builder())
    throw Error(fmt::format("vertex function: {}: operands come from different builders", op));
  return a.builder();
}
VertexBuilder* builder_of(const Value& a, const char* op) {
  if (!a.valid()) throw Error(fmt::format("vertex function: {}: operand is an empty Value", op));
  return a.builder();
}
}  // namespace

Value operator+(const Value& a, const Value& b) { return builder_of(a, b, "add")->add(a, b); }
Value operator-(const Value& a, const Value& b) { return builder_of(a, b, "sub")->sub(a, b); }
Value operator*(const Value& a, const Value& b) { return builder_of(a, b, "mul")->mul(a, b); }
Value sigmoid(const Value& a) { return builder_of(a, "sigmoid")->sigmoid(a); }
Value tanh(const Value& a) { return builder_of(a, "tanh")->tanh(a); }
Value relu(const Value& a) { return builder_of(a, "relu")->relu(a); }

Value EdgeScope::child(const std::string& state) { return b_->edge_child(state); }
Value EdgeScope::parent(const Value& v) { return b_->edge_parent(v); }

VertexBuilder::VertexBuilder(std::string name, int child_slots) {
  fn_.name = std::move(name);
  if (child_slots < 0) error(fmt::format("child_slots must be >= 0, got {}", child_slots));
  fn_.child_slots = child_slots;
}

void VertexBuilder::error(const std::string& what) const {
  throw Error(fmt::format("vertex function {}: {}", fn_.name, what));
}

int VertexBuilder::add_node(Node n) {
  if (built_) error("the builder was already built; make a new VertexBuilder");
  if (n.width <= 0) error(fmt::format("{}: width must be positive, got {}", op_name(n.op), n.width));
  fn_.nodes.push_back(std::move(n));
  return static_cast<int>(fn_.nodes.size()) - 1;
}

void VertexBuilder::check(const Value& v, const char* op) const {
  if (!v.valid()) error(fmt::format("{}: operand is an empty Value", op));
  if (v.builder() != this) error(fmt::format("{}: operand comes from another builder", op));
}

void VertexBuilder::state(const std::string& name, int width) {
  if (width <= 0) error(fmt::format("state '{}': width must be positive, got {}", name, width));
  for (auto& [n, w] : declared_states_)
    if (n == name) {
      if (w != width)
        error(fmt::format("state '{}' declared twice, with widths {} and {}", name, w, width));
      return;
    }
  declared_states_.emplace_back(name, width);
}

int VertexBuilder::state_width(const std::string& state, const char* op) {
  int s = fn_.find_state(state);
  if (s >= 0) return fn_.nodes[fn_.states[s].value].width;
  for (auto& [n, w] : declared_states_)
    if (n == state) return w;
  error(fmt::format("{}: state '{}' is not known yet: scatter it first or declare it with "
                    "state(\"{}\", width)",
                    op, state, state));
}

Value VertexBuilder::pull(const std::string& name, int width) {
  for (const auto& p : fn_.pulls)
    if (p.name == name) {
      if (p.width != width)
        error(fmt::format("pull '{}': pulled twice with widths {} and {}", name, p.width, width));
      return Value(this, p.node);
    }
  Node n;
  n.op = Op::Pull;
  n.width = width;
  n.name = name;
  int id = add_node(n);
  fn_.pulls.push_back({name, width, id});
  return Value(this, id);
}

Value VertexBuilder::gather(int slot, const std::string& state) {
  if (slot < 0 || slot >= fn_.child_slots)
    error(fmt::format("gather(slot {}, '{}'): slot out of range, the function has {} child slots",
                      slot, state, fn_.child_slots));
  Node n;
  n.op = Op::Gather;
  n.slot = slot;
  n.name = state;
  n.width = state_width(state, "gather");
  int id = add_node(n);
  pending_gathers_.push_back({id, state});
  return Value(this, id);
}

Value VertexBuilder::edge_child(const std::string& state) {
  Node n;
  n.op = Op::EdgeChild;
  n.domain = Domain::Edge;
  n.name = state;
  n.width = state_width(state, "edge_child");
  int id = add_node(n);
  pending_gathers_.push_back({id, state});
  return Value(this, id);
}

Value VertexBuilder::edge_parent(const Value& v) {
  check(v, "edge_parent");
  if (v.domain() != Domain::Vertex) error("edge_parent: the value is already a per-edge value");
  Node n;
  n.op = Op::EdgeParent;
  n.domain = Domain::Edge;
  n.width = v.width();
  n.in = {v.id()};
  return Value(this, add_node(n));
}

Value VertexBuilder::reduce_edges(const Value& e, Reduce reduce) {
  check(e, "reduce_edges");
  if (e.domain() != Domain::Edge) error("reduce_edges: the value is not a per-edge value");
  Node n;
  n.op = Op::ReduceEdges;
  n.width = e.width();
  n.in = {e.id()};
  n.reduce = reduce;
  return Value(this, add_node(n));
}

Value VertexBuilder::gather_sum(const std::string& state) {
  return reduce_edges(edge_child(state), Reduce::Sum);
}

Value VertexBuilder::gather_mean(const std::string& state) {
  return reduce_edges(edge_child(state), Reduce::Mean);
}

Value VertexBuilder::over_children(const std::function<Value(EdgeScope&)>& fn, Reduce reduce) {
  EdgeScope scope(this);
  Value e = fn(scope);
  check(e, "over_children");
  if (e.domain() != Domain::Edge)
    error("over_children: the edge function must return a per-edge value (built from "
          "scope.child(...) or scope.parent(...))");
  return reduce_edges(e, reduce);
}

Value VertexBuilder::linear(const std::vector<Value>& inputs, int width, const std::string& param,
                            bool bias) {
  if (inputs.empty()) error(fmt::format("linear '{}': no inputs", param));
  if (fn_.find_param(param) >= 0 || (bias && fn_.find_param(param + ".b") >= 0))
    error(fmt::format("linear '{}': parameter name used twice", param));
  Node n;
  n.op = Op::MatMul;
  n.width = width;
  n.name = param;
  n.domain = Domain::Vertex;
  int k = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check(inputs[i], "linear");
    if (i == 0) n.domain = inputs[i].domain();
    if (inputs[i].domain() != n.domain)
      error(fmt::format("linear '{}': mixes per-vertex and per-edge inputs (input {})", param, i));
    n.in.push_back(inputs[i].id());
    k += inputs[i].width();
  }
  Value y(this, add_node(n));
  fn_.params.push_back({param, {width, k}, false});
  if (!bias) return y;
  Node b;
  b.op = Op::ParamRow;
  b.width = width;
  b.name = param + ".b";
  b.domain = n.domain;
  Value bv(this, add_node(b));
  fn_.params.push_back({b.name, {width}, true});
  return add(y, bv);
}

Value VertexBuilder::elementwise(Op op, const Value& a, const Value& b, const char* what) {
  check(a, what);
  check(b, what);
  if (a.width() != b.width())
    error(fmt::format("{}: width mismatch, {} has {} columns and {} has {}", what,
                      fn_.describe(a.id()), a.width(), fn_.describe(b.id()), b.width()));
  if (a.domain() != b.domain())
    error(fmt::format("{}: mixes a per-vertex and a per-edge value ({} and {}); use "
                      "edge_parent() to bring a vertex value onto edges",
                      what, fn_.describe(a.id()), fn_.describe(b.id())));
  Node n;
  n.op = op;
  n.width = a.width();
  n.domain = a.domain();
  n.in = {a.id(), b.id()};
  return Value(this, add_node(n));
}

Value VertexBuilder::add(const Value& a, const Value& b) { return elementwise(Op::Add, a, b, "add"); }
Value VertexBuilder::sub(const Value& a, const Value& b) { return elementwise(Op::Sub, a, b, "sub"); }
Value VertexBuilder::mul(const Value& a, const Value& b) { return elementwise(Op::Mul, a, b, "mul"); }

Value VertexBuilder::unary(Op op, const Value& a) {
  check(a, op_name(op));
  Node n;
  n.op = op;
  n.width = a.width();
  n.domain = a.domain();
  n.in = {a.id()};
  return Value(this, add_node(n));
}

Value VertexBuilder::sigmoid(const Value& a) { return unary(Op::Sigmoid, a); }
Value VertexBuilder::tanh(const Value& a) { return unary(Op::Tanh, a); }
Value VertexBuilder::relu(const Value& a) { return unary(Op::Relu, a); }

Value VertexBuilder::slice(const Value& a, int offset, int width) {
  check(a, "slice");
  if (offset < 0 || width <= 0 || offset + width > a.width())
    error(fmt::format("slice [{}, {}) out of range for {} of width {}", offset, offset + width,
                      fn_.describe(a.id()), a.width()));
  if (offset == 0 && width == a.width()) return a;
  Node n;
  n.op = Op::Slice;
  n.width = width;
  n.offset = offset;
  n.domain = a.domain();
  n.in = {a.id()};
  return Value(this, add_node(n));
}

std::vector<Value> VertexBuilder::split(const Value& a, int parts) {
  check(a, "split");
  if (parts <= 0 || a.width() % parts != 0)
    error(fmt::format("split: {} of width {} does not split into {} equal parts",
                      fn_.describe(a.id()), a.width(), parts));
  int w = a.width() / parts;
  std::vector<Value> out;
  for (int i = 0; i < parts; ++i) out.push_back(slice(a, i * w, w));
  return out;
}

Value VertexBuilder::concat(const std::vector<Value>& parts) {
  if (parts.empty()) error("concat: no inputs");
  if (parts.size() == 1) return parts[0];
  Node n;
  n.op = Op::Concat;
  n.domain = parts[0].domain();
  for (const auto& p : parts) {
    check(p, "concat");
    if (p.domain() != n.domain) error("concat: mixes per-vertex and per-edge values");
    n.in.push_back(p.id());
    n.width += p.width();
  }
  return Value(this, add_node(n));
}

void VertexBuilder::scatter(const std::string& state, const Value& v) {
  check(v, "scatter");
  if (v.domain() != Domain::Vertex) error(fmt::format("scatter '{}': a per-edge value", state));
  if (fn_.find_state(state) >= 0) error(fmt::format("scatter '{}': state scattered twice", state));
  for (auto& [n, w] : declared_states_)
    if (n == state && w != v.width())
      error(fmt::format("scatter '{}': declared with width {} but the value has width {}", state,
                        w, v.width()));
  fn_.states.push_back({state, v.id()});
}

void VertexBuilder::push(const std::string& name, const Value& v) {
  check(v, "push");
  if (v.domain() != Domain::Vertex) error(fmt::format("push '{}': a per-edge value", name));
  if (fn_.find_output(name) >= 0) error(fmt::format("push '{}': output pushed twice", name));
  fn_.outputs.push_back({name, v.id()});
}

VertexFunction VertexBuilder::build() {
  if (built_) error("build() called twice");
  for (const auto& g : pending_gathers_) {
    int s = fn_.find_state(g.state);
    if (s < 0)
      error(fmt::format("{} reads state '{}', which is never scattered", fn_.describe(g.node),
                        g.state));
    int w = fn_.nodes[fn_.states[s].value].width;
    if (w != fn_.nodes[g.node].width)
      error(fmt::format("{} reads state '{}' with width {}, but it is scattered with width {}",
                        fn_.describe(g.node), g.state, fn_.nodes[g.node].width, w));
  }
  if (fn_.states.empty() && fn_.outputs.empty())
    error("the function neither scatters a state nor pushes an output");
  built_ = true;
  return std::move(fn_);
}

}  // namespace copse::vertex
