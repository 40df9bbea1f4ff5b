// Reading and writing the safetensors checkpoint format (F32 tensors only):
// 8-byte little-endian header length N, N bytes of JSON header, raw data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace copse::memory {

// One tensor of a safetensors file, as float32 on the host.
struct TensorData {
  std::string name;            // unique in the file
  std::vector<int64_t> shape;  // [] is a scalar (one value)
  std::vector<float> data;     // [prod(shape)] row-major
};

// Header: {"NAME": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
// ..., "__metadata__": {"key": "value"}} (no "__metadata__" when empty),
// padded with spaces to a multiple of 8 bytes. Tensors are laid out
// contiguously in the given order, the way the Python `safetensors` package
// expects. Writes `path.tmp.<pid>`, fsyncs it, then renames it over `path`:
// on any failure the temporary is removed and an existing file at `path` is
// left as it was. Throws copse::Error "PATH: what" for a duplicate, empty or
// reserved name, a negative dimension, a shape that does not match the data,
// or an I/O failure.
void save_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Tensors in file (data offset) order; the metadata goes to `metadata` if not
// null. Throws copse::Error "PATH: what" for an unreadable or truncated file,
// a header length past the end of the file, a header that is not JSON or not
// of the form above, a dtype other than F32, and data offsets that are out of
// range, overlapping, or of a size other than 4 * prod(shape). Gaps between
// tensors and trailing bytes are allowed.
std::vector<TensorData> load_safetensors(const std::string& path,
                                         std::map<std::string, std::string>* metadata = nullptr);

}  // namespace copse::memory
