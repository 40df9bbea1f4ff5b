// Tests for the safetensors reader/writer: bit-exact round trip, the byte
// layout, validation errors naming the path, and atomic saves.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "memory/safetensors.h"

namespace copse::memory {
namespace {

namespace fs = std::filesystem;

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A file as the format defines it: 8-byte little-endian length, header, data.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string float_bytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / fmt::format("copse_st_{}_{}", info->name(), ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The message of the copse::Error load_safetensors throws for `bytes`.
  std::string load_error(const std::string& bytes) {
    const std::string p = path("bad.safetensors");
    write_bytes(p, bytes);
    try {
      load_safetensors(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  // Names of files in the test directory (to spot leftover temporaries).
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

std::vector<TensorData> special_tensors() {
  return {
      {"weight",
       {2, 3},
       {from_bits(0x7fc00001u),  // quiet NaN with a payload
        from_bits(0xff800123u),  // negative signalling NaN with a payload
        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        from_bits(0x00000001u),    // smallest denormal
        from_bits(0x80000000u)}},  // -0.0
      {"bias", {3}, {1.0f, std::numeric_limits<float>::max(), from_bits(0x807fffffu)}},
      {"scalar", {}, {0.25f}},
      {"empty", {3, 0, 2}, {}},
  };
}

TEST_F(SafetensorsTest, RoundTripIsBitExact) {
  const std::vector<TensorData> tensors = special_tensors();
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"step", "1200"}, {"", "x\"y"}};
  const std::string p = path("model.safetensors");
  save_safetensors(p, tensors, meta);
  std::map<std::string, std::string> meta_back{{"stale", "entry"}};
  const std::vector<TensorData> back = load_safetensors(p, &meta_back);
  EXPECT_EQ(meta_back, meta);
  ASSERT_EQ(back.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(back[i].name, tensors[i].name);  // file order == save order
    EXPECT_EQ(back[i].shape, tensors[i].shape);
    ASSERT_EQ(back[i].data.size(), tensors[i].data.size());
    for (size_t k = 0; k < tensors[i].data.size(); ++k)
      EXPECT_EQ(to_bits(back[i].data[k]), to_bits(tensors[i].data[k])) << tensors[i].name << k;
  }
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, ByteLayoutFollowsTheFormat) {
  const std::string p = path("layout.safetensors");
  save_safetensors(p, {{"b", {2}, {1.0f, 2.0f}}, {"a", {1, 1}, {-3.0f}}}, {{"k", "v"}});
  const std::string bytes = read_bytes(p);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 12);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["b"]["dtype"], "F32");
  EXPECT_EQ(header["b"]["shape"], nlohmann::json::array({2}));
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json::array({0, 8}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json::array({8, 12}));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(bytes.substr(8 + n), float_bytes({1.0f, 2.0f, -3.0f}));
}

TEST_F(SafetensorsTest, ReadsAHandWrittenFile) {
  // As the Python package writes it: tensors sorted by offset, padded header.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]},)"
      R"("y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    )";
  const std::string p = path("hand.safetensors");
  write_bytes(p, make_file(header, float_bytes({9.0f, 1.0f, 2.0f, 3.0f, 4.0f})));
  std::map<std::string, std::string> meta;
  const auto t = load_safetensors(p, &meta);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "y");
  EXPECT_EQ(t[0].data, std::vector<float>{9.0f});
  EXPECT_EQ(t[1].name, "x");
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(t[1].data, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
  EXPECT_EQ(meta.at("format"), "pt");
}

TEST_F(SafetensorsTest, TruncatedFiles) {
  const std::string p = path("good.safetensors");
  save_safetensors(p, special_tensors());
  const std::string good = read_bytes(p);
  const std::string bad = path("bad.safetensors");
  EXPECT_EQ(load_error(good.substr(0, 5)),
            bad + ": truncated: 5 bytes, shorter than the 8-byte header length");
  EXPECT_EQ(load_error(good.substr(0, 20)).rfind(bad + ": header length ", 0), 0u);
  EXPECT_EQ(load_error(good.substr(0, good.size() - 1)).rfind(bad + ": tensor ", 0), 0u)
      << load_error(good.substr(0, good.size() - 1));
  EXPECT_NE(load_error(good.substr(0, good.size() - 1)).find("out of range"), std::string::npos);
  EXPECT_EQ(load_error(""), bad + ": truncated: 0 bytes, shorter than the 8-byte header length");
}

TEST_F(SafetensorsTest, CorruptHeaders) {
  const std::string bad = path("bad.safetensors");
  const std::string data = float_bytes({1.0f, 2.0f});
  auto error = [&](const std::string& header) { return load_error(make_file(header, data)); };
  auto expect_prefix = [&](const std::string& header, const std::string& what) {
    const std::string message = error(header);
    EXPECT_EQ(message.rfind(bad + ": " + what, 0), 0u) << "got: " << message;
  };
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "corrupt header: ");
  expect_prefix(R"([1,2])", "corrupt header: not a JSON object");
  expect_prefix(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})",
                "tensor 'a': dtype F16 is not supported (only F32)");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2]}})",
                "tensor 'a': expected an object with dtype, shape and data_offsets");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                "tensor 'a': shape [-2] is not a list of non-negative integers");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})",
                "tensor 'a': data_offsets [0, 12] out of range (data is 8 bytes)");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
                "tensor 'a': data_offsets [8, 0] out of range");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})",
                "tensor 'a': data_offsets [0,-8] is not a pair of non-negative integers");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                "tensor 'a': data_offsets [0, 8] hold 8 bytes but shape [3] needs 12");
  expect_prefix(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                "tensors 'a' and 'b' overlap");
  expect_prefix(R"({"__metadata__":{"k":1}})", "metadata 'k' is not a string");
  // A length field far beyond the file.
  std::string huge = make_file("{}", "");
  huge[7] = 0x10;
  EXPECT_EQ(load_error(huge).rfind(bad + ": header length 1152921504606846978 runs past", 0), 0u);
}

