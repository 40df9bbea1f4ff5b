// JSONL feature graphs and the expression-DAG generator: round trips,
// determinism, values, and the FILE:LINE:COL of every kind of bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "models/dag_generator.h"
#include "models/graph_json.h"
#include "scheduler/graph_batch.h"

namespace copse::models {
namespace {

namespace fs = std::filesystem;

std::string json_error(const std::string& line, int width = -1) {
  try {
    parse_graph_json(line, "g.jsonl", 5, width);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GraphJson, ParsesNodesEdgesAndLabels) {
  FeatureGraph g = parse_graph_json(
      R"({"nodes":[{"feat":[1,2]},{"feat":[3,4],"label":1},{"feat":[5,6],"label":0}],)"
      R"("edges":[[1,2],[0,2],[0,1]]})",
      "g.jsonl", 5);
  EXPECT_EQ(g.width, 2);
  EXPECT_EQ(g.feat, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(g.graph.label, (std::vector<int>{-1, 1, 0}));
  EXPECT_EQ(g.graph.input, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(g.graph.children, (std::vector<int>{0, 1, 0}));  // vertex 1: {0}; vertex 2: {1, 0}
  EXPECT_EQ(g.graph.child_ptr, (std::vector<int>{0, 0, 1, 3}));
  FeatureGraph back = parse_graph_json(to_graph_json(g), "g.jsonl", 6);
  EXPECT_EQ(back.feat, g.feat);
  EXPECT_EQ(back.graph.children, g.graph.children);
  EXPECT_EQ(back.graph.label, g.graph.label);
}

TEST(GraphJson, LocatesBadInput) {
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1]}],})").substr(0, 16), "g.jsonl:5:25: ba");
  EXPECT_EQ(json_error(R"([1,2])"),
            "g.jsonl:5:1: expected a JSON object {\"nodes\": [...], \"edges\": [...]}");
  EXPECT_EQ(json_error(R"({"edges":[]})"), "g.jsonl:5:1: missing array \"nodes\"");
  EXPECT_EQ(json_error(R"({"nodes":[]})"), "g.jsonl:5:1: \"nodes\" is empty");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1,2]},{"feat":[1]}]})"),
            "g.jsonl:5:1: node 1: 1 features, expected 2");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1,2]}]})", 3),
            "g.jsonl:5:1: node 0: 2 features, expected 3");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":["a"]}]})"),
            "g.jsonl:5:1: node 0: feature \"a\" is not a number");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1]}],"edges":[[0,1]]})"),
            "g.jsonl:5:1: edge 0: node 1 out of range [0, 1)");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1]}],"edges":[[0]]})"),
            "g.jsonl:5:1: edge 0: expected [child, parent], found [0]");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1]},{"feat":[2]}],"edges":[[0,1],[1,0]]})")
                .substr(0, 20),
            "g.jsonl:5:1: cycle t");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1],"label":1.5}]})"),
            "g.jsonl:5:1: node 0: label 1.5 is not an integer >= -1");
  // Found with fuzz_graph_json: a double overflow, a float overflow, a label
  // that wrapped to -1.
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1e999]}]})"),
            "g.jsonl:5:1: bad JSON: number overflow parsing '1e999'");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1e39]}]})"),
            "g.jsonl:5:1: node 0: feature 1e+39 is out of the range of a float");
  EXPECT_EQ(json_error(R"({"nodes":[{"feat":[1],"label":18446744073709551615}]})"),
            "g.jsonl:5:1: node 0: label 18446744073709551615 is not an integer >= -1");
}

TEST(GraphJson, JsonlFilesKeepOneWidthAndStackFeatures) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("copse_gj_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "g.jsonl").string();
  std::ofstream(path) << R"({"nodes":[{"feat":[1,2]}]})" << "\n\n"
                      << R"({"nodes":[{"feat":[3,4]},{"feat":[5,6]}],"edges":[[0,1]]})" << "\n";
  auto graphs = read_graph_jsonl(path);
  ASSERT_EQ(graphs.size(), 2u);
  EXPECT_EQ(graphs[1].graph.name, path + ":3");
  std::vector<float> table = stack_features(graphs);
  EXPECT_EQ(table, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(graphs[1].graph.input, (std::vector<int>{1, 2}));
  std::ofstream(path) << R"({"nodes":[{"feat":[1,2]}]})" << "\n" << R"({"nodes":[{"feat":[3]}]})";
  try {
    read_graph_jsonl(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":2:1: node 0: 1 features, expected 2");
  }
  std::ofstream(path, std::ios::trunc).flush();
  try {
    read_graph_jsonl(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":1:1: empty file, no graphs");
  }
  fs::remove_all(dir);
}

int eval(int op, int a, int b) {
  if (op == kSymPlus) return (a + b) % 10;
  if (op == kSymMinus) return ((a - b) % 10 + 10) % 10;
  return (a * b) % 10;
}

TEST(DagGenerator, DeterministicSharedAndCorrectlyLabelled) {
  auto a = generate_expr_dags(50, 7), b = generate_expr_dags(50, 7), c = generate_expr_dags(50, 8);
  bool shared = false, differs = false;
  for (size_t k = 0; k < a.size(); ++k) {
    const auto& g = a[k].graph;
    g.validate();
    EXPECT_EQ(g.children, b[k].graph.children);
    EXPECT_EQ(a[k].value, b[k].value);
    differs |= g.children != c[k].graph.children || a[k].value != c[k].value;
    std::vector<int> parents(g.num_vertices(), 0);
    for (int x : g.children) shared |= ++parents[x] > 1;
    for (int v = 0; v < g.num_vertices(); ++v) {
      EXPECT_EQ(parents[v] == 0, v == g.num_vertices() - 1) << "vertex " << v;
      EXPECT_EQ(g.label[v], a[k].value[v] % 5);
      EXPECT_EQ(g.input[v], a[k].symbol[v]);
      if (g.num_children(v) == 0) {
        EXPECT_EQ(a[k].symbol[v], a[k].value[v]);
      } else {
        ASSERT_EQ(g.num_children(v), 2);
        const int l = g.children[g.child_ptr[v]], r = g.children[g.child_ptr[v] + 1];
        EXPECT_NE(l, r);
        EXPECT_EQ(a[k].value[v], eval(a[k].symbol[v], a[k].value[l], a[k].value[r]));
      }
    }
  }
  EXPECT_TRUE(shared);
  EXPECT_TRUE(differs);
  FeatureGraph f = to_feature_graph(a[0]);
  EXPECT_EQ(f.width, kNumExprSymbols);
  EXPECT_EQ(f.feat[a[0].symbol[0]], 1.f);
  scheduler::make_batch(std::vector<scheduler::Graph>{a[0].graph, a[1].graph}, {2});
}

}  // namespace
}  // namespace copse::models
