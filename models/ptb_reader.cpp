// PTB bracket-tree reader and writer (see ptb_reader.h for the grammar).
#include "models/ptb_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "common/error.h"

namespace copse::models {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_word_byte(char c) { return !is_space(c) && c != '(' && c != ')'; }

// Quoted excerpt of user text for messages, cut short if long.
std::string excerpt(std::string_view s) {
  constexpr size_t kMax = 24;
  if (s.size() <= kMax) return fmt::format("'{}'", s);
  return fmt::format("'{}...'", s.substr(0, kMax));
}

// A node whose '(' has been read but not its ')'.
struct OpenNode {
  int col;  // 1-based column of its '('
  int label;
  size_t first_kid;       // its finished subtrees are kids[first_kid..]
  std::string_view word;  // its word, if it is a leaf
};

class LineParser {
 public:
  LineParser(std::string_view line, const std::string& file, int line_no, int num_labels)
      : line_(line), file_(file), line_no_(line_no), num_labels_(num_labels) {}

  LabeledTree parse() {
    if (!line_.empty() && line_.back() == '\r') line_.remove_suffix(1);
    skip_spaces();
    if (pos_ == line_.size()) fail_at(1, "empty line");
    if (line_[pos_] != '(')
      fail_at(pos_ + 1, "expected '(' to start a tree, found {}", excerpt(word_at(pos_)));

    LabeledTree tree;
    tree.graph.name = fmt::format("{}:{}", file_, line_no_);
    size_t expected = 0;
    for (char c : line_) expected += (c == '(');
    tree.graph.input.reserve(expected);
    tree.graph.label.reserve(expected);
    tree.graph.child_ptr.reserve(expected + 1);
    tree.graph.children.reserve(expected);
    tree.token.reserve(expected);

    while (true) {
      skip_spaces();
      if (pos_ == line_.size()) {
        if (stack_.empty()) break;
        fail_at(line_.size() + 1, "missing ')' at end of line: '(' at column {} is not closed",
                stack_.back().col);
      }
      const char c = line_[pos_];
      if (tree.root >= 0) {
        if (c == ')') fail_at(pos_ + 1, "unexpected ')': more ')' than '('");
        fail_at(pos_ + 1, "unexpected text after the tree: {}", excerpt(line_.substr(pos_)));
      }
      if (c == '(') {
        open_node();
      } else if (c == ')') {
        close_node(tree);
      } else {
        read_word();
      }
    }
    return tree;
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail_at(size_t col, fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}:{}:{}: {}", file_, line_no_, col, fmt::format(f, std::forward<Args>(args)...));
  }

  void skip_spaces() {
    while (pos_ < line_.size() && is_space(line_[pos_])) ++pos_;
  }

  // The run of word bytes starting at `at` (or the single byte there if none).
  std::string_view word_at(size_t at) const {
    size_t end = at;
    while (end < line_.size() && is_word_byte(line_[end])) ++end;
    return line_.substr(at, std::max<size_t>(end - at, 1));
  }

  void open_node() {
    if (!stack_.empty() && !stack_.back().word.empty())
      fail_at(pos_ + 1, "unexpected '(' after the word {}: a node has a word or subtrees, not both",
              excerpt(stack_.back().word));
    const int col = static_cast<int>(pos_ + 1);
    ++pos_;
    skip_spaces();
    const size_t begin = pos_;
    while (pos_ < line_.size() && is_word_byte(line_[pos_])) ++pos_;
    if (pos_ == begin) fail_at(col, "missing label after '('");
    const std::string_view text = line_.substr(begin, pos_ - begin);
    int label = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), label);
    if (ec == std::errc::invalid_argument || end != text.data() + text.size())
      fail_at(begin + 1, "label {} is not an integer", excerpt(text));
    if (ec == std::errc::result_out_of_range || label < 0 || label >= num_labels_)
      fail_at(begin + 1, "label {} out of range [0, {})", text, num_labels_);
    stack_.push_back(OpenNode{col, label, kids_.size(), {}});
  }

  void close_node(LabeledTree& tree) {
    if (stack_.empty()) fail_at(pos_ + 1, "unexpected ')': more ')' than '('");
    const OpenNode node = stack_.back();
    stack_.pop_back();
    const size_t num_kids = kids_.size() - node.first_kid;
    if (num_kids == 0 && node.word.empty())
      fail_at(node.col, "node has neither a word nor subtrees");

    scheduler::Graph& g = tree.graph;
    const int id = g.num_vertices();
    g.children.insert(g.children.end(), kids_.begin() + node.first_kid, kids_.end());
    g.child_ptr.push_back(static_cast<int>(g.children.size()));
    g.input.push_back(-1);
    g.label.push_back(node.label);
    tree.token.emplace_back(node.word);
    kids_.resize(node.first_kid);
    if (stack_.empty()) {
      tree.root = id;
    } else {
      kids_.push_back(id);
    }
    ++pos_;
  }

  void read_word() {
    const size_t begin = pos_;
    while (pos_ < line_.size() && is_word_byte(line_[pos_])) ++pos_;
    const std::string_view word = line_.substr(begin, pos_ - begin);
    OpenNode& node = stack_.back();  // not empty: the line starts with '(' and root < 0
    if (!node.word.empty())
      fail_at(begin + 1, "expected ')' after the word {}, found {}", excerpt(node.word),
              excerpt(word));
    if (kids_.size() > node.first_kid)
      fail_at(begin + 1, "unexpected word {} in a node with subtrees", excerpt(word));
    node.word = word;
  }

  std::string_view line_;
  const std::string& file_;
  int line_no_;
  int num_labels_;
  size_t pos_ = 0;
  std::vector<OpenNode> stack_;
  std::vector<int> kids_;  // finished subtrees of the open nodes, innermost last
};

