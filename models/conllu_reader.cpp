// CoNLL-U and SICK (toks + parents) dependency-tree readers (see conllu_reader.h).
#include "models/conllu_reader.h"

#include <charconv>
#include <utility>

#include "common/error.h"
#include "models/sequence_reader.h"

namespace copse::models {
namespace {

// Where a word's HEAD was written, for messages.
struct HeadLoc {
  int line = 0;
  int col = 0;
};

// Splits `s` at `sep`; begin[k] is the 0-based offset of field k.
std::vector<std::string_view> split(std::string_view s, char sep, std::vector<size_t>* begin) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    const size_t end = s.find(sep, pos);
    begin->push_back(pos);
    out.push_back(s.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return out;
}

bool parse_int(std::string_view text, int* value) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string_view chomp(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Builds the tree from 1-based heads (0 = root) after checking the range, a
// single root and the absence of cycles. first_line: the line named for "no root".
LabeledTree tree_from_heads(const std::vector<int>& head, std::vector<std::string> tokens,
                            const std::vector<HeadLoc>& loc, const std::string& file,
                            int first_line, int label, const std::string& name) {
  const int n = static_cast<int>(head.size());
  auto fail_at = [&](const HeadLoc& l, const std::string& what) {
    fail("{}:{}:{}: {}", file, l.line, l.col, what);
  };
  int root = -1;
  for (int v = 0; v < n; ++v) {
    if (head[v] < 0 || head[v] > n)
      fail_at(loc[v], fmt::format("HEAD {} of word {} out of range [0, {}]", head[v], v + 1, n));
    if (head[v] == 0) {
      if (root >= 0)
        fail_at(loc[v], fmt::format("several roots: words {} and {} both have HEAD 0", root + 1,
                                    v + 1));
      root = v;
    }
  }
  if (root < 0) fail_at({first_line, 1}, "no root: no word has HEAD 0");
  // Every word must reach the root by following heads: 0 unknown, 1 on the
  // current walk, 2 reaches the root.
  std::vector<char> state(n, 0);
  state[root] = 2;
  std::vector<int> walk;
  for (int s = 0; s < n; ++s) {
    int v = s;
    walk.clear();
    while (state[v] == 0) {
      state[v] = 1;
      walk.push_back(v);
      v = head[v] - 1;
    }
    if (state[v] == 1) {  // v is on the walk: the walk from v on is a cycle
      std::string words;
      int first = v;
      for (int u = v;;) {
        words += fmt::format("{}{}", words.empty() ? "" : " -> ", u + 1);
        first = std::min(first, u);
        u = head[u] - 1;
        if (u == v) break;
      }
      fail_at(loc[first], fmt::format("HEAD creates a cycle: {} -> {}", words, v + 1));
    }
    for (int u : walk) state[u] = 2;
  }
  std::vector<std::vector<int>> kids(n);
  for (int v = 0; v < n; ++v)
    if (head[v] > 0) kids[head[v] - 1].push_back(v);
  LabeledTree t;
  t.graph.name = name;
  for (int v = 0; v < n; ++v) t.graph.add_vertex(kids[v], -1, v == root ? label : -1);
  t.token = std::move(tokens);
  t.root = root;
  return t;
}

// One CoNLL-U sentence being read.
struct Sentence {
  int first_line = 0;       // 0: none started
  int first_word_line = 0;
  int label = -1;
  std::vector<std::string> form;
  std::vector<int> head;
  std::vector<HeadLoc> loc;
};

}  // namespace

std::vector<LabeledTree> parse_conllu(std::string_view text, const std::string& file,
                                      int num_labels) {
  if (text.empty()) fail("{}:1:1: empty file, no sentences", file);
  std::vector<LabeledTree> out;
  Sentence s;
  auto finish = [&] {
    if (s.first_line == 0) return;
    if (s.form.empty()) fail("{}:{}:1: sentence has comments but no words", file, s.first_line);
    out.push_back(tree_from_heads(s.head, std::move(s.form), s.loc, file, s.first_word_line,
                                  s.label, fmt::format("{}:{}", file, s.first_line)));
    s = Sentence();
  };
  size_t begin = 0;
  int line_no = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = chomp(text.substr(begin, end - begin));
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      finish();
      continue;
    }
    if (s.first_line == 0) s.first_line = line_no;
    if (line[0] == '#') {
      // "# label = K"
      std::string_view body = line.substr(1);
      const size_t key = body.find_first_not_of(' ');
      if (key != std::string_view::npos && body.substr(key, 5) == "label") {
        size_t eq = body.find('=', key + 5);
        if (eq != std::string_view::npos &&
            body.substr(key + 5, eq - key - 5).find_first_not_of(' ') == std::string_view::npos) {
          size_t vb = body.find_first_not_of(' ', eq + 1);
          if (vb == std::string_view::npos) vb = body.size();
          size_t ve = body.find_last_not_of(' ');
          std::string_view value = body.substr(vb, ve == std::string_view::npos || ve < vb ? 0 : ve - vb + 1);
          const size_t col = vb + 2;  // 1-based, after the '#'
          int label = 0;
          if (!parse_int(value, &label))
            fail("{}:{}:{}: sentence label '{}' is not an integer", file, line_no, col, value);
          if (label < 0 || label >= num_labels)
            fail("{}:{}:{}: sentence label {} out of range [0, {})", file, line_no, col, value,
                 num_labels);
          s.label = label;
        }
      }
      continue;
    }
    std::vector<size_t> col;
    const auto f = split(line, '\t', &col);
    if (f.size() < 10)
      fail("{}:{}:{}: expected 10 tab-separated columns, found {}", file, line_no, line.size() + 1,
           f.size());
    if (f.size() > 10)
      fail("{}:{}:{}: expected 10 tab-separated columns, found {}", file, line_no, col[10] + 1,
           f.size());
    const std::string_view id = f[0];
    if (id.find('-') != std::string_view::npos || id.find('.') != std::string_view::npos)
      continue;  // multiword token or empty node
    int id_value = 0;
    const int expected = static_cast<int>(s.form.size()) + 1;
    if (!parse_int(id, &id_value) || id_value != expected)
      fail("{}:{}:1: word ID '{}' out of sequence, expected {}", file, line_no, id, expected);
    if (f[1].empty())  // CoNLL-U fields are never empty ("_" when unknown)
      fail("{}:{}:{}: empty FORM of word {}", file, line_no, col[1] + 1, expected);
    int head = 0;
    if (!parse_int(f[6], &head))
      fail("{}:{}:{}: HEAD '{}' is not an integer", file, line_no, col[6] + 1, f[6]);
    if (s.form.empty()) s.first_word_line = line_no;
    s.form.emplace_back(f[1]);
    s.head.push_back(head);
    s.loc.push_back({line_no, static_cast<int>(col[6] + 1)});
  }
  finish();
  if (out.empty()) fail("{}:1:1: no sentences", file);
  return out;
}

