// JSONL graphs with node features (see graph_json.h), parsed with nlohmann/json.
#include "models/graph_json.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "models/sequence_reader.h"

namespace copse::models {

using nlohmann::json;

FeatureGraph parse_graph_json(std::string_view line, const std::string& file, int line_no,
                              int feat_width) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto bad = [&](const std::string& what) { fail("{}:{}:1: {}", file, line_no, what); };
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    const size_t col = std::max<size_t>(e.byte, 1);
    std::string what = e.what();
    const size_t cut = what.find(": ");  // drop "[json.exception.parse_error.101] parse error at ..."
    fail("{}:{}:{}: bad JSON: {}", file, line_no, col,
         cut == std::string::npos ? what : what.substr(cut + 2));
  } catch (const json::exception& e) {  // out_of_range 406: a number that overflows a double
    std::string what = e.what();
    const size_t cut = what.find("] ");  // drop "[json.exception.out_of_range.406] "
    fail("{}:{}:1: bad JSON: {}", file, line_no,
         cut == std::string::npos ? what : what.substr(cut + 2));
  }
  if (!j.is_object()) bad("expected a JSON object {\"nodes\": [...], \"edges\": [...]}");
  if (!j.contains("nodes") || !j["nodes"].is_array()) bad("missing array \"nodes\"");
  const json& nodes = j["nodes"];
  const int n = static_cast<int>(nodes.size());
  if (n == 0) bad("\"nodes\" is empty");
  FeatureGraph out;
  out.graph.name = fmt::format("{}:{}", file, line_no);
  std::vector<int> label(n, -1);
  for (int v = 0; v < n; ++v) {
    const json& node = nodes[v];
    if (!node.is_object() || !node.contains("feat") || !node["feat"].is_array())
      bad(fmt::format("node {}: missing array \"feat\"", v));
    const json& f = node["feat"];
    if (feat_width < 0) feat_width = static_cast<int>(f.size());
    if (static_cast<int>(f.size()) != feat_width)
      bad(fmt::format("node {}: {} features, expected {}", v, f.size(), feat_width));
    for (const json& x : f) {
      if (!x.is_number()) bad(fmt::format("node {}: feature {} is not a number", v, x.dump()));
      const float value = x.get<float>();
      if (!std::isfinite(value))  // 1e39 would become inf, which JSON cannot write back
        bad(fmt::format("node {}: feature {} is out of the range of a float", v, x.dump()));
      out.feat.push_back(value);
    }
    if (node.contains("label")) {
      const json& l = node["label"];
      // Unsigned first: get<long>() would wrap 18446744073709551615 to -1.
      bool in_range = false;
      if (l.is_number_unsigned())
        in_range = l.get<uint64_t>() <= 1000000000u;
      else if (l.is_number_integer())
        in_range = l.get<int64_t>() >= -1 && l.get<int64_t>() <= 1000000000;
      if (!in_range)
        bad(fmt::format("node {}: label {} is not an integer >= -1", v, l.dump()));
      label[v] = l.get<int>();
    }
  }
  out.width = feat_width;
  std::vector<std::vector<int>> kids(n);
  if (j.contains("edges")) {
    const json& edges = j["edges"];
    if (!edges.is_array()) bad("\"edges\" is not an array");
    for (size_t e = 0; e < edges.size(); ++e) {
      const json& ed = edges[e];
      if (!ed.is_array() || ed.size() != 2 || !ed[0].is_number_integer() ||
          !ed[1].is_number_integer())
        bad(fmt::format("edge {}: expected [child, parent], found {}", e, ed.dump()));
      const long c = ed[0].get<long>(), p = ed[1].get<long>();
      for (long x : {c, p})
        if (x < 0 || x >= n)
          bad(fmt::format("edge {}: node {} out of range [0, {})", e, x, n));
      kids[p].push_back(static_cast<int>(c));
    }
  }
  for (int v = 0; v < n; ++v) out.graph.add_vertex(kids[v], v, label[v]);
  try {
    out.graph.validate();
  } catch (const Error& e) {  // "FILE:LINE: what" -> "FILE:LINE:1: what"
    std::string what = e.what();
    const std::string prefix = out.graph.name + ": ";
    bad(what.compare(0, prefix.size(), prefix) == 0 ? what.substr(prefix.size()) : what);
  }
  return out;
}

std::vector<FeatureGraph> read_graph_jsonl(const std::string& path, int feat_width) {
  const std::string data = read_text_file(path);
  if (data.empty()) fail("{}:1:1: empty file, no graphs", path);
  std::vector<FeatureGraph> out;
  size_t begin = 0;
  int line_no = 1;
  for (; begin < data.size(); ++line_no) {
    size_t end = data.find('\n', begin);
    if (end == std::string::npos) end = data.size();
    const std::string_view line = std::string_view(data).substr(begin, end - begin);
    begin = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    out.push_back(parse_graph_json(line, path, line_no, feat_width));
    feat_width = out.back().width;
  }
  if (out.empty()) fail("{}:1:1: no graphs (only blank lines)", path);
  return out;
}

std::string to_graph_json(const FeatureGraph& g) {
  const int n = g.graph.num_vertices();
  json nodes = json::array(), edges = json::array();
  for (int v = 0; v < n; ++v) {
    json f = json::array();
    for (int k = 0; k < g.width; ++k) f.push_back(g.feat[static_cast<size_t>(v) * g.width + k]);
    json node = {{"feat", f}};
    if (g.graph.label[v] >= 0) node["label"] = g.graph.label[v];
    nodes.push_back(node);
    for (int e = g.graph.child_ptr[v]; e < g.graph.child_ptr[v + 1]; ++e)
      edges.push_back({g.graph.children[e], v});
  }
  return json{{"nodes", nodes}, {"edges", edges}}.dump();
}

void write_graph_jsonl(const std::string& path, const std::vector<FeatureGraph>& graphs) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  for (const FeatureGraph& g : graphs) out << to_graph_json(g) << '\n';
  out.flush();
  if (!out) fail("{}: write failed: {}", path, std::strerror(errno));
}

std::vector<float> stack_features(std::vector<FeatureGraph>& graphs) {
  std::vector<float> table;
  int row = 0;
  for (FeatureGraph& g : graphs) {
    if (!graphs.empty() && g.width != graphs[0].width)
      fail("{}: feature width {} differs from {}", g.graph.name, g.width, graphs[0].width);
    table.insert(table.end(), g.feat.begin(), g.feat.end());
    for (int v = 0; v < g.graph.num_vertices(); ++v) g.graph.input[v] = row + v;
    row += g.graph.num_vertices();
  }
  return table;
}

}  // namespace copse::models