TEST_F(SafetensorsTest, UnreadablePath) {
  const std::string missing = path("missing.safetensors");
  try {
    load_safetensors(missing);
    FAIL() << "expected copse::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), (missing + ": cannot open: No such file or directory").c_str());
  }
}

TEST_F(SafetensorsTest, BadTensorsAreRejectedBeforeTouchingTheFile) {
  const std::string p = path("model.safetensors");
  save_safetensors(p, {{"a", {1}, {5.0f}}});
  const std::string before = read_bytes(p);
  EXPECT_THROW(save_safetensors(p, {{"a", {2}, {1.0f}}}), Error);                      // shape/data
  EXPECT_THROW(save_safetensors(p, {{"a", {1}, {1.0f}}, {"a", {1}, {2.0f}}}), Error);  // dup
  EXPECT_THROW(save_safetensors(p, {{"__metadata__", {1}, {1.0f}}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"", {1}, {1.0f}}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"a", {-1}, {}}}), Error);
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, SaveIntoMissingDirectoryFails) {
  const std::string p = path("no/such/dir/model.safetensors");
  try {
    save_safetensors(p, special_tensors());
    FAIL() << "expected copse::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p + ": cannot create ", 0), 0u) << e.what();
  }
  EXPECT_TRUE(listing().empty());
}

TEST_F(SafetensorsTest, FailedRenameRemovesTheTemporary) {
  // Renaming a file over a non-empty directory fails (EISDIR).
  const std::string p = path("occupied");
  fs::create_directories(fs::path(p) / "inside");
  try {
    save_safetensors(p, special_tensors());
    FAIL() << "expected copse::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p + ": cannot rename ", 0), 0u) << e.what();
  }
  EXPECT_EQ(listing(), std::vector<std::string>{"occupied"});
  EXPECT_TRUE(fs::is_directory(fs::path(p) / "inside"));
}

TEST_F(SafetensorsTest, FailedWriteLeavesTheOldFileIntact) {
  const std::string p = path("model.safetensors");
  save_safetensors(p, {{"a", {1}, {5.0f}}});
  const std::string before = read_bytes(p);
  // Cap the size of files this process may write, so the save fails halfway
  // with EFBIG (SIGXFSZ ignored), then restore the limit.
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit capped = old;
  capped.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &capped), 0);
  std::string message;
  try {
    save_safetensors(p, {{"big", {10000}, std::vector<float>(10000, 1.0f)}});
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(message.rfind(p + ": cannot write ", 0), 0u) << message;
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
}

}  // namespace
}  // namespace copse::memory
