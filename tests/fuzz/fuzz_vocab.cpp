// libFuzzer target: Vocab::load on an arbitrary file. A vocabulary that loads
// has <unk> at id 0 and maps every word back to its id.
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/vocab.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = copse::fuzz::write_input_file(data, size);
  copse::fuzz::expect_ok_or_error([&] {
    const auto vocab = copse::models::Vocab::load(path);
    COPSE_FUZZ_CHECK(vocab.size() >= 1);
    COPSE_FUZZ_CHECK(vocab.token(copse::models::Vocab::kUnkId) == copse::models::Vocab::kUnkToken);
    for (int id = 0; id < vocab.size(); ++id) COPSE_FUZZ_CHECK(vocab.lookup(vocab.token(id)) == id);
  });
  return 0;
}
