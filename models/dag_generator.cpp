// Arithmetic-expression DAGs with shared subexpressions (see dag_generator.h).
#include "models/dag_generator.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "common/error.h"

namespace copse::models {
namespace {

// Uniform integer in [lo, hi] from raw 64-bit draws (the same on every
// standard library, unlike std::uniform_int_distribution).
int draw(std::mt19937_64& rng, int lo, int hi) {
  return lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
}

int apply(int op, int a, int b) {
  switch (op) {
    case kSymPlus: return (a + b) % 10;
    case kSymMinus: return ((a - b) % 10 + 10) % 10;
    default: return (a * b) % 10;
  }
}

}  // namespace

ExprDag generate_expr_dag(std::uint64_t seed, const ExprDagOptions& o) {
  if (o.min_leaves < 2 || o.max_leaves < o.min_leaves || o.min_ops < 1 || o.max_ops < o.min_ops ||
      o.num_classes < 1)
    fail("expression DAG options: need 2 <= min_leaves <= max_leaves, 1 <= min_ops <= max_ops, "
         "num_classes >= 1");
  std::mt19937_64 rng(seed);
  ExprDag d;
  d.graph.name = fmt::format("expr_dag:{}", seed);
  const int leaves = draw(rng, o.min_leaves, o.max_leaves);
  const int ops = draw(rng, o.min_ops, o.max_ops);
  std::vector<int> parents;  // per vertex: how many parents so far
  auto add = [&](std::vector<int> kids, int sym, int val) {
    for (int k : kids) ++parents[k];
    parents.push_back(0);
    d.symbol.push_back(sym);
    d.value.push_back(val);
    d.graph.add_vertex(kids, sym, val % o.num_classes);
  };
  for (int i = 0; i < leaves; ++i) {
    const int digit = draw(rng, 0, 9);
    add({}, digit, digit);
  }
  const std::uint64_t recent_cut =
      static_cast<std::uint64_t>(o.p_recent * static_cast<double>(UINT64_MAX / 2)) * 2;
  for (int i = 0; i < ops; ++i) {
    const int n = static_cast<int>(d.value.size());
    // Operand 1: the oldest vertex without a parent, so nothing is left dangling
    // (except the newest, the result); operand 2: recent or any earlier vertex.
    int a = static_cast<int>(std::find(parents.begin(), parents.end(), 0) - parents.begin());
    if (a >= n - 1 && i + 1 < ops) a = draw(rng, 0, n - 1);
    int b;
    do {
      const int lo = rng() < recent_cut ? std::max(0, n - 3) : 0;
      b = draw(rng, lo, n - 1);
    } while (b == a);
    if (rng() & 1) std::swap(a, b);
    const int op = draw(rng, kSymPlus, kSymTimes);
    add({a, b}, op, apply(op, d.value[a], d.value[b]));
  }
  // Fold the remaining parentless vertices into the result, left to right.
  for (;;) {
    std::vector<int> free;
    for (int v = 0; v < static_cast<int>(parents.size()); ++v)
      if (parents[v] == 0) free.push_back(v);
    if (free.size() <= 1) break;
    const int op = draw(rng, kSymPlus, kSymTimes);
    add({free[0], free[1]}, op, apply(op, d.value[free[0]], d.value[free[1]]));
  }
  return d;
}

std::vector<ExprDag> generate_expr_dags(int count, std::uint64_t seed, const ExprDagOptions& o) {
  std::vector<ExprDag> out;
  out.reserve(std::max(count, 0));
  for (int i = 0; i < count; ++i)
    out.push_back(generate_expr_dag(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i), o));
  return out;
}

FeatureGraph to_feature_graph(const ExprDag& dag) {
  FeatureGraph f;
  f.graph = dag.graph;
  f.width = kNumExprSymbols;
  const int n = dag.graph.num_vertices();
  f.feat.assign(static_cast<size_t>(n) * kNumExprSymbols, 0.f);
  for (int v = 0; v < n; ++v) {
    f.graph.input[v] = v;
    f.feat[static_cast<size_t>(v) * kNumExprSymbols + dag.symbol[v]] = 1.f;
  }
  return f;
}

}  // namespace copse::models
