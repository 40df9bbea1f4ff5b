// GloVe text-format loader (see embeddings.h).
#include "models/embeddings.h"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace copse::models {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
// The buffer ::getline grows; freed on every exit path.
struct LineBuffer {
  char* data = nullptr;
  size_t capacity = 0;
  ~LineBuffer() { std::free(data); }
};

}  // namespace

int load_glove(const std::string& path, const Vocab& vocab, int expected_dim, float* table) {
  if (expected_dim <= 0)
    fail("{}: load_glove: expected_dim must be positive, got {}", path, expected_dim);
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) fail("{}: cannot open: {}", path, std::strerror(errno));

  std::vector<float> row(expected_dim);  // [D] values of the current line
  std::vector<char> filled(vocab.size(), 0);
  int found = 0;
  LineBuffer buffer;
  for (long line_no = 1;; ++line_no) {
    errno = 0;
    const ssize_t got = ::getline(&buffer.data, &buffer.capacity, file.get());
    if (got < 0) {
      if (std::ferror(file.get())) fail("{}: cannot read: {}", path, std::strerror(errno));
      break;
    }
    std::string_view line(buffer.data, static_cast<size_t>(got));
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    size_t pos = 0;
    auto next_field = [&]() -> std::string_view {
      while (pos < line.size() && is_space(line[pos])) ++pos;
      const size_t begin = pos;
      while (pos < line.size() && !is_space(line[pos])) ++pos;
      return line.substr(begin, pos - begin);
    };
    const std::string_view word = next_field();
    if (word.empty()) fail("{}:{}:1: empty line", path, line_no);

    int count = 0;
    size_t extra_col = 0;  // column of the first value beyond D
    for (std::string_view field = next_field(); !field.empty(); field = next_field()) {
      const size_t col = static_cast<size_t>(field.data() - line.data()) + 1;
      if (count < expected_dim) {
        float value = 0.0f;
        const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
        // Out-of-range values (denormal underflow, huge overflow) still parse.
        if ((ec != std::errc() && ec != std::errc::result_out_of_range) ||
            end != field.data() + field.size())
          fail("{}:{}:{}: expected a number, found '{}'", path, line_no, col, field);
        if (ec == std::errc::result_out_of_range)
          value = std::strtof(std::string(field).c_str(), nullptr);
        row[count] = value;
      } else if (extra_col == 0) {
        extra_col = col;
      }
      ++count;
    }
    if (count != expected_dim)
      fail("{}:{}:{}: expected {} values, found {}", path, line_no,
           count > expected_dim ? extra_col : line.size() + 1, expected_dim, count);

    const int id = vocab.lookup(std::string(word));
    const bool known = id != Vocab::kUnkId || word == Vocab::kUnkToken;
    if (known && !filled[id]) {
      filled[id] = 1;
      ++found;
      std::copy(row.begin(), row.end(), table + static_cast<size_t>(id) * expected_dim);
    }
  }
  return found;
}

}  // namespace copse::models
