// libFuzzer target: load_safetensors on an arbitrary file. A file that loads
// must give tensors whose data matches their shapes.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "memory/safetensors.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error([&] {
    std::map<std::string, std::string> metadata;
    const auto tensors = copse::memory::load_safetensors(path, &metadata);
    for (const auto& t : tensors) {
      uint64_t n = 1;
      for (int64_t d : t.shape) {
        COPSE_FUZZ_CHECK(d >= 0);
        n *= static_cast<uint64_t>(d);
      }
      COPSE_FUZZ_CHECK(n == t.data.size());
      COPSE_FUZZ_CHECK(t.data.size() * sizeof(float) <= size);
    }
  });
  return 0;
}
