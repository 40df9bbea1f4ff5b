// safetensors writer (atomic: temp file, fsync, rename) and validating reader.
#include "memory/safetensors.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this code copies floats as they are in memory");

namespace copse::memory {
namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

// A temporary file that is removed unless committed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed) ::unlink(path.c_str());
  }
};

// A read-only file descriptor, closed on every exit path.
struct ReadFile {
  int fd = -1;
  ~ReadFile() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(const std::string& path, const TempFile& tmp, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(tmp.fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: cannot write {}: {}", path, tmp.path, std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// Reads exactly `size` bytes at `offset`.
void read_at(const std::string& path, int fd, void* data, size_t size, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: cannot read: {}", path, std::strerror(errno));
    }
    if (n == 0) fail("{}: truncated: unexpected end of file at byte {}", path, offset);
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

// prod(shape), or -1 on a negative dimension or overflow past `limit`.
int64_t num_elements(const std::vector<int64_t>& shape, int64_t limit) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > limit / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    if (t.name.empty()) fail("{}: a tensor has an empty name", path);
    if (t.name == kMetadataKey) fail("{}: '{}' is reserved, not a tensor name", path, t.name);
    if (!names.insert(t.name).second) fail("{}: duplicate tensor name '{}'", path, t.name);
    const int64_t n = num_elements(t.shape, std::numeric_limits<int64_t>::max() / 4);
    if (n < 0) fail("{}: tensor '{}': bad shape [{}]", path, t.name, fmt::join(t.shape, ", "));
    if (static_cast<uint64_t>(n) != t.data.size())
      fail("{}: tensor '{}': shape [{}] has {} elements but the data has {}", path, t.name,
           fmt::join(t.shape, ", "), n, t.data.size());
    const uint64_t bytes = static_cast<uint64_t>(n) * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  TempFile tmp;
  tmp.path = fmt::format("{}.tmp.{}", path, ::getpid());
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (tmp.fd < 0) {
    const int err = errno;
    tmp.committed = true;  // nothing was created
    fail("{}: cannot create {}: {}", path, tmp.path, std::strerror(err));
  }
  write_all(path, tmp, &header_len, sizeof header_len);
  write_all(path, tmp, text.data(), text.size());
  for (const TensorData& t : tensors)
    write_all(path, tmp, t.data.data(), t.data.size() * sizeof(float));
  if (::fsync(tmp.fd) != 0) fail("{}: cannot fsync {}: {}", path, tmp.path, std::strerror(errno));
  const int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) fail("{}: cannot close {}: {}", path, tmp.path, std::strerror(errno));
  if (::rename(tmp.path.c_str(), path.c_str()) != 0)
    fail("{}: cannot rename {} over it: {}", path, tmp.path, std::strerror(errno));
  tmp.committed = true;

  // Make the rename itself durable (best effort: some file systems refuse).
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::vector<TensorData> load_safetensors(const std::string& path,
                                         std::map<std::string, std::string>* metadata) {
  ReadFile file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail("{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  uint64_t header_len = 0;
  if (file_size < sizeof header_len)
    fail("{}: truncated: {} bytes, shorter than the 8-byte header length", path, file_size);
  read_at(path, file.fd, &header_len, sizeof header_len, 0);
  if (header_len > file_size - sizeof header_len)
    fail("{}: header length {} runs past the end of the file ({} bytes)", path, header_len,
         file_size);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {}-byte limit", path, header_len, kMaxHeaderBytes);
  std::string text(header_len, '\0');
  read_at(path, file.fd, text.data(), text.size(), sizeof header_len);
  const uint64_t data_begin = sizeof header_len + header_len;
  const uint64_t data_size = file_size - data_begin;

  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e999
    fail("{}: corrupt header: {}", path, e.what());
  }
  if (!header.is_object()) fail("{}: corrupt header: not a JSON object", path);

  struct Entry {
    TensorData tensor;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  if (metadata) metadata->clear();
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      if (!value.is_object()) fail("{}: '{}' is not a JSON object", path, kMetadataKey);
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) fail("{}: metadata '{}' is not a string", path, key);
        if (metadata) (*metadata)[key] = v.get<std::string>();
      }
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets"))
      fail("{}: tensor '{}': expected an object with dtype, shape and data_offsets", path, name);
    const json& dtype = value["dtype"];
    if (!dtype.is_string()) fail("{}: tensor '{}': dtype is not a string", path, name);
    if (dtype != "F32")
      fail("{}: tensor '{}': dtype {} is not supported (only F32)", path, name,
           dtype.get<std::string>());
    Entry entry;
    entry.tensor.name = name;
    const json& shape = value["shape"];
    if (!shape.is_array()) fail("{}: tensor '{}': shape is not an array", path, name);
    for (const json& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t{1} << 62)
        fail("{}: tensor '{}': shape {} is not a list of non-negative integers", path, name,
             shape.dump());
      entry.tensor.shape.push_back(d.get<int64_t>());
    }
    const json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets {} is not a pair of non-negative integers", path, name,
           offsets.dump());
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] out of range (data is {} bytes)", path, name,
           entry.begin, entry.end, data_size);
    const int64_t n = num_elements(entry.tensor.shape, static_cast<int64_t>(data_size / 4 + 1));
    if (n < 0 || entry.end - entry.begin != static_cast<uint64_t>(n) * sizeof(float))
      fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but shape {} needs {}", path, name,
           entry.begin, entry.end, entry.end - entry.begin, shape.dump(),
           n < 0 ? std::string("more than the file") : std::to_string(n * 4));
    entries.push_back(std::move(entry));
  }

  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end)
      fail("{}: tensors '{}' and '{}' overlap (data_offsets [{}, {}] and [{}, {}])", path,
           entries[i - 1].tensor.name, entries[i].tensor.name, entries[i - 1].begin,
           entries[i - 1].end, entries[i].begin, entries[i].end);

  std::vector<TensorData> tensors;
  tensors.reserve(entries.size());
  for (Entry& e : entries) {
    e.tensor.data.resize((e.end - e.begin) / sizeof(float));
    read_at(path, file.fd, e.tensor.data.data(), e.end - e.begin, data_begin + e.begin);
    tensors.push_back(std::move(e.tensor));
  }
  return tensors;
}

}  // namespace copse::memory
