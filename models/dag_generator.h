// A deterministic generator of arithmetic-expression DAGs with shared
// subexpressions: leaves are digits, internal vertices + - * (mod 10) over
// two earlier vertices, so subexpressions are reused by several parents.
#pragma once

#include <cstdint>
#include <vector>

#include "models/graph_json.h"
#include "scheduler/graph.h"

namespace copse::models {

// Symbols: 0..9 the leaf digits, then the operators.
enum ExprSymbol : int { kSymPlus = 10, kSymMinus = 11, kSymTimes = 12, kNumExprSymbols = 13 };

// The shape of the generated expression DAGs.
struct ExprDagOptions {
  int min_leaves = 2;  // distinct digit leaves per DAG, at least
  int max_leaves = 6;  // and at most
  int min_ops = 2;     // operator vertices per DAG, at least
  int max_ops = 12;    // and at most
  double p_recent = 0.6;  // an operand is one of the 3 newest vertices with this probability
  int num_classes = 5;    // label = value mod num_classes
};

// graph.input[v] = symbol[v] (an embedding id in [0, kNumExprSymbols)),
// graph.label[v] = value[v] % num_classes; the children of an operator are
// (left, right) in slots 0 and 1; vertices are in creation order (children
// first) and the last vertex is the result. An operator's two operands are
// distinct vertices; every vertex except the last has at least one parent.
struct ExprDag {
  scheduler::Graph graph;   // inputs and labels as above
  std::vector<int> symbol;  // [n]
  std::vector<int> value;   // [n] in [0, 10)
};

// The same seed gives the same DAG (std::mt19937_64 and integer arithmetic only).
ExprDag generate_expr_dag(std::uint64_t seed, const ExprDagOptions& opts = {});
// `count` DAGs, the i-th from a seed derived from (seed, i).
std::vector<ExprDag> generate_expr_dags(int count, std::uint64_t seed,
                                        const ExprDagOptions& opts = {});

// Features: one-hot of the symbol (width kNumExprSymbols); labels as above.
FeatureGraph to_feature_graph(const ExprDag& dag);

}  // namespace copse::models
