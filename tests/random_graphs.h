// Random input structures for the reference and gradient-check tests:
// binary trees, n-ary trees, DAGs with shared children, with random inputs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "scheduler/graph.h"

namespace copse::reftest {

// Random word id in [0, vocab), or -1 (no input) with probability p_none.
inline int random_input(std::mt19937& rng, int vocab, double p_none) {
  if (std::uniform_real_distribution<double>(0, 1)(rng) < p_none) return -1;
  return std::uniform_int_distribution<int>(0, vocab - 1)(rng);
}

// Renames vertex v to perm[v] so children may have larger ids than parents
// (the reference must not rely on the numbering).
inline scheduler::Graph shuffled(const scheduler::Graph& g, std::mt19937& rng) {
  const int n = g.num_vertices();
  std::vector<int> perm(n), inv(n);
  for (int v = 0; v < n; ++v) perm[v] = v;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int v = 0; v < n; ++v) inv[perm[v]] = v;
  scheduler::Graph out;
  out.name = g.name;
  for (int nv = 0; nv < n; ++nv) {
    int v = inv[nv];
    std::vector<int> kids;
    for (int e = g.child_ptr[v]; e < g.child_ptr[v + 1]; ++e) kids.push_back(perm[g.children[e]]);
    out.add_vertex(kids, g.input[v], g.label[v]);
  }
  return out;
}

// A binary tree over `leaves` leaves (SST-like): random pairs merged until
// one root; with probability p_unary a vertex gets a single child (slot 1
// absent). Leaves always carry a word; internal vertices carry one only with
// words_everywhere.
inline scheduler::Graph random_binary_tree(int leaves, std::mt19937& rng, int vocab,
                                           bool words_everywhere, double p_unary = 0.1) {
  scheduler::Graph g;
  g.name = "binary_tree";
  std::vector<int> pool;
  for (int i = 0; i < leaves; ++i) pool.push_back(g.add_vertex({}, random_input(rng, vocab, 0.05)));
  std::uniform_real_distribution<double> u01(0, 1);
  auto internal_input = [&] { return words_everywhere ? random_input(rng, vocab, 0.1) : -1; };
  for (;;) {
    const bool unary = u01(rng) < p_unary;
    if (pool.size() == 1 && !unary) break;
    if (unary) {
      size_t a = std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng);
      pool[a] = g.add_vertex({pool[a]}, internal_input());
      continue;
    }
    size_t a = std::uniform_int_distribution<size_t>(0, pool.size() - 2)(rng);
    int p =
        g.add_vertex({pool[a], pool[a + 1]}, internal_input());  // adjacent: a constituency tree
    pool.erase(pool.begin() + a, pool.begin() + a + 2);
    pool.insert(pool.begin() + a, p);
  }
  return shuffled(g, rng);
}

// A tree of n vertices, each with 0..max_children children; children come in
// bursts so that wide vertices (max_children) appear as well as deep paths.
inline scheduler::Graph random_nary_tree(int n, int max_children, std::mt19937& rng, int vocab) {
  std::vector<std::vector<int>> kids(n);
  std::uniform_real_distribution<double> u01(0, 1);
  int last_parent = 0;
  for (int v = 1; v < n; ++v) {
    int p = last_parent;
    if (static_cast<int>(kids[p].size()) >= max_children || u01(rng) < 0.35) {
      do {
        // Half the time a recent vertex (deep paths), else any vertex (wide ones).
        int lo = u01(rng) < 0.5 ? std::max(0, v - 3) : 0;
        p = std::uniform_int_distribution<int>(lo, v - 1)(rng);
      } while (static_cast<int>(kids[p].size()) >= max_children);
    }
    kids[p].push_back(v);
    last_parent = p;
  }
  scheduler::Graph g;
  g.name = "nary_tree";
  for (int v = 0; v < n; ++v) g.add_vertex(kids[v], random_input(rng, vocab, 0.1));
  return shuffled(g, rng);
}

// A DAG of n vertices: vertex v takes 0..max_children distinct children among
// the earlier vertices (mostly recent ones), so many vertices have several
// parents and the graph may have several roots.
inline scheduler::Graph random_dag(int n, int max_children, std::mt19937& rng, int vocab) {
  scheduler::Graph g;
  g.name = "dag";
  std::uniform_real_distribution<double> u01(0, 1);
  for (int v = 0; v < n; ++v) {
    int k = v == 0 || u01(rng) < 0.2
                ? 0
                : std::uniform_int_distribution<int>(1, std::min(v, max_children))(rng);
    std::vector<int> kids;
    while (static_cast<int>(kids.size()) < k) {
      int lo = u01(rng) < 0.7 ? std::max(0, v - 6) : 0;
      int c = std::uniform_int_distribution<int>(lo, v - 1)(rng);
      if (std::find(kids.begin(), kids.end(), c) == kids.end()) kids.push_back(c);
    }
    g.add_vertex(kids, random_input(rng, vocab, 0.1));
  }
  return shuffled(g, rng);
}

// Chains (sequences) of the given lengths; each vertex carries a random word,
// or none with probability p_none.
inline std::vector<scheduler::Graph> random_chains(std::uint32_t seed,
                                                   const std::vector<int>& lengths, int vocab,
                                                   double p_none = 0.05) {
  std::mt19937 rng(seed);
  std::vector<scheduler::Graph> graphs;
  for (int n : lengths) {
    std::vector<int> in(n);
    for (int& x : in) x = random_input(rng, vocab, p_none);
    graphs.push_back(scheduler::make_chain(n, in));
  }
  return graphs;
}

// A graph of one vertex.
inline scheduler::Graph single_vertex(int input) {
  scheduler::Graph g;
  g.name = "single";
  g.add_vertex({}, input);
  return g;
}

}  // namespace copse::reftest
