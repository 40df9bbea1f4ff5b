// The graph builders of models/graphs.h.
#include "models/graphs.h"

#include <cmath>
#include <limits>

#include "common/error.h"

namespace copse {

namespace {
std::string label_of(const std::string& name) { return name.empty() ? "graph" : name; }
}  // namespace

Graph tree_from_parents(const std::vector<int>& parent, const std::string& name, int base) {
  const int n = static_cast<int>(parent.size());
  if (n == 0) fail("{}: a tree needs at least one vertex", label_of(name));
  std::vector<std::vector<int>> kids(n);
  int root = -1;
  for (int v = 0; v < n; ++v) {
    const int p = parent[v] - base;
    if (p == -1) {
      if (root >= 0)
        fail("{}: two roots, vertex {} and vertex {} (parent {})", label_of(name), root + base,
             v + base, base - 1);
      root = v;
    } else if (p < -1 || p >= n) {
      fail("{}: vertex {} has parent {}, outside {}..{} (and {} for the root)", label_of(name),
           v + base, parent[v], base, n - 1 + base, base - 1);
    } else if (p == v) {
      fail("{}: vertex {} is its own parent", label_of(name), v + base);
    } else {
      kids[p].push_back(v);
    }
  }
  if (root < 0) fail("{}: no root (no vertex has parent {})", label_of(name), base - 1);
  Graph g = graph_from_children(kids, name);
  return g;
}

Graph graph_from_children(const std::vector<std::vector<int>>& children, const std::string& name) {
  Graph g;
  g.name = name;
  for (const auto& k : children) g.add_vertex(k);
  g.validate();
  return g;
}

Graph dag_from_edges(int n, const std::vector<std::pair<int, int>>& edges,
                     const std::string& name) {
  if (n <= 0) fail("{}: a graph needs at least one vertex, got {}", label_of(name), n);
  std::vector<std::vector<int>> kids(n);
  for (size_t e = 0; e < edges.size(); ++e) {
    const auto [p, c] = edges[e];
    if (p < 0 || p >= n || c < 0 || c >= n)
      fail("{}: edge {} ({} -> {}) names a vertex outside 0..{}", label_of(name), e, p, c, n - 1);
    kids[p].push_back(c);
  }
  return graph_from_children(kids, name);
}

Graph chain(int n, const std::string& name) {
  if (n <= 0) fail("{}: a chain needs at least one vertex, got {}", label_of(name), n);
  Graph g = scheduler::make_chain(n);
  g.name = name;
  return g;
}

void set_inputs(Graph& g, const std::vector<int>& ids) {
  if (static_cast<int>(ids.size()) != g.num_vertices())
    fail("{}: {} input ids for {} vertices", label_of(g.name), ids.size(), g.num_vertices());
  for (size_t v = 0; v < ids.size(); ++v)
    if (ids[v] < -1) fail("{}: vertex {} has input id {} (-1 or more)", label_of(g.name), v, ids[v]);
  g.input = ids;
}

void set_label(Graph& g, int v, int label) {
  if (v < 0 || v >= g.num_vertices())
    fail("{}: no vertex {} to label (it has {})", label_of(g.name), v, g.num_vertices());
  if (label < -1) fail("{}: vertex {}: label {} (-1 or more)", label_of(g.name), v, label);
  g.label[v] = label;
}

int root_of(const Graph& g) {
  std::vector<char> has_parent(g.num_vertices(), 0);
  for (int c : g.children) has_parent.at(c) = 1;
  int root = -1;
  for (int v = 0; v < g.num_vertices(); ++v) {
    if (has_parent[v]) continue;
    if (root >= 0)
      fail("{}: a graph-level value needs one root; vertices {} and {} have no parent",
           label_of(g.name), root, v);
    root = v;
  }
  if (root < 0) fail("{}: no root", label_of(g.name));
  return root;
}

void set_graph_label(Graph& g, int label) { set_label(g, root_of(g), label); }

void set_graph_target(Example& e, const std::vector<float>& target) {
  if (target.empty()) fail("{}: an empty target", label_of(e.graph.name));
  const int root = root_of(e.graph);
  const size_t w = target.size();
  e.targets.assign(w * e.graph.num_vertices(), std::numeric_limits<float>::quiet_NaN());
  for (size_t d = 0; d < w; ++d) {
    if (!std::isfinite(target[d]))
      fail("{}: target entry {} is not finite ({})", label_of(e.graph.name), d, target[d]);
    e.targets[root * w + d] = target[d];
  }
}

int Example::num_vertices() const {
  int n = graph.num_vertices();
  for (const Graph& g : more) n += g.num_vertices();
  return n;
}

}  // namespace copse
