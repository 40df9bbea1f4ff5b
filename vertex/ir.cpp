// VertexFunction helpers: op names, lookups, printing.
#include "vertex/ir.h"

#include <fmt/format.h>

namespace copse::vertex {

bool is_elementwise(Op op) {
  switch (op) {
    case Op::Add: case Op::Sub: case Op::Mul: case Op::Sigmoid: case Op::Tanh:
    case Op::Relu: case Op::Slice: case Op::Concat:
      return true;
    default:
      return false;
  }
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Pull: return "pull";
    case Op::Gather: return "gather";
    case Op::EdgeChild: return "edge_child";
    case Op::EdgeParent: return "edge_parent";
    case Op::ReduceEdges: return "reduce_edges";
    case Op::ParamRow: return "param_row";
    case Op::MatMul: return "linear";
    case Op::Add: return "add";
    case Op::Sub: return "sub";
    case Op::Mul: return "mul";
    case Op::Sigmoid: return "sigmoid";
    case Op::Tanh: return "tanh";
    case Op::Relu: return "relu";
    case Op::Slice: return "slice";
    case Op::Concat: return "concat";
  }
  return "?";
}

int VertexFunction::find_state(const std::string& n) const {
  for (size_t i = 0; i < states.size(); ++i)
    if (states[i].name == n) return static_cast<int>(i);
  return -1;
}

int VertexFunction::find_output(const std::string& n) const {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].name == n) return static_cast<int>(i);
  return -1;
}

int VertexFunction::find_param(const std::string& n) const {
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].name == n) return static_cast<int>(i);
  return -1;
}

std::string VertexFunction::describe(int node) const {
  const Node& n = nodes.at(node);
  std::string extra = n.name.empty() ? "" : fmt::format(" '{}'", n.name);
  return fmt::format("{}: node {} ({}{})", name, node, op_name(n.op), extra);
}

std::string VertexFunction::to_string() const {
  std::string s = fmt::format("vertex function {} (child slots {})\n", name, child_slots);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    s += fmt::format("  %{} = {}{}[{}]", i, op_name(n.op), n.domain == Domain::Edge ? "@edge" : "",
                     n.width);
    if (!n.name.empty()) s += fmt::format(" {}", n.name);
    for (int a : n.in) s += fmt::format(" %{}", a);
    s += "\n";
  }
  for (const auto& st : states) s += fmt::format("  scatter {} = %{}\n", st.name, st.value);
  for (const auto& o : outputs) s += fmt::format("  push {} = %{}\n", o.name, o.value);
  return s;
}

}  // namespace copse::vertex
