// The vertex-function IR: a small DAG of typed nodes, built once per model.
#pragma once

#include <string>
#include <vector>

namespace copse::vertex {

enum class Op {
  // Sources.
  Pull,         // external per-vertex input row (embedding, features); zeros if absent
  Gather,       // state of the child in `slot`; zeros if absent
  EdgeChild,    // per edge: the child's state
  EdgeParent,   // per edge: a value of the parent vertex
  ReduceEdges,  // per vertex: sum / mean over its edges of an edge value
  ParamRow,     // a parameter row vector broadcast to every row (bias)
  // Affine map: y = [in_0, in_1, ...] . W^T with W [width, sum in widths].
  MatMul,
  // Elementwise (fusable).
  Add, Sub, Mul, Sigmoid, Tanh, Relu,
  Slice,        // columns [offset, offset+width) of the input (a view)
  Concat,       // inputs side by side
};

enum class Domain { Vertex, Edge };
enum class Reduce { Sum, Mean };

bool is_elementwise(Op op);
const char* op_name(Op op);

struct Node {
  Op op = Op::Add;
  Domain domain = Domain::Vertex;
  int width = 0;
  std::vector<int> in;  // operand node ids (all smaller than this node's id)
  std::string name;     // Pull: input name; Gather/EdgeChild: state; MatMul/ParamRow: param
  int slot = 0;         // Gather
  int offset = 0;       // Slice
  Reduce reduce = Reduce::Sum;
};

struct ParamDecl {
  std::string name;
  std::vector<int> shape;  // [out, in] for weights, [n] for biases
  bool is_bias = false;
};

struct StateDecl {
  std::string name;
  int value = -1;  // node scattered as this state
};

struct OutputDecl {
  std::string name;
  int value = -1;  // node pushed as this output
};

struct PullDecl {
  std::string name;
  int width = 0;
  int node = -1;
};

// A built, validated vertex function. Node ids are a topological order.
struct VertexFunction {
  std::string name;
  int child_slots = 0;
  std::vector<Node> nodes;
  std::vector<ParamDecl> params;
  std::vector<StateDecl> states;
  std::vector<OutputDecl> outputs;
  std::vector<PullDecl> pulls;

  int find_state(const std::string& n) const;
  int find_output(const std::string& n) const;
  int find_param(const std::string& n) const;
  std::string describe(int node) const;  // "tree_lstm: node 7 (mul)"
  std::string to_string() const;
};

}  // namespace copse::vertex
