// make_batch: levels B graphs with an iterative O(N + E) pass and renumbers
// their vertices level-major into one GraphBatch.
#include "scheduler/graph_batch.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "common/error.h"

namespace copse::scheduler {

namespace {

// level[v] = 0 for a leaf, else 1 + max(level(child)), written at level[0..n).
// Iterative post-order DFS; g must be validated (acyclic, children in range).
void compute_levels(const Graph& g, int* level) {
  const int n = g.num_vertices();
  std::vector<char> visited(n, 0);
  std::vector<int> cursor(g.child_ptr.begin(), g.child_ptr.end() - 1);  // next edge per vertex
  std::vector<int> stack;
  std::fill(level, level + n, 0);
  for (int s = 0; s < n; ++s) {
    if (visited[s]) continue;
    visited[s] = 1;
    stack.push_back(s);
    while (!stack.empty()) {
      const int v = stack.back();
      if (cursor[v] < g.child_ptr[v + 1]) {
        const int c = g.children[cursor[v]++];
        if (!visited[c]) {
          visited[c] = 1;
          stack.push_back(c);
        } else {
          level[v] = std::max(level[v], level[c] + 1);  // c is finished: the graph is acyclic
        }
        continue;
      }
      stack.pop_back();  // all children done: level[v] is final
      if (!stack.empty()) {
        const int p = stack.back();
        level[p] = std::max(level[p], level[v] + 1);
      }
    }
  }
}

// The run c_i = idx[i * step] = start + i * stride (stride >= 1) over
// i in [0, n), if the indices form one; a -1 (missing child) breaks it.
StridedRun find_strided_run(const int* idx, int step, int n) {
  if (n <= 0 || idx[0] < 0) return {};
  const int stride = n > 1 ? idx[step] - idx[0] : 1;
  if (stride < 1) return {};
  for (int i = 1; i < n; ++i)
    if (idx[static_cast<size_t>(i) * step] != idx[0] + static_cast<long>(i) * stride) return {};
  return {idx[0], stride};
}

}  // namespace

GraphBatch make_batch(const std::vector<const Graph*>& graphs, const BatchOptions& opts) {
  if (opts.num_slots < 0) fail("make_batch: num_slots is {}, must be >= 0", opts.num_slots);
  const int B = static_cast<int>(graphs.size());
  int64_t total_vertices = 0, total_edges = 0;
  for (int g = 0; g < B; ++g) {
    if (graphs[g] == nullptr) fail("make_batch: graph {} of the batch is null", g);
    graphs[g]->validate();
    total_vertices += graphs[g]->num_vertices();
    total_edges += graphs[g]->num_edges();
  }
  if (total_vertices > INT_MAX || total_edges > INT_MAX)
    fail("make_batch: batch too large ({} vertices, {} edges; at most {} each)", total_vertices,
         total_edges, INT_MAX);

  GraphBatch b;
  b.num_graphs = B;
  b.num_rows = static_cast<int>(total_vertices);
  b.num_edges = static_cast<int>(total_edges);
  b.num_slots = opts.num_slots;
  const int N = b.num_rows, E = b.num_edges, S = b.num_slots;

  // Levels of every (graph, vertex), indexed like row_of_vertex.
  b.vertex_offset.assign(B + 1, 0);
  for (int g = 0; g < B; ++g) b.vertex_offset[g + 1] = b.vertex_offset[g] + graphs[g]->num_vertices();
  std::vector<int> level(N);  // [N] by global vertex id
  int num_levels = 0;
  for (int g = 0; g < B; ++g) {
    const int n = graphs[g]->num_vertices();
    int* lv = level.data() + b.vertex_offset[g];
    compute_levels(*graphs[g], lv);
    for (int v = 0; v < n; ++v) num_levels = std::max(num_levels, lv[v] + 1);
  }

  // Counting sort by level; inside a level, graphs tallest first (stable),
  // then vertex order, so that chains line up (see StridedRun).
  std::vector<int> height(B, 0);  // [B] levels of each graph
  for (int g = 0; g < B; ++g)
    for (int x = b.vertex_offset[g]; x < b.vertex_offset[g + 1]; ++x)
      height[g] = std::max(height[g], level[x] + 1);
  std::vector<int> graph_order(B);  // [B] graphs by height, descending
  for (int g = 0; g < B; ++g) graph_order[g] = g;
  std::stable_sort(graph_order.begin(), graph_order.end(),
                   [&](int a, int c) { return height[a] > height[c]; });
  std::vector<int> depth_ptr(num_levels + 1, 0);  // [levels+1] rows per depth
  for (int x = 0; x < N; ++x) ++depth_ptr[level[x] + 1];
  for (int l = 0; l < num_levels; ++l) depth_ptr[l + 1] += depth_ptr[l];
  b.row_of_vertex.resize(N);
  std::vector<int> vertex_of_row(N);  // [N] global vertex id
  {
    std::vector<int> next(depth_ptr.begin(), depth_ptr.end() - 1);
    for (int g : graph_order) {
      for (int x = b.vertex_offset[g]; x < b.vertex_offset[g + 1]; ++x) {
        const int r = next[level[x]]++;
        b.row_of_vertex[x] = r;
        vertex_of_row[r] = x;
      }
    }
  }
  b.graph_of_row.resize(N);
  for (int g = 0; g < B; ++g)
    for (int x = b.vertex_offset[g]; x < b.vertex_offset[g + 1]; ++x)
      b.graph_of_row[b.row_of_vertex[x]] = g;

  // Without batching every row is its own level; the row order (by depth)
  // is already topological, so only level_ptr differs.
  if (opts.one_vertex_per_level) {
    b.num_levels = N;
    b.level_ptr.resize(N + 1);
    for (int r = 0; r <= N; ++r) b.level_ptr[r] = r;
  } else {
    b.num_levels = num_levels;
    b.level_ptr = std::move(depth_ptr);
  }

  // Child CSR and slot table in row numbering; edges by parent row then slot.
  b.child_ptr.assign(N + 1, 0);
  b.edge_child.resize(E);
  b.edge_parent.resize(E);
  b.slot_child.assign(static_cast<size_t>(N) * S, -1);
  b.input.resize(N);
  b.label.resize(N);
  for (int r = 0; r < N; ++r) {
    const int x = vertex_of_row[r];
    const int g = b.graph_of_row[r];
    const Graph& gr = *graphs[g];
    const int v = x - b.vertex_offset[g];
    const int* row_of = b.row_of_vertex.data() + b.vertex_offset[g];
    int e = b.child_ptr[r];
    for (int k = 0; k < gr.num_children(v); ++k, ++e) {
      const int c = row_of[gr.children[gr.child_ptr[v] + k]];
      b.edge_child[e] = c;
      b.edge_parent[e] = r;
      if (k < S) b.slot_child[static_cast<size_t>(r) * S + k] = c;
    }
    b.child_ptr[r + 1] = e;
    b.input[r] = gr.input[v];
    b.label[r] = gr.label[v];
  }
  COPSE_ASSERT(b.child_ptr[N] == E);

  b.level_max_children.assign(b.num_levels, 0);
  for (int l = 0; l < b.num_levels; ++l)
    for (int r = b.level_ptr[l]; r < b.level_ptr[l + 1]; ++r)
      b.level_max_children[l] = std::max(b.level_max_children[l], b.child_ptr[r + 1] - b.child_ptr[r]);

  // Strided runs per level: of every slot over the level's rows, and of
  // edge_child over the level's edges.
  b.slot_run.assign(static_cast<size_t>(b.num_levels) * S, StridedRun());
  b.edge_run.assign(b.num_levels, StridedRun());
  for (int l = 0; l < b.num_levels; ++l) {
    const int r0 = b.level_ptr[l], n = b.level_ptr[l + 1] - r0;
    for (int k = 0; k < S; ++k)
      b.slot_run[static_cast<size_t>(l) * S + k] =
          find_strided_run(b.slot_child.data() + static_cast<size_t>(r0) * S + k, S, n);
    const int e0 = b.child_ptr[r0];
    b.edge_run[l] = find_strided_run(b.edge_child.data() + e0, 1, b.child_ptr[r0 + n] - e0);
  }

  // Parent CSR: a counting sort of the edges by child row; edges come in
  // ascending parent row, so each row's parents are ascending.
  b.parent_ptr.assign(N + 1, 0);
  for (int e = 0; e < E; ++e) ++b.parent_ptr[b.edge_child[e] + 1];
  for (int r = 0; r < N; ++r) b.parent_ptr[r + 1] += b.parent_ptr[r];
  b.parents.resize(E);
  b.parent_edge.resize(E);
  {
    std::vector<int> next(b.parent_ptr.begin(), b.parent_ptr.end() - 1);
    for (int e = 0; e < E; ++e) {
      const int slot = next[b.edge_child[e]]++;
      b.parents[slot] = b.edge_parent[e];
      b.parent_edge[slot] = e;
    }
  }

  // Roots: vertices without parents, per graph in vertex order.
  b.root_ptr.assign(B + 1, 0);
  for (int g = 0; g < B; ++g) {
    for (int x = b.vertex_offset[g]; x < b.vertex_offset[g + 1]; ++x) {
      const int r = b.row_of_vertex[x];
      if (b.parent_ptr[r] == b.parent_ptr[r + 1]) b.root_rows.push_back(r);
    }
    b.root_ptr[g + 1] = static_cast<int>(b.root_rows.size());
  }
  return b;
}

GraphBatch make_batch(const std::vector<Graph>& graphs, const BatchOptions& opts) {
  std::vector<const Graph*> ptrs;
  ptrs.reserve(graphs.size());
  for (const Graph& g : graphs) ptrs.push_back(&g);
  return make_batch(ptrs, opts);
}

}  // namespace copse::scheduler
