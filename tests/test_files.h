// Small fixtures shared by the reader tests (PTB, CoNLL-U, vocab, GloVe): a
// per-test temporary directory with a helper to write files into it, and the
// children of a vertex of a LabeledTree.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace copse::testutil {

// A fixture whose every test gets a fresh, empty directory dir_ under gtest's
// TempDir(), named <prefix>_<test name>_<pid>, removed after the test.
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(std::string prefix) : prefix_(std::move(prefix)) {}

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           fmt::format("{}_{}_{}", prefix_, info->name(), ::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `bytes` to dir_/name and returns its path.
  std::string write_file(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

// The children of vertex v of a tree (anything with a scheduler::Graph `graph`).
template <typename Tree>
std::vector<int> kids(const Tree& t, int v) {
  const auto& g = t.graph;
  return {g.children.begin() + g.child_ptr[v], g.children.begin() + g.child_ptr[v + 1]};
}

}  // namespace copse::testutil