std::vector<LabeledTree> read_conllu_file(const std::string& path, int num_labels) {
  return parse_conllu(read_text_file(path), path, num_labels);
}

LabeledTree parse_parents_line(std::string_view toks, std::string_view parents,
                               const std::string& toks_file, const std::string& parents_file,
                               int line_no) {
  toks = chomp(toks);
  parents = chomp(parents);
  std::vector<std::string> words;
  for (size_t pos = 0; pos < toks.size();) {
    const size_t end = std::min(toks.find(' ', pos), toks.size());
    if (end > pos) words.emplace_back(toks.substr(pos, end - pos));
    pos = end + 1;
  }
  if (words.empty()) fail("{}:{}:1: empty line", toks_file, line_no);
  std::vector<int> head;
  std::vector<HeadLoc> loc;
  for (size_t pos = 0; pos < parents.size();) {
    const size_t end = std::min(parents.find(' ', pos), parents.size());
    if (end > pos) {
      const std::string_view text = parents.substr(pos, end - pos);
      const int col = static_cast<int>(pos + 1);
      if (head.size() == words.size())
        fail("{}:{}:{}: more heads than the {} words of {}:{}", parents_file, line_no, col,
             words.size(), toks_file, line_no);
      int h = 0;
      if (!parse_int(text, &h))
        fail("{}:{}:{}: head '{}' is not an integer", parents_file, line_no, col, text);
      head.push_back(h);
      loc.push_back({line_no, col});
    }
    pos = end + 1;
  }
  if (head.size() < words.size())
    fail("{}:{}:{}: {} heads for the {} words of {}:{}", parents_file, line_no,
         parents.size() + 1, head.size(), words.size(), toks_file, line_no);
  return tree_from_heads(head, std::move(words), loc, parents_file, line_no, -1,
                         fmt::format("{}:{}", parents_file, line_no));
}

std::vector<LabeledTree> read_parents_files(const std::string& toks_path,
                                            const std::string& parents_path) {
  const std::string toks = read_text_file(toks_path), parents = read_text_file(parents_path);
  auto lines = [](const std::string& data) {
    std::vector<std::string_view> out;
    size_t begin = 0;
    while (begin < data.size()) {
      size_t end = data.find('\n', begin);
      if (end == std::string::npos) end = data.size();
      out.push_back(std::string_view(data).substr(begin, end - begin));
      begin = end + 1;
    }
    return out;
  };
  const auto tl = lines(toks), pl = lines(parents);
  if (tl.empty()) fail("{}:1:1: empty file, no sentences", toks_path);
  if (tl.size() != pl.size()) {
    const bool toks_short = tl.size() < pl.size();
    fail("{}:{}:1: missing line: {} has {} lines, {} has {}", toks_short ? toks_path : parents_path,
         std::min(tl.size(), pl.size()) + 1, toks_path, tl.size(), parents_path, pl.size());
  }
  std::vector<LabeledTree> out;
  out.reserve(tl.size());
  for (size_t k = 0; k < tl.size(); ++k)
    out.push_back(
        parse_parents_line(tl[k], pl[k], toks_path, parents_path, static_cast<int>(k + 1)));
  return out;
}

}  // namespace copse::models
