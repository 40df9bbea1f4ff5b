// Graphs with per-vertex feature vectors as JSON lines, one graph per line:
//   {"nodes":[{"feat":[0.5,1],"label":2},...], "edges":[[child,parent],...]}
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "scheduler/graph.h"

namespace copse::models {

// graph.input[v] = v (the row of its features in `feat`), graph.label[v] the
// node's "label" (-1 when absent); a parent's children are in the order of
// the edges naming it. graph.name is "FILE:LINE".
struct FeatureGraph {
  scheduler::Graph graph;  // structure, labels, inputs as above
  int width = 0;           // features per vertex
  std::vector<float> feat;  // [n, width]
};

// One graph. feat_width < 0: taken from the first node (all must agree).
// Errors "FILE:LINE:COL: what": bad JSON (COL the byte where parsing failed;
// 1 for a number that overflows a double), and with COL 1 (the message names
// the node or edge): not an object, missing or mistyped "nodes"/"feat"/"label"
// /"edges", a feature outside the range of a float, a label outside
// [-1, 1000000000], a feature width that differs,
// an edge that is not a pair of integers or names a node out of range, a
// cycle or self-loop (via Graph::validate), no nodes.
FeatureGraph parse_graph_json(std::string_view line, const std::string& file, int line_no,
                              int feat_width = -1);

// JSONL: one graph per non-blank line (blank lines are skipped); all graphs
// share one feature width. An empty file is "FILE:1:1: empty file".
std::vector<FeatureGraph> read_graph_jsonl(const std::string& path, int feat_width = -1);

// The graph as one line of JSON (no newline): the inverse of parse_graph_json.
std::string to_graph_json(const FeatureGraph& g);
// Writes the graphs as JSONL, one to_graph_json line each.
void write_graph_jsonl(const std::string& path, const std::vector<FeatureGraph>& graphs);

// Stacks the features of all graphs into one table [sum n, width] and
// renumbers graph.input to rows of it (for Executor::bind_pull_data).
std::vector<float> stack_features(std::vector<FeatureGraph>& graphs);

}  // namespace copse::models
