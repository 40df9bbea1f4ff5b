// Graph construction and validation: ranges, self-loops and cycles, found
// with an iterative depth-first search so deep chains cannot overflow the stack.
#include "scheduler/graph.h"

#include <string>
#include <vector>

#include "common/error.h"

namespace copse::scheduler {

namespace {

const std::string& graph_name(const Graph& g) {
  static const std::string fallback = "graph";
  return g.name.empty() ? fallback : g.name;
}

// The vertices of a cycle as "a -> b -> ... -> a" (each a child of the one
// before), shortened in the middle when long.
std::string format_cycle(const std::vector<int>& cycle) {
  constexpr size_t kMaxShown = 12;
  std::string out;
  for (size_t i = 0; i < cycle.size(); ++i) {
    if (cycle.size() > kMaxShown && i == kMaxShown / 2) {
      out += fmt::format(" -> ... ({} more)", cycle.size() - kMaxShown);
      i = cycle.size() - kMaxShown / 2;
    }
    out += fmt::format("{}{}", out.empty() ? "" : " -> ", cycle[i]);
  }
  return out + fmt::format(" -> {}", cycle.front());
}

void check_layout(const Graph& g) {
  const std::string& name = graph_name(g);
  const size_t n = g.input.size();
  if (g.label.size() != n)
    fail("{}: label has {} entries but input has {} (one per vertex)", name, g.label.size(), n);
  if (g.child_ptr.size() != n + 1)
    fail("{}: child_ptr has {} entries, expected {} (vertices + 1)", name, g.child_ptr.size(),
         n + 1);
  if (g.child_ptr[0] != 0) fail("{}: child_ptr[0] is {}, expected 0", name, g.child_ptr[0]);
  for (size_t v = 0; v < n; ++v) {
    if (g.child_ptr[v + 1] < g.child_ptr[v])
      fail("{}: vertex {}: child_ptr decreases ({} then {})", name, v, g.child_ptr[v],
           g.child_ptr[v + 1]);
  }
  if (static_cast<size_t>(g.child_ptr[n]) != g.children.size())
    fail("{}: child_ptr ends at {} but there are {} children", name, g.child_ptr[n],
         g.children.size());
}

}  // namespace

int Graph::add_vertex(const std::vector<int>& kids, int input_id, int label_id) {
  const int id = num_vertices();
  children.insert(children.end(), kids.begin(), kids.end());
  child_ptr.push_back(static_cast<int>(children.size()));
  input.push_back(input_id);
  label.push_back(label_id);
  return id;
}

void Graph::validate() const {
  const std::string& gname = graph_name(*this);
  check_layout(*this);
  const int n = num_vertices();
  if (n == 0) fail("{}: empty graph (no vertices)", gname);

  for (int v = 0; v < n; ++v) {
    for (int e = child_ptr[v]; e < child_ptr[v + 1]; ++e) {
      const int c = children[e];
      if (c < 0 || c >= n)
        fail("{}: vertex {}: child {} out of range (graph has {} vertices)", gname, v, c, n);
      if (c == v) fail("{}: vertex {}: self-loop (slot {} is the vertex itself)", gname, v,
                       e - child_ptr[v]);
    }
  }

  // Iterative DFS over child edges. A child still on the stack closes a cycle.
  enum : char { kNew, kOnStack, kDone };
  std::vector<char> state(n, kNew);
  std::vector<int> cursor(child_ptr.begin(), child_ptr.end() - 1);  // next edge per vertex
  std::vector<int> stack;
  for (int s = 0; s < n; ++s) {
    if (state[s] != kNew) continue;
    state[s] = kOnStack;
    stack.push_back(s);
    while (!stack.empty()) {
      const int v = stack.back();
      if (cursor[v] == child_ptr[v + 1]) {
        state[v] = kDone;
        stack.pop_back();
        continue;
      }
      const int c = children[cursor[v]++];
      if (state[c] == kNew) {
        state[c] = kOnStack;
        stack.push_back(c);
      } else if (state[c] == kOnStack) {
        size_t first = stack.size() - 1;
        while (stack[first] != c) --first;
        const std::vector<int> cycle(stack.begin() + first, stack.end());
        fail("{}: cycle through vertex {} ({}; each vertex a child of the one before)", gname, c,
             format_cycle(cycle));
      }
    }
  }
}

Graph make_chain(int n, const std::vector<int>& inputs) {
  if (n < 0) fail("make_chain: negative length {}", n);
  if (!inputs.empty() && static_cast<int>(inputs.size()) != n)
    fail("make_chain: {} inputs for a chain of {} vertices", inputs.size(), n);
  Graph g;
  g.child_ptr.reserve(n + 1);
  g.children.reserve(n > 0 ? n - 1 : 0);
  g.input.reserve(n);
  g.label.reserve(n);
  for (int i = 0; i < n; ++i) {
    const int input_id = inputs.empty() ? -1 : inputs[i];
    if (i == 0)
      g.add_vertex({}, input_id);
    else
      g.add_vertex({i - 1}, input_id);
  }
  return g;
}

}  // namespace copse::scheduler