std::string read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) data.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail("{}: cannot read: {}", path, std::strerror(err));
    }
    if (got == 0) break;
    data.append(buf, static_cast<size_t>(got));
  }
  ::close(fd);
  return data;
}

}  // namespace

LabeledTree parse_ptb_line(std::string_view line, const std::string& file, int line_no,
                           int num_labels) {
  if (num_labels <= 0)
    fail("{}:{}: num_labels must be positive, got {}", file, line_no, num_labels);
  return LineParser(line, file, line_no, num_labels).parse();
}

std::vector<LabeledTree> read_ptb_file(const std::string& path, int num_labels) {
  const std::string data = read_whole_file(path);
  if (data.empty()) fail("{}:1:1: empty file, no trees", path);
  std::vector<LabeledTree> trees;
  size_t begin = 0;
  int line_no = 1;
  while (begin < data.size()) {
    size_t end = data.find('\n', begin);
    if (end == std::string::npos) end = data.size();  // missing final newline
    trees.push_back(parse_ptb_line(std::string_view(data).substr(begin, end - begin), path, line_no,
                                   num_labels));
    begin = end + 1;
    ++line_no;
  }
  return trees;
}

std::string to_ptb(const LabeledTree& tree) {
  const scheduler::Graph& g = tree.graph;
  const int n = g.num_vertices();
  if (tree.root < 0 || tree.root >= n)
    fail("{}: to_ptb: root {} is not a vertex (n = {})", g.name, tree.root, n);
  if (static_cast<int>(tree.token.size()) != n || static_cast<int>(g.label.size()) != n)
    fail("{}: to_ptb: token/label arrays do not match {} vertices", g.name, n);
  std::string out;
  // Depth-first with an explicit stack: (vertex, index of the next child to emit).
  std::vector<std::pair<int, int>> stack{{tree.root, 0}};
  int emitted = 0;
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    const int num_kids = g.num_children(v);
    if (next == 0) {
      if (++emitted > n)
        fail("{}: to_ptb: the graph is not a tree (a vertex is reached twice)", g.name);
      if (!out.empty()) out += ' ';
      if (g.label[v] < 0) fail("{}: to_ptb: vertex {} has no label", g.name, v);
      const std::string& word = tree.token[v];
      if (num_kids == 0 && word.empty()) fail("{}: to_ptb: leaf vertex {} has no word", g.name, v);
      if (num_kids > 0 && !word.empty())
        fail("{}: to_ptb: vertex {} has both a word and children", g.name, v);
      for (char c : word)
        if (!is_word_byte(c))
          fail("{}: to_ptb: word {} of vertex {} contains a space or bracket", g.name,
               excerpt(word), v);
      fmt::format_to(std::back_inserter(out), "({}", g.label[v]);
      if (num_kids == 0) {
        out += ' ';
        out += word;
      }
    }
    if (next == num_kids) {
      out += ')';
      stack.pop_back();
    } else {
      const int child = g.children[g.child_ptr[v] + next];
      ++next;
      stack.emplace_back(child, 0);  // invalidates v/next; not used after this
    }
  }
  return out;
}

void write_ptb_file(const std::string& path, const std::vector<LabeledTree>& trees) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  for (const LabeledTree& tree : trees) out << to_ptb(tree) << '\n';
  out.flush();
  if (!out) fail("{}: write failed: {}", path, std::strerror(errno));
}

}  // namespace copse::models
