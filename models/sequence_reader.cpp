// Sentence-per-line text and PTB leaf sequences as chains (see sequence_reader.h).
#include "models/sequence_reader.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "common/error.h"

namespace copse::models {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: cannot read: {}", path, std::strerror(errno));
  return ss.str();
}

LabeledTree make_token_chain(std::vector<std::string> tokens, int label, const std::string& name) {
  if (tokens.empty()) fail("{}: a chain needs at least one token", name);
  const int n = static_cast<int>(tokens.size());
  LabeledTree t;
  t.graph = scheduler::make_chain(n);
  t.graph.name = name;
  t.graph.label.assign(n, -1);
  t.graph.label[n - 1] = label;
  t.token = std::move(tokens);
  t.root = n - 1;
  return t;
}

LabeledTree parse_sequence_line(std::string_view line, const std::string& file, int line_no,
                                int num_labels) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto fail_at = [&](size_t col, const std::string& what) {
    fail("{}:{}:{}: {}", file, line_no, col, what);
  };
  if (std::all_of(line.begin(), line.end(), is_space)) fail_at(1, "empty line");
  int label = -1;
  size_t pos = 0;
  const size_t tab = line.find('\t');
  if (tab != std::string_view::npos) {
    const std::string_view text = line.substr(0, tab);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), label);
    if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size())
      fail_at(1, fmt::format("label '{}' before the tab is not an integer", text));
    if (ec == std::errc::result_out_of_range || label < 0 || label >= num_labels)
      fail_at(1, fmt::format("label {} out of range [0, {})", text, num_labels));
    pos = tab + 1;
  }
  std::vector<std::string> tokens;
  while (pos < line.size()) {
    while (pos < line.size() && is_space(line[pos])) ++pos;
    const size_t begin = pos;
    while (pos < line.size() && !is_space(line[pos])) ++pos;
    if (pos > begin) tokens.emplace_back(line.substr(begin, pos - begin));
  }
  if (tokens.empty()) fail_at(line.size() + 1, "label without tokens");
  return make_token_chain(std::move(tokens), label, fmt::format("{}:{}", file, line_no));
}

std::vector<LabeledTree> read_sequence_file(const std::string& path, int num_labels) {
  const std::string data = read_text_file(path);
  if (data.empty()) fail("{}:1:1: empty file, no sentences", path);
  std::vector<LabeledTree> out;
  size_t begin = 0;
  int line_no = 1;
  while (begin < data.size()) {
    size_t end = data.find('\n', begin);
    if (end == std::string::npos) end = data.size();
    out.push_back(parse_sequence_line(std::string_view(data).substr(begin, end - begin), path,
                                      line_no, num_labels));
    begin = end + 1;
    ++line_no;
  }
  return out;
}

LabeledTree ptb_to_chain(const LabeledTree& tree) {
  const scheduler::Graph& g = tree.graph;
  if (tree.root < 0 || tree.root >= g.num_vertices())
    fail("{}: ptb_to_chain: root {} is not a vertex", g.name, tree.root);
  std::vector<std::string> leaves;
  std::vector<std::pair<int, int>> stack{{tree.root, 0}};  // (vertex, next child)
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    if (g.num_children(v) == 0) {
      leaves.push_back(tree.token[v]);
      stack.pop_back();
    } else if (next == g.num_children(v)) {
      stack.pop_back();
    } else {
      const int c = g.children[g.child_ptr[v] + next++];
      stack.emplace_back(c, 0);
    }
  }
  return make_token_chain(std::move(leaves), g.label[tree.root], g.name);
}

std::vector<LabeledTree> read_ptb_as_chains(const std::string& path, int num_labels) {
  std::vector<LabeledTree> out;
  for (const LabeledTree& t : read_ptb_file(path, num_labels)) out.push_back(ptb_to_chain(t));
  return out;
}

Vocab build_vocab_all_tokens(const std::vector<LabeledTree>& trees, int min_count) {
  std::unordered_map<std::string, int> counts;
  for (const LabeledTree& t : trees)
    for (const std::string& w : t.token)
      if (!w.empty()) ++counts[w];
  std::vector<std::pair<std::string, int>> kept;
  for (auto& [word, count] : counts)
    if (count >= min_count && word != Vocab::kUnkToken) kept.emplace_back(word, count);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocab vocab;
  for (const auto& entry : kept) vocab.add(entry.first);
  return vocab;
}

void assign_all_inputs(const Vocab& vocab, LabeledTree& tree) {
  auto& g = tree.graph;
  g.input.assign(g.num_vertices(), -1);
  for (int v = 0; v < g.num_vertices(); ++v)
    if (!tree.token[v].empty()) g.input[v] = vocab.lookup(tree.token[v]);
}

}  // namespace copse::models
