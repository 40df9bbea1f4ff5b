// Tests of Graph validation and GraphBatch leveling: invariants on random
// trees and DAGs checked against an independent level computation.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/error.h"
#include "scheduler/graph.h"
#include "scheduler/graph_batch.h"

namespace copse::scheduler {
namespace {

// Reference levels by repeated relaxation until nothing changes (small graphs).
std::vector<int> relaxed_levels(const Graph& g) {
  std::vector<int> level(g.num_vertices(), 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (int v = 0; v < g.num_vertices(); ++v) {
      for (int e = g.child_ptr[v]; e < g.child_ptr[v + 1]; ++e) {
        if (level[v] < level[g.children[e]] + 1) {
          level[v] = level[g.children[e]] + 1;
          changed = true;
        }
      }
    }
  }
  return level;
}

// Renames vertex v to perm[v], so children may have larger ids than parents.
Graph permuted(const Graph& g, std::mt19937& rng) {
  const int n = g.num_vertices();
  std::vector<int> perm(n), inv(n);
  for (int v = 0; v < n; ++v) perm[v] = v;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int v = 0; v < n; ++v) inv[perm[v]] = v;
  Graph out;
  out.name = g.name;
  for (int j = 0; j < n; ++j) {
    const int v = inv[j];
    std::vector<int> kids;
    for (int e = g.child_ptr[v]; e < g.child_ptr[v + 1]; ++e) kids.push_back(perm[g.children[e]]);
    out.add_vertex(kids, g.input[v], g.label[v]);
  }
  return out;
}

// A random tree: leaves are merged max_children at a time (at least 2 unless
// max_children == 1) until one root remains.
Graph random_tree(int num_leaves, int max_children, std::mt19937& rng) {
  Graph g;
  std::vector<int> pool;
  for (int i = 0; i < num_leaves; ++i) pool.push_back(g.add_vertex({}, 100 + i, i % 5));
  while (pool.size() > 1) {
    const int hi = std::min<int>(max_children, static_cast<int>(pool.size()));
    const int k = std::uniform_int_distribution<int>(std::min(2, hi), hi)(rng);
    std::vector<int> kids;
    for (int i = 0; i < k; ++i) {
      const int pick = std::uniform_int_distribution<int>(0, static_cast<int>(pool.size()) - 1)(rng);
      kids.push_back(pool[pick]);
      pool.erase(pool.begin() + pick);
    }
    pool.push_back(g.add_vertex(kids, -1, std::uniform_int_distribution<int>(-1, 4)(rng)));
  }
  return permuted(g, rng);
}

// A random DAG: each vertex takes 0..max_children children among earlier
// vertices, so children are shared and may repeat; then ids are shuffled.
Graph random_dag(int n, int max_children, std::mt19937& rng) {
  Graph g;
  for (int v = 0; v < n; ++v) {
    std::vector<int> kids;
    if (v > 0) {
      const int k = std::uniform_int_distribution<int>(0, max_children)(rng);
      for (int i = 0; i < k; ++i) kids.push_back(std::uniform_int_distribution<int>(0, v - 1)(rng));
    }
    g.add_vertex(kids, 7 * v, v % 3 == 0 ? -1 : v);
  }
  return permuted(g, rng);
}

int level_of_row(const GraphBatch& b, int r) {
  return static_cast<int>(std::upper_bound(b.level_ptr.begin(), b.level_ptr.end(), r) -
                          b.level_ptr.begin()) - 1;
}

// Checks every GraphBatch invariant against the source graphs and reference
// levels (ref[g][v]).
void check_batch(const std::vector<Graph>& graphs, const std::vector<std::vector<int>>& ref,
                 const GraphBatch& b, const BatchOptions& opts) {
  const int B = static_cast<int>(graphs.size());
  int N = 0, E = 0, max_level = -1;
  for (int g = 0; g < B; ++g) {
    N += graphs[g].num_vertices();
    E += graphs[g].num_edges();
    for (int l : ref[g]) max_level = std::max(max_level, l);
  }
  ASSERT_EQ(b.num_graphs, B);
  ASSERT_EQ(b.num_rows, N);
  ASSERT_EQ(b.num_edges, E);
  ASSERT_EQ(b.num_slots, opts.num_slots);
  const int S = b.num_slots;
  ASSERT_EQ(b.num_levels, opts.one_vertex_per_level ? N : max_level + 1);
  const int L = b.num_levels;

  ASSERT_EQ(b.level_ptr.size(), static_cast<size_t>(L + 1));
  ASSERT_EQ(b.level_ptr.front(), 0);
  ASSERT_EQ(b.level_ptr.back(), N);
  for (int l = 0; l < L; ++l) ASSERT_GT(b.level_size(l), 0) << "level " << l;
  ASSERT_EQ(b.child_ptr.size(), static_cast<size_t>(N + 1));
  ASSERT_EQ(b.edge_child.size(), static_cast<size_t>(E));
  ASSERT_EQ(b.edge_parent.size(), static_cast<size_t>(E));
  ASSERT_EQ(b.slot_child.size(), static_cast<size_t>(N) * S);
  ASSERT_EQ(b.parent_ptr.size(), static_cast<size_t>(N + 1));
  ASSERT_EQ(b.parents.size(), static_cast<size_t>(E));
  ASSERT_EQ(b.parent_edge.size(), static_cast<size_t>(E));
  ASSERT_EQ(b.level_max_children.size(), static_cast<size_t>(L));
  ASSERT_EQ(b.input.size(), static_cast<size_t>(N));
  ASSERT_EQ(b.label.size(), static_cast<size_t>(N));
  ASSERT_EQ(b.graph_of_row.size(), static_cast<size_t>(N));
  ASSERT_EQ(b.row_of_vertex.size(), static_cast<size_t>(N));
  ASSERT_EQ(b.vertex_offset.size(), static_cast<size_t>(B + 1));
  ASSERT_EQ(b.root_ptr.size(), static_cast<size_t>(B + 1));

  // Renumbering is a bijection; rows hold their vertex's data.
  std::vector<int> seen(N, 0);
  std::vector<int> ref_row_level(N);
  std::vector<std::pair<int, int>> vertex_of_row(N);
  for (int g = 0; g < B; ++g) {
    ASSERT_EQ(b.vertex_offset[g + 1] - b.vertex_offset[g], graphs[g].num_vertices());
    for (int v = 0; v < graphs[g].num_vertices(); ++v) {
      const int r = b.row_of_vertex[b.vertex_offset[g] + v];
      ASSERT_GE(r, 0);
      ASSERT_LT(r, N);
      ASSERT_EQ(seen[r]++, 0) << "row " << r << " used twice";
      vertex_of_row[r] = {g, v};
      ref_row_level[r] = ref[g][v];
      EXPECT_EQ(b.graph_of_row[r], g);
      EXPECT_EQ(b.input[r], graphs[g].input[v]);
      EXPECT_EQ(b.label[r], graphs[g].label[v]);
    }
  }

  // Levels: level-major, (graph height descending, graph, vertex) order
  // inside a level; in batched mode the level of a row is exactly its
  // reference level.
  std::vector<int> height(B, 0);
  for (int g = 0; g < B; ++g)
    for (int l : ref[g]) height[g] = std::max(height[g], l + 1);
  auto order_key = [&](int r) {
    return std::make_tuple(-height[vertex_of_row[r].first], vertex_of_row[r].first,
                           vertex_of_row[r].second);
  };
  for (int r = 0; r < N; ++r) {
    if (opts.one_vertex_per_level) {
      EXPECT_EQ(b.level_size(r), 1);
      if (r > 0) {
        EXPECT_LE(ref_row_level[r - 1], ref_row_level[r]);
      }
    } else {
      EXPECT_EQ(level_of_row(b, r), ref_row_level[r]) << "row " << r;
    }
    if (r > 0 && level_of_row(b, r - 1) == level_of_row(b, r)) {
      EXPECT_LT(order_key(r - 1), order_key(r)) << "row " << r;
    }
  }

  // Child CSR, edges and slot table match the source children in slot order.
  ASSERT_EQ(b.child_ptr[0], 0);
  for (int r = 0; r < N; ++r) {
    const auto [g, v] = vertex_of_row[r];
    const Graph& gr = graphs[g];
    ASSERT_EQ(b.child_ptr[r + 1] - b.child_ptr[r], gr.num_children(v)) << "row " << r;
    int max_child_level = -1;
    for (int k = 0; k < gr.num_children(v); ++k) {
      const int e = b.child_ptr[r] + k;
      const int c = b.row_of_vertex[b.vertex_offset[g] + gr.children[gr.child_ptr[v] + k]];
      EXPECT_EQ(b.edge_child[e], c);
      EXPECT_EQ(b.edge_parent[e], r);
      EXPECT_GT(level_of_row(b, r), level_of_row(b, c)) << "edge " << e;
      EXPECT_GT(r, c) << "children rows come before parents";
      max_child_level = std::max(max_child_level, ref_row_level[c]);
      if (k < S) {
        EXPECT_EQ(b.slot_child[static_cast<size_t>(r) * S + k], c);
      }
    }
    EXPECT_EQ(ref_row_level[r], max_child_level + 1) << "reference level of row " << r;
    for (int k = gr.num_children(v); k < S; ++k)
      EXPECT_EQ(b.slot_child[static_cast<size_t>(r) * S + k], -1);
  }

  // Edge ranges per level are contiguous and hold exactly that level's edges.
  for (int l = 0; l < L; ++l) {
    int max_children = 0;
    for (int r = b.level_begin(l); r < b.level_end(l); ++r)
      max_children = std::max(max_children, b.child_ptr[r + 1] - b.child_ptr[r]);
    EXPECT_EQ(b.level_max_children[l], max_children) << "level " << l;
    if (l + 1 < L) {
      EXPECT_EQ(b.edge_end(l), b.edge_begin(l + 1));
    }
    for (int e = b.edge_begin(l); e < b.edge_end(l); ++e)
      EXPECT_EQ(level_of_row(b, b.edge_parent[e]), l) << "edge " << e;
  }

  // Strided runs: exactly where every row (edge) of a level has the child and
  // the children are start, start + stride, ... with stride >= 1.
  ASSERT_EQ(b.slot_run.size(), static_cast<size_t>(L) * S);
  ASSERT_EQ(b.edge_run.size(), static_cast<size_t>(L));
  auto expected_run = [](const std::vector<int>& kids) {
    StridedRun run;
    if (kids.empty() || kids[0] < 0) return run;
    const int stride = kids.size() > 1 ? kids[1] - kids[0] : 1;
    if (stride < 1) return run;
    for (size_t i = 0; i < kids.size(); ++i)
      if (kids[i] != kids[0] + static_cast<int>(i) * stride) return run;
    return StridedRun{kids[0], stride};
  };
  for (int l = 0; l < L; ++l) {
    for (int k = 0; k < S; ++k) {
      std::vector<int> kids;
      for (int r = b.level_begin(l); r < b.level_end(l); ++r)
        kids.push_back(b.slot_child[static_cast<size_t>(r) * S + k]);
      const StridedRun want = expected_run(kids), got = b.run_of_slot(l, k);
      EXPECT_EQ(got.start, want.start) << "level " << l << " slot " << k;
      EXPECT_EQ(got.stride, want.stride) << "level " << l << " slot " << k;
    }
    const StridedRun want = expected_run(std::vector<int>(b.edge_child.begin() + b.edge_begin(l),
                                                          b.edge_child.begin() + b.edge_end(l)));
    EXPECT_EQ(b.edge_run[l].start, want.start) << "level " << l << " edges";
    EXPECT_EQ(b.edge_run[l].stride, want.stride) << "level " << l << " edges";
  }

  // Parent CSR: the inverse of the edges, ascending, with the edge of each entry.
  std::vector<std::pair<int, int>> want, got;  // (child row, parent row)
  for (int e = 0; e < E; ++e) want.emplace_back(b.edge_child[e], b.edge_parent[e]);
  std::sort(want.begin(), want.end());
  ASSERT_EQ(b.parent_ptr[0], 0);
  for (int r = 0; r < N; ++r) {
    ASSERT_LE(b.parent_ptr[r], b.parent_ptr[r + 1]);
    for (int i = b.parent_ptr[r]; i < b.parent_ptr[r + 1]; ++i) {
      got.emplace_back(r, b.parents[i]);
      if (i > b.parent_ptr[r]) {
        EXPECT_LE(b.parents[i - 1], b.parents[i]);
      }
      const int e = b.parent_edge[i];
      ASSERT_GE(e, 0);
      ASSERT_LT(e, E);
      EXPECT_EQ(b.edge_child[e], r);
      EXPECT_EQ(b.edge_parent[e], b.parents[i]);
    }
  }
  EXPECT_EQ(got, want);
  std::vector<int> parent_edges(b.parent_edge);
  std::sort(parent_edges.begin(), parent_edges.end());
  for (int e = 0; e < E; ++e) ASSERT_EQ(parent_edges[e], e) << "each edge once in parent_edge";

  // Roots: vertices that are nobody's child, in vertex order per graph.
  std::vector<int> expected_roots, expected_root_ptr{0};
  for (int g = 0; g < B; ++g) {
    std::vector<char> is_child(graphs[g].num_vertices(), 0);
    for (int c : graphs[g].children) is_child[c] = 1;
    for (int v = 0; v < graphs[g].num_vertices(); ++v)
      if (!is_child[v]) expected_roots.push_back(b.row_of_vertex[b.vertex_offset[g] + v]);
    expected_root_ptr.push_back(static_cast<int>(expected_roots.size()));
  }
  EXPECT_EQ(b.root_rows, expected_roots);
  EXPECT_EQ(b.root_ptr, expected_root_ptr);
}

void check_both_modes(const std::vector<Graph>& graphs, const std::vector<std::vector<int>>& ref,
                      int num_slots) {
  for (bool one : {false, true}) {
    SCOPED_TRACE(one ? "one_vertex_per_level" : "batched");
    BatchOptions opts;
    opts.num_slots = num_slots;
    opts.one_vertex_per_level = one;
    check_batch(graphs, ref, make_batch(graphs, opts), opts);
  }
}

std::vector<std::vector<int>> relaxed_levels(const std::vector<Graph>& graphs) {
  std::vector<std::vector<int>> ref;
  for (const Graph& g : graphs) ref.push_back(relaxed_levels(g));
  return ref;
}

// Expects make_batch on `g` to throw a copse::Error whose message holds all of `parts`.
void expect_error(const Graph& g, const std::vector<std::string>& parts) {
  try {
    make_batch(std::vector<Graph>{g});
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& err) {
    const std::string msg = err.what();
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

TEST(GraphBatch, HandWorkedExample) {
  Graph a;  // levels 0 0 1
  a.add_vertex({}, 10);
  a.add_vertex({}, 11);
  a.add_vertex({0, 1}, 12, 1);
  Graph c;  // levels 0 0 0 1 2; vertex 3 has three children, one beyond 2 slots
  c.add_vertex({}, 20);
  c.add_vertex({}, 21);
  c.add_vertex({}, 22);
  c.add_vertex({2, 0, 1}, 23);
  c.add_vertex({3, 0}, 24, 3);
  const GraphBatch b = make_batch(std::vector<Graph>{a, c});
  // c is the taller graph (3 levels against 2): its rows come first in a level.
  EXPECT_EQ(b.num_levels, 3);
  EXPECT_EQ(b.level_ptr, (std::vector<int>{0, 5, 7, 8}));
  EXPECT_EQ(b.row_of_vertex, (std::vector<int>{3, 4, 6, 0, 1, 2, 5, 7}));
  EXPECT_EQ(b.vertex_offset, (std::vector<int>{0, 3, 8}));
  EXPECT_EQ(b.child_ptr, (std::vector<int>{0, 0, 0, 0, 0, 0, 3, 5, 7}));
  EXPECT_EQ(b.edge_child, (std::vector<int>{2, 0, 1, 3, 4, 5, 0}));
  EXPECT_EQ(b.edge_parent, (std::vector<int>{5, 5, 5, 6, 6, 7, 7}));
  EXPECT_EQ(b.slot_child, (std::vector<int>{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                            2, 0, 3, 4, 5, 0}));
  EXPECT_EQ(b.parent_ptr, (std::vector<int>{0, 2, 3, 4, 5, 6, 7, 7, 7}));
  EXPECT_EQ(b.parents, (std::vector<int>{5, 7, 5, 5, 6, 6, 7}));
  EXPECT_EQ(b.parent_edge, (std::vector<int>{1, 6, 2, 0, 3, 4, 5}));
  EXPECT_EQ(b.level_max_children, (std::vector<int>{0, 3, 2}));
  EXPECT_EQ(b.input, (std::vector<int>{20, 21, 22, 10, 11, 23, 12, 24}));
  EXPECT_EQ(b.label, (std::vector<int>{-1, -1, -1, -1, -1, -1, 1, 3}));
  EXPECT_EQ(b.graph_of_row, (std::vector<int>{1, 1, 1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(b.root_ptr, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(b.root_rows, (std::vector<int>{6, 7}));
  EXPECT_EQ(b.edge_begin(1), 0);
  EXPECT_EQ(b.edge_end(1), 5);
  // Level 1: slot 0 children 2, 3 (a run), slot 1 children 0, 4 (stride 4),
  // edges 2 0 1 3 4 (none); level 2 has one row: each slot is a run.
  EXPECT_FALSE(b.run_of_slot(0, 0).found());
  EXPECT_EQ(b.run_of_slot(1, 0).start, 2);
  EXPECT_EQ(b.run_of_slot(1, 0).stride, 1);
  EXPECT_EQ(b.run_of_slot(1, 1).start, 0);
  EXPECT_EQ(b.run_of_slot(1, 1).stride, 4);
  EXPECT_FALSE(b.edge_run[1].found());
  EXPECT_EQ(b.run_of_slot(2, 0).start, 5);
  EXPECT_EQ(b.run_of_slot(2, 1).start, 0);
  EXPECT_FALSE(b.edge_run[2].found()) << "edges 5, 0 descend";

  BatchOptions one;
  one.one_vertex_per_level = true;
  const GraphBatch s = make_batch(std::vector<Graph>{a, c}, one);
  EXPECT_EQ(s.num_levels, 8);
  EXPECT_EQ(s.level_ptr, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(s.level_max_children, (std::vector<int>{0, 0, 0, 0, 0, 3, 2, 2}));
  EXPECT_EQ(s.row_of_vertex, b.row_of_vertex);
}

TEST(GraphBatch, PerfectBinaryTreeLevelSizes) {
  Graph g;
  std::vector<int> layer;
  for (int i = 0; i < 16; ++i) layer.push_back(g.add_vertex({}, i));
  while (layer.size() > 1) {
    std::vector<int> next;
    for (size_t i = 0; i < layer.size(); i += 2) next.push_back(g.add_vertex({layer[i], layer[i + 1]}));
    layer = next;
  }
  const GraphBatch b = make_batch(std::vector<Graph>{g, g});
  ASSERT_EQ(b.num_levels, 5);
  for (int l = 0; l < 5; ++l) EXPECT_EQ(b.level_size(l), 2 * (16 >> l)) << "level " << l;
  check_both_modes({g, g}, relaxed_levels(std::vector<Graph>{g, g}), 2);
}

TEST(GraphBatch, RandomBinaryTrees) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<Graph> graphs;
    const int B = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int g = 0; g < B; ++g)
      graphs.push_back(random_tree(std::uniform_int_distribution<int>(1, 60)(rng), 2, rng));
    SCOPED_TRACE(trial);
    check_both_modes(graphs, relaxed_levels(graphs), 2);
  }
}

TEST(GraphBatch, RandomNaryTrees) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<Graph> graphs;
    const int B = std::uniform_int_distribution<int>(1, 5)(rng);
    for (int g = 0; g < B; ++g)
      graphs.push_back(random_tree(std::uniform_int_distribution<int>(1, 80)(rng), 8, rng));
    SCOPED_TRACE(trial);
    check_both_modes(graphs, relaxed_levels(graphs), trial % 2 == 0 ? 3 : 8);
  }
}

TEST(GraphBatch, RandomDagsWithSharedChildren) {
  std::mt19937 rng(3);
  int shared = 0;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<Graph> graphs;
    const int B = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int g = 0; g < B; ++g)
      graphs.push_back(random_dag(std::uniform_int_distribution<int>(1, 150)(rng), 4, rng));
    SCOPED_TRACE(trial);
    check_both_modes(graphs, relaxed_levels(graphs), 2);
    const GraphBatch b = make_batch(graphs);
    for (int r = 0; r < b.num_rows; ++r) shared += b.parent_ptr[r + 1] - b.parent_ptr[r] > 1;
  }
  EXPECT_GT(shared, 0) << "the generator should produce shared children";
}

TEST(GraphBatch, MixedBatchWithSingleVertexGraphs) {
  std::mt19937 rng(4);
  std::vector<Graph> graphs;
  Graph single;
  single.add_vertex({}, 5, 2);
  graphs.push_back(single);
  graphs.push_back(random_tree(30, 2, rng));
  graphs.push_back(single);
  graphs.push_back(make_chain(9, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  graphs.push_back(random_dag(40, 3, rng));
  graphs.push_back(single);
  check_both_modes(graphs, relaxed_levels(graphs), 2);

  const GraphBatch only = make_batch(std::vector<Graph>{single});
  EXPECT_EQ(only.num_rows, 1);
  EXPECT_EQ(only.num_levels, 1);
  EXPECT_EQ(only.root_rows, (std::vector<int>{0}));
  EXPECT_EQ(only.input, (std::vector<int>{5}));
  EXPECT_EQ(only.label, (std::vector<int>{2}));
}

TEST(GraphBatch, PointerOverloadMatchesValueOverload) {
  std::mt19937 rng(5);
  std::vector<Graph> graphs{random_tree(20, 3, rng), random_dag(25, 3, rng)};
  const GraphBatch by_value = make_batch(graphs);
  const GraphBatch by_ptr = make_batch(std::vector<const Graph*>{&graphs[0], &graphs[1]});
  EXPECT_EQ(by_value.level_ptr, by_ptr.level_ptr);
  EXPECT_EQ(by_value.edge_child, by_ptr.edge_child);
  EXPECT_EQ(by_value.row_of_vertex, by_ptr.row_of_vertex);
  EXPECT_THROW(make_batch(std::vector<const Graph*>{&graphs[0], nullptr}), Error);
}

TEST(GraphBatch, LongChain) {
  const int n = 100000;
  std::vector<int> inputs(n);
  for (int i = 0; i < n; ++i) inputs[i] = n - i;
  const Graph g = make_chain(n, inputs);
  EXPECT_NO_THROW(g.validate());
  std::vector<int> ref(n);
  for (int i = 0; i < n; ++i) ref[i] = i;
  check_both_modes({g}, {ref}, 2);
  const GraphBatch b = make_batch(std::vector<Graph>{g});
  EXPECT_EQ(b.num_levels, n);
  EXPECT_EQ(b.root_rows, (std::vector<int>{n - 1}));
}

TEST(GraphBatch, LongChainReversedIds) {
  // Vertex i has child i+1: the DFS goes deep from vertex 0.
  const int n = 100000;
  Graph g;
  for (int i = 0; i < n; ++i) g.add_vertex(i + 1 < n ? std::vector<int>{i + 1} : std::vector<int>{});
  std::vector<int> ref(n);
  for (int i = 0; i < n; ++i) ref[i] = n - 1 - i;
  check_both_modes({g}, {ref}, 1);
}

TEST(GraphBatch, WideStar) {
  const int n = 100000;
  Graph g;
  std::vector<int> kids(n);
  for (int i = 0; i < n; ++i) kids[i] = i + 1;
  g.add_vertex(kids, -1, 1);
  for (int i = 0; i < n; ++i) g.add_vertex({}, i);
  std::vector<int> ref(n + 1, 0);
  ref[0] = 1;
  check_both_modes({g}, {ref}, 4);
  const GraphBatch b = make_batch(std::vector<Graph>{g});
  EXPECT_EQ(b.num_levels, 2);
  EXPECT_EQ(b.level_size(0), n);
  EXPECT_EQ(b.level_max_children, (std::vector<int>{0, n}));
}

TEST(GraphBatch, EmptyBatch) {
  const GraphBatch b = make_batch(std::vector<Graph>{});
  EXPECT_EQ(b.num_graphs, 0);
  EXPECT_EQ(b.num_rows, 0);
  EXPECT_EQ(b.num_edges, 0);
  EXPECT_EQ(b.num_levels, 0);
  EXPECT_EQ(b.level_ptr, (std::vector<int>{0}));
  EXPECT_EQ(b.child_ptr, (std::vector<int>{0}));
  EXPECT_EQ(b.parent_ptr, (std::vector<int>{0}));
  EXPECT_EQ(b.vertex_offset, (std::vector<int>{0}));
  EXPECT_EQ(b.root_ptr, (std::vector<int>{0}));
  EXPECT_TRUE(b.root_rows.empty());
}

TEST(GraphValidate, DanglingChild) {
  Graph g;
  g.name = "train.txt:17";
  for (int i = 0; i < 4; ++i) g.add_vertex({});
  g.add_vertex({0, 9});
  g.add_vertex({});
  g.add_vertex({-1});
  expect_error(g, {"train.txt:17: vertex 4: child 9 out of range (graph has 7 vertices)"});
  g.children[1] = 1;
  expect_error(g, {"train.txt:17: vertex 6: child -1 out of range"});
  g.children[2] = 5;
  EXPECT_NO_THROW(g.validate());
}

TEST(GraphValidate, SelfLoop) {
  Graph g;
  g.add_vertex({});
  g.add_vertex({0});
  g.add_vertex({1, 2});
  expect_error(g, {"graph: vertex 2: self-loop"});
}

TEST(GraphValidate, Cycle) {
  Graph g;
  g.name = "dev.json:3";
  g.add_vertex({1});     // 0 -> 1
  g.add_vertex({});      // 1
  g.add_vertex({4});     // 2 -> 4 -> 5 -> 3 -> 2
  g.add_vertex({2, 1});
  g.add_vertex({5});
  g.add_vertex({3});
  g.add_vertex({0, 2});  // 6 reaches the cycle
  expect_error(g, {"dev.json:3: cycle through vertex 2", "2 -> 4 -> 5 -> 3 -> 2"});
  EXPECT_THROW(g.validate(), Error);
}

TEST(GraphValidate, LongCycleIsIterative) {
  const int n = 100000;
  Graph g = make_chain(n);
  g.children.insert(g.children.begin(), n - 1);  // vertex 0 gets child n-1
  for (int v = 1; v <= n; ++v) ++g.child_ptr[v];
  expect_error(g, {"graph: cycle through vertex 0", "more)"});
}

TEST(GraphValidate, EmptyGraphAndBadLayout) {
  Graph empty;
  empty.name = "test.txt:4";
  expect_error(empty, {"test.txt:4: empty graph"});
  EXPECT_THROW(make_chain(0).validate(), Error);

  Graph g = make_chain(3);
  g.label.pop_back();
  expect_error(g, {"graph: label has 2 entries but input has 3"});
  g = make_chain(3);
  g.child_ptr.push_back(2);
  expect_error(g, {"child_ptr has 5 entries, expected 4"});
  g = make_chain(3);
  g.children.push_back(0);
  expect_error(g, {"child_ptr ends at 2 but there are 3 children"});
  EXPECT_THROW(make_chain(3, {1, 2}), Error);
}

TEST(GraphBatch, BatchErrorNamesTheBadGraph) {
  Graph good = make_chain(4);
  Graph bad = make_chain(4);
  bad.name = "batch.txt:2";
  bad.children[0] = 3;  // vertex 1's child is 3: 3 -> 2 -> 1 -> 3
  try {
    make_batch(std::vector<Graph>{good, bad});
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("batch.txt:2: cycle through vertex"), std::string::npos)
        << err.what();
  }
  BatchOptions opts;
  opts.num_slots = -1;
  EXPECT_THROW(make_batch(std::vector<Graph>{good}, opts), Error);
}

// Chains of different lengths, given in no particular order: the tallest go
// first in every level, so level l+1's children are the first rows of level l
// (slot and edge runs of stride 1 on every level above the leaves).
TEST(GraphBatch, ChainsOfMixedLengthsFormStridedRuns) {
  std::vector<Graph> graphs;
  std::vector<int> lengths{3, 1, 50, 7, 7, 12, 2, 50, 31};
  for (int n : lengths) graphs.push_back(make_chain(n));
  std::vector<std::vector<int>> ref;
  for (int n : lengths) {
    ref.emplace_back(n);
    for (int i = 0; i < n; ++i) ref.back()[i] = i;
  }
  check_both_modes(graphs, ref, 1);
  const GraphBatch b = make_batch(graphs, {1, false});
  ASSERT_EQ(b.num_levels, 50);
  EXPECT_FALSE(b.run_of_slot(0, 0).found());
  for (int l = 1; l < b.num_levels; ++l) {
    EXPECT_EQ(b.run_of_slot(l, 0).start, b.level_begin(l - 1)) << "level " << l;
    EXPECT_EQ(b.run_of_slot(l, 0).stride, 1) << "level " << l;
    EXPECT_EQ(b.edge_run[l].start, b.level_begin(l - 1)) << "level " << l;
    EXPECT_EQ(b.edge_run[l].stride, 1) << "level " << l;
  }
  // A perfect binary tree numbered layer by layer: stride 2 per slot, and its
  // edges (left, right, left, right, ...) in one run.
  Graph t;
  std::vector<int> layer;
  for (int i = 0; i < 8; ++i) layer.push_back(t.add_vertex({}, i));
  while (layer.size() > 1) {
    std::vector<int> next;
    for (size_t i = 0; i < layer.size(); i += 2) next.push_back(t.add_vertex({layer[i], layer[i + 1]}));
    layer = next;
  }
  const GraphBatch tb = make_batch(std::vector<Graph>{t});
  for (int l = 1; l < tb.num_levels; ++l) {
    EXPECT_EQ(tb.run_of_slot(l, 0).start, tb.level_begin(l - 1));
    EXPECT_EQ(tb.run_of_slot(l, 0).stride, tb.level_size(l) > 1 ? 2 : 1);
    EXPECT_EQ(tb.run_of_slot(l, 1).start, tb.level_begin(l - 1) + 1);
    EXPECT_EQ(tb.edge_run[l].start, tb.level_begin(l - 1));
    EXPECT_EQ(tb.edge_run[l].stride, 1);
  }
}

TEST(GraphBatch, ChainHelper) {
  const Graph g = make_chain(4, {7, 8, 9, 10});
  EXPECT_EQ(g.child_ptr, (std::vector<int>{0, 0, 1, 2, 3}));
  EXPECT_EQ(g.children, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(g.input, (std::vector<int>{7, 8, 9, 10}));
  EXPECT_EQ(g.label, (std::vector<int>{-1, -1, -1, -1}));
}

}  // namespace
}  // namespace copse::scheduler
