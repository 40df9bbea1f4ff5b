// Graph: one input structure (tree, chain or DAG) as ordered child lists.
#pragma once

#include <string>
#include <vector>

namespace copse::scheduler {

// A graph of n vertices. Vertex v's children are
// children[child_ptr[v] .. child_ptr[v+1]), in slot order (slot 0 first).
// A vertex may be the child of several parents (DAG); cycles are rejected.
struct Graph {
  std::vector<int> child_ptr{0};  // [n+1]
  std::vector<int> children;      // [num_edges] child vertex ids
  std::vector<int> input;         // [n] external input id (word id, feature row), -1 = none
  std::vector<int> label;         // [n] per-vertex label, -1 = none
  std::string name;               // where it came from ("train.txt:17"), for errors

  // n, the number of vertices.
  int num_vertices() const { return static_cast<int>(input.size()); }
  // The number of (parent, child) edges.
  int num_edges() const { return static_cast<int>(children.size()); }
  // Vertex v's number of children.
  int num_children(int v) const { return child_ptr[v + 1] - child_ptr[v]; }

  // Appends a vertex and returns its id. Children may name vertices added
  // later (validate() checks them).
  int add_vertex(const std::vector<int>& kids, int input_id = -1, int label_id = -1);

  // Throws copse::Error naming the graph and the vertex for a dangling child
  // (id out of range), a self-loop or a cycle, or an empty graph.
  // Iterative, O(n + e).
  void validate() const;
};

// A chain 0 <- 1 <- ... <- n-1 (vertex i has the single child i-1): a sequence.
Graph make_chain(int n, const std::vector<int>& inputs = {});

}  // namespace copse::scheduler
