// Building graphs from a program's own data: trees from parent arrays or
// child lists, DAGs from edge lists, chains; inputs, labels and targets per
// vertex or per graph. Every builder validates what it makes and throws
// copse::Error naming the graph (its `name`) and the vertex at fault.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "scheduler/graph.h"

namespace copse {

using scheduler::Graph;

// A tree from parent indices: parent[v] is v's parent, `base` is the index of
// the first vertex (0, or 1 for CoNLL / SICK-style files) and base - 1 marks
// the root (-1, or 0). A vertex's children are its child vertices in
// increasing index order (slot 0 first). Exactly one root; no cycles.
Graph tree_from_parents(const std::vector<int>& parent, const std::string& name = "",
                        int base = 0);

// A tree (or any DAG) from child lists: children[v] are v's children in slot
// order.
Graph graph_from_children(const std::vector<std::vector<int>>& children,
                          const std::string& name = "");

// A DAG of n vertices from (parent, child) edges: a vertex's children are
// listed in the order of its edges. A child may have several parents; roots
// are the vertices without one. Rejects out-of-range ids, self-loops, cycles.
Graph dag_from_edges(int n, const std::vector<std::pair<int, int>>& edges,
                     const std::string& name = "");

// A chain of n vertices: vertex i's only child is i - 1 (a sequence read
// left to right; the last vertex is the root).
Graph chain(int n, const std::string& name = "");

// Sets every vertex's input id (an embedding row, or a row of the example's
// dense features): ids.size() must equal the number of vertices; -1: none.
void set_inputs(Graph& g, const std::vector<int>& ids);
// Sets vertex v's class label (-1: none).
void set_label(Graph& g, int v, int label);
// A label for the whole graph: at its root (exactly one root).
void set_graph_label(Graph& g, int label);
// The graph's only root; throws naming the graph when it has none or several.
int root_of(const Graph& g);

// One example: a graph and, when the model reads them, its dense per-vertex
// rows and its regression targets.
struct Example {
  Graph graph;  // the example's (first) graph
  // Further graphs of the same example (a sentence pair: one more), for a
  // model with a join head (models/join_head.h): they are batched with every
  // other graph of the batch, and the head reads one vertex of each graph,
  // its root or join_at[i] of graph i (graph 0 is `graph`, graph i + 1 is
  // more[i]).
  std::vector<Graph> more;
  std::vector<int> join_at;  // [num_graphs()] the vertex the head reads; empty or -1: the root
  // [n * features] row v is vertex v's dense input (the model's "x" pull);
  // with `more`, the rows of `graph` first, then those of more[0], ...
  std::vector<float> features;
  // [n * width] regression targets per vertex, NaN where a vertex has none;
  // see set_graph_target. Not read by a join head.
  std::vector<float> targets;
  // The example's target for a join head, [head width]: a distribution over
  // the classes (softmax; e.g. models::score_distribution) or the values
  // (squared error).
  std::vector<float> target;
  // The number of graphs (1 + more.size()).
  int num_graphs() const { return 1 + static_cast<int>(more.size()); }
  // The number of vertices in all of them.
  int num_vertices() const;
};

// A target for the whole graph, at its root; every other vertex gets none.
void set_graph_target(Example& e, const std::vector<float>& target);

}  // namespace copse
