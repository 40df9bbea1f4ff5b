// Vocab: building from trees, lookup, and the one-word-per-line file format.
#include "models/vocab.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "common/error.h"

namespace copse::models {

Vocab::Vocab() { add(kUnkToken); }

Vocab Vocab::build(const std::vector<LabeledTree>& trees, int min_count) {
  std::unordered_map<std::string, int> counts;
  for (const LabeledTree& tree : trees)
    for (int v = 0; v < tree.num_vertices(); ++v)
      if (tree.is_leaf(v)) ++counts[tree.token[v]];
  std::vector<std::pair<std::string, int>> kept;
  for (auto& [word, count] : counts)
    if (count >= min_count && word != kUnkToken) kept.emplace_back(word, count);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocab vocab;
  for (const auto& entry : kept) vocab.add(entry.first);
  return vocab;
}

int Vocab::add(const std::string& token) {
  auto [it, inserted] = ids_.emplace(token, size());
  if (inserted) tokens_.push_back(token);
  return it->second;
}

int Vocab::lookup(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? kUnkId : it->second;
}

const std::string& Vocab::token(int id) const {
  if (id < 0 || id >= size()) fail("Vocab::token: id {} out of range [0, {})", id, size());
  return tokens_[id];
}

void Vocab::assign_inputs(LabeledTree& tree) const {
  scheduler::Graph& g = tree.graph;
  g.input.assign(tree.num_vertices(), -1);
  for (int v = 0; v < tree.num_vertices(); ++v)
    if (tree.is_leaf(v)) g.input[v] = lookup(tree.token[v]);
}

void Vocab::save(const std::string& path) const {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot open for writing: {}", tmp, std::strerror(errno));
    for (const std::string& word : tokens_) out << word << '\n';
    out.flush();
    if (!out) {
      const int err = errno;
      std::remove(tmp.c_str());
      fail("{}: write failed: {}", tmp, std::strerror(err));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("{}: cannot rename {} over it: {}", path, tmp, std::strerror(err));
  }
}

Vocab Vocab::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  Vocab vocab;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) {
      if (line != kUnkToken)
        fail("{}:1:1: expected '{}' on the first line, found '{}'", path, kUnkToken, line);
      continue;
    }
    if (line.empty()) fail("{}:{}:1: empty line", path, line_no);
    if (vocab.contains(line)) fail("{}:{}:1: duplicate word '{}'", path, line_no, line);
    vocab.add(line);
  }
  if (in.bad()) fail("{}: cannot read: {}", path, std::strerror(errno));
  if (line_no == 0) fail("{}:1:1: empty file, expected '{}' on the first line", path, kUnkToken);
  return vocab;
}

}  // namespace copse::models
