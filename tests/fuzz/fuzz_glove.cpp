// libFuzzer target: load_glove on an arbitrary file into a small vocabulary
// ([6, 3] table). Rows of words the file does not hold must stay untouched.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/embeddings.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const copse::models::Vocab vocab = [] {
    copse::models::Vocab v;
    for (const char* w : {"the", "cat", ",", "a", "\xc3\xa9t\xc3\xa9"}) v.add(w);
    return v;
  }();
  constexpr int kDim = 3;
  const std::string& path = copse::fuzz::write_input_file(data, size);
  std::vector<float> table(static_cast<size_t>(vocab.size()) * kDim, NAN);  // [6, 3]
  copse::fuzz::expect_ok_or_error([&] {
    const int found = copse::models::load_glove(path, vocab, kDim, table.data());
    COPSE_FUZZ_CHECK(found >= 0 && found <= vocab.size());
    int written = 0;
    for (int r = 0; r < vocab.size(); ++r) written += !std::isnan(table[r * kDim]) ? 1 : 0;
    COPSE_FUZZ_CHECK(written <= found);  // a NaN read from the file may hide one
  });
  return 0;
}
