// The layering of the sources: the generic layers (common, vertex,
// scheduler, memory, ops, models) include nothing from cuda/, which
// registers itself with them instead; and in a CUDA build that registration
// survives static linking, in the tests and in the copse binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "ops/device.h"

namespace fs = std::filesystem;

namespace copse {
namespace {

TEST(Layering, GenericLayersIncludeNothingFromCuda) {
  const std::regex include_cuda(R"(^\s*#\s*include\s*["<]cuda/)");
  int files = 0;
  std::string offenders;
  for (const char* dir : {"common", "vertex", "scheduler", "memory", "ops", "models"}) {
    const fs::path root = fs::path(COPSE_SOURCE_DIR) / dir;
    ASSERT_TRUE(fs::is_directory(root)) << root;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".h" && ext != ".cpp" && ext != ".cuh" && ext != ".inc") continue;
      ++files;
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n)
        if (std::regex_search(line, include_cuda))
          offenders += entry.path().string() + ":" + std::to_string(n) + ": " + line + "\n";
    }
  }
  EXPECT_GT(files, 50);
  EXPECT_TRUE(offenders.empty()) << "generic layers must not include cuda/ (register instead):\n"
                                 << offenders;
}

// cuda/register.cpp is linked as an object file: were it left in the static
// library, nothing would reference it and `--device cuda` would say "built
// without the CUDA backend".
TEST(Layering, CudaBackendRegistersItselfInCudaBuilds) {
#ifdef COPSE_WITH_CUDA
  EXPECT_TRUE(ops::cuda_built());
  ASSERT_NE(ops::find_backend("cuda"), nullptr);
  if (ops::gpu_count() > 0) GTEST_SKIP() << "a GPU is present: the CLI would train";
  const std::string cmd = std::string(COPSE_BINARY_DIR) + "/copse train --device cuda 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  EXPECT_EQ(out.find("built without the CUDA backend"), std::string::npos) << out;
  // No GPU here: it stops at once, saying why (as ops::gpu_description does).
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << out;
  EXPECT_NE(out.find("--device cuda: " + ops::gpu_description(0)), std::string::npos) << out;
#else
  EXPECT_FALSE(ops::cuda_built());
  EXPECT_EQ(ops::gpu_count(), 0);
  EXPECT_NE(ops::gpu_description(0).find("no GPU support in this build"), std::string::npos);
#endif
}

}  // namespace
}  // namespace copse
