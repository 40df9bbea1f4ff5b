// The vertex-function IR: a small DAG of typed nodes, built once per model.
#pragma once

#include <string>
#include <vector>

namespace copse::vertex {

// The operation of a node.
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

// Whether a value has one row per vertex or one per (parent, child) edge.
enum class Domain { Vertex, Edge };
// How edge values reduce to their parent vertex.
enum class Reduce { Sum, Mean };

// Whether `op` is one of the fusable elementwise ops (Add .. Concat).
bool is_elementwise(Op op);
// The op's lower-case name ("mul"), for messages.
const char* op_name(Op op);

// One node of the function: an op over earlier nodes, in one domain.
struct Node {
  Op op = Op::Add;  // what it computes
  Domain domain = Domain::Vertex;  // a row per vertex or per edge
  int width = 0;  // columns of its value
  std::vector<int> in;  // operand node ids (all smaller than this node's id)
  std::string name;     // Pull: input name; Gather/EdgeChild: state; MatMul/ParamRow: param
  int slot = 0;         // Gather
  int offset = 0;       // Slice
  Reduce reduce = Reduce::Sum;  // ReduceEdges
};

// A parameter the function reads (a linear's weight or bias).
struct ParamDecl {
  std::string name;        // the parameter's name in the store
  std::vector<int> shape;  // [out, in] for weights, [n] for biases
  bool is_bias = false;    // a bias (initialised to zero), not a weight
};

// A state the function scatters for its parents to gather.
struct StateDecl {
  std::string name;  // what gathers name
  int value = -1;    // node scattered as this state
};

// A per-vertex output the head reads (VertexBuilder::push).
struct OutputDecl {
  std::string name;  // what the head asks for ("h", "y")
  int value = -1;    // node pushed as this output
};

// An external per-vertex input (VertexBuilder::pull).
struct PullDecl {
  std::string name;  // bound by the executor to a table or caller data
  int width = 0;     // columns read per vertex
  int node = -1;     // the Pull node
};

// A built, validated vertex function. Node ids are a topological order.
struct VertexFunction {
  std::string name;                 // for messages and saved models
  int child_slots = 0;              // ordered child slots gather(k, ...) reads
  std::vector<Node> nodes;          // in topological order
  std::vector<ParamDecl> params;    // every parameter the nodes read
  std::vector<StateDecl> states;    // what it scatters
  std::vector<OutputDecl> outputs;  // what it pushes
  std::vector<PullDecl> pulls;      // what it pulls

  // The index of state `n` in `states`, -1 if none.
  int find_state(const std::string& n) const;
  // The index of output `n` in `outputs`, -1 if none.
  int find_output(const std::string& n) const;
  // The index of parameter `n` in `params`, -1 if none.
  int find_param(const std::string& n) const;
  // A node, for messages: "tree_lstm: node 7 (mul)".
  std::string describe(int node) const;
  // Every node, one per line, for debugging.
  std::string to_string() const;
};

}  // namespace copse::vertex
