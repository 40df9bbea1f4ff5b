// GraphBatch: B graphs merged and renumbered level-major for batched execution.
#pragma once

#include <vector>

#include "scheduler/graph.h"

namespace copse::scheduler {

// How make_batch lays out a batch.
struct BatchOptions {
  // Slots of the child-slot table (the vertex function's child_slots).
  int num_slots = 2;
  // Batching off: every vertex is its own level (a topological order), so the
  // same runtime executes one vertex at a time. For measuring the speed-up.
  bool one_vertex_per_level = false;
};

// Children c_i of the n rows (or edges) of a level, i in [0, n), that form an
// arithmetic run c_i = start + i * stride with stride >= 1: the executor reads
// them as a strided view of the source rows instead of gathering a copy.
// start == -1: no run (some row lacks the child, or the children are not
// evenly spaced and ascending).
struct StridedRun {
  int start = -1;  // the first child's row, -1: no run
  int stride = 0;  // rows between consecutive children
  // Whether the children form a run.
  bool found() const { return start >= 0; }
};

// Rows are vertices renumbered level-major: level l is the row range
// [level_ptr[l], level_ptr[l+1]). level(v) = 0 for a vertex without children,
// else 1 + max(level(child)). Inside a level rows are ordered by the height of
// their graph (its number of levels, tallest first), then graph, then vertex:
// for a batch of chains, level l+1's children are then the first rows of
// level l, in order (a StridedRun of stride 1).
// Edges are numbered by parent row then slot, so the edges of level l are the
// contiguous range [child_ptr[level_ptr[l]], child_ptr[level_ptr[l+1]]).
struct GraphBatch {
  int num_graphs = 0;  // B, graphs merged
  int num_rows = 0;    // N, total vertices
  int num_edges = 0;   // E, total (parent, child) pairs
  int num_levels = 0;  // L
  int num_slots = 0;   // S, as in BatchOptions

  std::vector<int> level_ptr;   // [L+1]
  std::vector<int> child_ptr;   // [N+1] edges of row r: [child_ptr[r], child_ptr[r+1])
  std::vector<int> edge_child;  // [E] child row of each edge
  std::vector<int> edge_parent; // [E] parent row of each edge
  std::vector<int> slot_child;  // [N*S] row r's child in slot k at r*S+k, -1 if none
  std::vector<int> parent_ptr;  // [N+1] parent CSR: parents of row r
  std::vector<int> parents;     // [E]   parent rows, ascending
  std::vector<int> parent_edge; // [E]   edge id of each parents entry (edge_child == r)
  std::vector<int> level_max_children;  // [L] max child count in each level
  std::vector<StridedRun> slot_run;  // [L*S] slot k's children of level l's rows, at l*S+k
  std::vector<StridedRun> edge_run;  // [L] edge_child over level l's edges

  std::vector<int> input;       // [N] input id per row, -1 = none
  std::vector<int> label;       // [N] label per row, -1 = none
  std::vector<int> graph_of_row;  // [N]
  std::vector<int> row_of_vertex; // [sum n_g] row of (graph g, vertex v) at vertex_offset[g]+v
  std::vector<int> vertex_offset; // [B+1]
  std::vector<int> root_ptr;    // [B+1] roots of graph g: root_rows[root_ptr[g] .. root_ptr[g+1])
  std::vector<int> root_rows;   // rows with no parent, per graph in vertex order

  // Level l's first row.
  int level_begin(int l) const { return level_ptr[l]; }
  // One past level l's last row.
  int level_end(int l) const { return level_ptr[l + 1]; }
  // Level l's number of rows.
  int level_size(int l) const { return level_ptr[l + 1] - level_ptr[l]; }
  // Level l's first edge (edges of its rows).
  int edge_begin(int l) const { return child_ptr[level_ptr[l]]; }
  // One past level l's last edge.
  int edge_end(int l) const { return child_ptr[level_ptr[l + 1]]; }
  // slot_run's entry for child slot k of level l.
  const StridedRun& run_of_slot(int l, int k) const {
    return slot_run[static_cast<size_t>(l) * num_slots + k];
  }
};

// Merges and levels the graphs (each is validated first). O(N + E), no
// recursion: a 100,000-vertex chain is fine. Throws copse::Error on bad graphs.
GraphBatch make_batch(const std::vector<const Graph*>& graphs, const BatchOptions& opts = {});
// The same over graphs held by value.
GraphBatch make_batch(const std::vector<Graph>& graphs, const BatchOptions& opts = {});

}  // namespace copse::scheduler
