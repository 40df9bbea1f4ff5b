// libFuzzer target: the JSONL feature-graph reader on arbitrary bytes, one
// line (parse_graph_json) and a whole file (read_graph_jsonl). A graph that
// reads must be a valid graph with n * width finite features, input[v] = v,
// print back (to_graph_json) to a line that reads to the same graph, and --
// since whatever passes the reader goes to the scheduler -- batch with
// scheduler::make_batch (every row and edge accounted for, children before
// parents).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/graph_json.h"
#include "scheduler/graph_batch.h"
#include "tests/fuzz/fuzz_checks.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

using copse::models::FeatureGraph;

using copse::fuzz::validates;

void check_graph(const FeatureGraph& fg) {
  const auto& g = fg.graph;
  const int n = g.num_vertices();
  COPSE_FUZZ_CHECK(n > 0);
  COPSE_FUZZ_CHECK(fg.width >= 0);
  COPSE_FUZZ_CHECK(fg.feat.size() == static_cast<size_t>(n) * static_cast<size_t>(fg.width));
  COPSE_FUZZ_CHECK(static_cast<int>(g.label.size()) == n);
  COPSE_FUZZ_CHECK(!g.name.empty());
  COPSE_FUZZ_CHECK(validates(g));
  for (int v = 0; v < n; ++v) {
    COPSE_FUZZ_CHECK(g.input[v] == v);
    COPSE_FUZZ_CHECK(g.label[v] >= -1);
  }
  for (float x : fg.feat) COPSE_FUZZ_CHECK(std::isfinite(x));
  const std::string line = copse::models::to_graph_json(fg);
  const FeatureGraph again = copse::models::parse_graph_json(line, "round-trip", 1, fg.width);
  COPSE_FUZZ_CHECK(copse::models::to_graph_json(again) == line);
  COPSE_FUZZ_CHECK(again.graph.child_ptr == g.child_ptr && again.graph.children == g.children);
  COPSE_FUZZ_CHECK(again.graph.label == g.label && again.feat == fg.feat);
}

void check_batch(const std::vector<FeatureGraph>& graphs) {
  std::vector<const copse::scheduler::Graph*> ptrs;
  int64_t rows = 0, edges = 0;
  for (const auto& fg : graphs) {
    ptrs.push_back(&fg.graph);
    rows += fg.graph.num_vertices();
    edges += fg.graph.num_edges();
  }
  copse::scheduler::GraphBatch b;
  try {
    b = copse::scheduler::make_batch(ptrs);
  } catch (const copse::Error& e) {
    std::fprintf(stderr, "make_batch rejected graphs the reader accepted: %s\n", e.what());
    COPSE_FUZZ_CHECK(false);
  }
  COPSE_FUZZ_CHECK(b.num_graphs == static_cast<int>(graphs.size()));
  COPSE_FUZZ_CHECK(b.num_rows == rows && b.num_edges == edges);
  COPSE_FUZZ_CHECK(b.level_ptr.front() == 0 && b.level_ptr.back() == b.num_rows);
  COPSE_FUZZ_CHECK(b.child_ptr.back() == b.num_edges);
  std::vector<int> level_of(b.num_rows);
  for (int l = 0; l < b.num_levels; ++l)
    for (int r = b.level_begin(l); r < b.level_end(l); ++r) level_of[r] = l;
  for (int e = 0; e < b.num_edges; ++e)
    COPSE_FUZZ_CHECK(level_of[b.edge_child[e]] < level_of[b.edge_parent[e]]);
  int64_t roots = 0;
  for (size_t g = 0; g < graphs.size(); ++g) {
    COPSE_FUZZ_CHECK(b.root_ptr[g + 1] > b.root_ptr[g]);  // a DAG has a vertex without parent
    roots += b.root_ptr[g + 1] - b.root_ptr[g];
    for (int v = 0; v < graphs[g].graph.num_vertices(); ++v) {
      const int r = b.row_of_vertex[b.vertex_offset[g] + v];
      COPSE_FUZZ_CHECK(b.graph_of_row[r] == static_cast<int>(g));
      COPSE_FUZZ_CHECK(b.input[r] == v && b.label[r] == graphs[g].graph.label[v]);
    }
  }
  COPSE_FUZZ_CHECK(static_cast<int64_t>(b.root_rows.size()) == roots);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  copse::fuzz::expect_ok_or_error([&] {
    std::vector<FeatureGraph> one;
    one.push_back(copse::models::parse_graph_json(bytes, "fuzz.jsonl", 1));
    check_graph(one[0]);
    check_batch(one);
  });
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error([&] {
    std::vector<FeatureGraph> graphs = copse::models::read_graph_jsonl(path);
    COPSE_FUZZ_CHECK(!graphs.empty());
    for (const auto& fg : graphs) {
      COPSE_FUZZ_CHECK(fg.width == graphs[0].width);
      check_graph(fg);
    }
    check_batch(graphs);
    const std::vector<float> table = copse::models::stack_features(graphs);
    size_t rows = 0;
    for (const auto& fg : graphs) {
      for (int v = 0; v < fg.graph.num_vertices(); ++v)
        COPSE_FUZZ_CHECK(fg.graph.input[v] == static_cast<int>(rows) + v);
      rows += static_cast<size_t>(fg.graph.num_vertices());
    }
    COPSE_FUZZ_CHECK(table.size() == rows * static_cast<size_t>(graphs[0].width));
  });
  return 0;
}
