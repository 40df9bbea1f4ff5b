// The SSP parameter server across MPI ranks (memory/mpi_ssp.h), driven by the
// toy of tests/mpi/toy/ssp_toy.cpp under mpirun on loopback (3-4 ranks, more
// than the cores): the bound holds on the parameters themselves (the toy's
// ledger counts the pushes each read held) and in the server's measurement,
// with an injected straggler the others wait and without a binding bound no
// one does, the collected parameters equal the bulk-synchronous reference
// (the summed gradients of each clock, one SGD step) to 1e-6, and a rank
// that stops answering or dies ends the job in bounded time naming it.
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const std::string kToy = std::string(COPSE_BINARY_DIR) + "/copse_ssp_toy";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int status = -1;
  double seconds = 0;
  std::string err;
};

std::string mpi_prefix(int ranks) {
  const char* asan = std::getenv("ASAN_OPTIONS");
  return fmt::format(
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS={}detect_leaks=0 "
      "{} --oversubscribe --bind-to none {} {}",
      asan && *asan ? std::string(asan) + ":" : "", COPSE_MPIEXEC, COPSE_MPIEXEC_NUMPROC_FLAG, ranks);
}

Result shell(const std::string& cmd, const fs::path& dir) {
  const fs::path e = dir / "stderr.txt";
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system((cmd + " > /dev/null 2> " + e.string()).c_str());
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.err = slurp(e);
  return r;
}

std::vector<double> params(const fs::path& p) {
  std::ifstream in(p);
  std::vector<double> v;
  double x;
  while (in >> x) v.push_back(x);
  return v;
}

class MpiSsp : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / fmt::format("copse_mpi_ssp_{}", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }

  // The toy under SSP on `ranks` ranks, then the reference; returns each
  // rank's statistics and checks the parameters against the reference.
  std::vector<nlohmann::json> run(int ranks, int staleness, int clocks, const std::string& extra) {
    Result r = shell(fmt::format("{} {} --staleness {} --clocks {} --out {} {}", mpi_prefix(ranks),
                                 kToy, staleness, clocks, out("ssp"), extra),
                     dir_);
    EXPECT_EQ(r.status, 0) << r.err;
    Result ref = shell(fmt::format("{} {} --mode ref --workers {} --clocks {} --out {}",
                                   mpi_prefix(1), kToy, ranks, clocks, out("ref")),
                       dir_);
    EXPECT_EQ(ref.status, 0) << ref.err;
    const auto a = params(out("ssp.params")), b = params(out("ref.params"));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a.size(), b.size());
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
      EXPECT_NEAR(a[i], b[i], 1e-6) << "element " << i;
    std::vector<nlohmann::json> st;
    for (int q = 0; q < ranks; ++q) {
      std::ifstream in(out(fmt::format("ssp.rank{}.json", q)));
      nlohmann::json j;
      in >> j;
      EXPECT_EQ(j["reads"].get<long>(), clocks) << "rank " << q;
      EXPECT_EQ(j["violations"].get<long>(), 0) << "rank " << q;
      EXPECT_EQ(j["ledger_violations"].get<long>(), 0) << "rank " << q;
      EXPECT_LE(j["max_behind"].get<long>(), staleness) << "rank " << q;
      EXPECT_LE(j["max_lead"].get<long>(), staleness) << "rank " << q;
      for (auto& [d, n] : j["staleness_histogram"].items()) EXPECT_LE(std::stol(d), staleness);
      EXPECT_GT(j["bytes_pulled"].get<long>(), 0);
      st.push_back(j);
    }
    return st;
  }
  fs::path dir_;
};

// Rank 0 is 30 ms slower per clock: with S = 1 the fast ranks must wait for
// it, reads stay within one clock of the slowest.
TEST_F(MpiSsp, StragglerBoundHoldsAndTheFastRanksWait) {
  const auto st = run(4, 1, 12, "--straggle 0:30");
  ASSERT_EQ(st.size(), 4u);
  for (int q = 1; q < 4; ++q) EXPECT_GT(st[q]["waits"].get<long>(), 0) << "rank " << q;
}

// A bound the run never reaches: nobody waits, though rank 0 straggles, and
// some read holds fewer than all pushes (it ran ahead).
TEST_F(MpiSsp, NoWaitsWhenTheBoundIsNeverReached) {
  const auto st = run(3, 12, 12, "--straggle 0:20");
  long behind = 0;
  for (const auto& j : st) {
    EXPECT_EQ(j["waits"].get<long>(), 0) << j.dump();
    behind = std::max(behind, j["max_behind"].get<long>());
  }
  EXPECT_GT(behind, 0);
}

// S = 0: every read holds every push of its clock; the parameters are BSP's.
TEST_F(MpiSsp, StalenessZeroHoldsEveryPushOfTheClock) {
  const auto st = run(3, 0, 10, "--straggle 2:10");
  for (const auto& j : st) EXPECT_EQ(j["max_behind"].get<long>(), 0) << j.dump();
}

// Rank 1 stops (worker and shard): the others fail within the timeout naming
// it, and the job ends.
TEST_F(MpiSsp, StoppedRankFailsTheOthersInBoundedTime) {
  Result r = shell(fmt::format("{} {} --staleness 1 --clocks 20 --timeout-ms 2000 --stop 1:4 --out {}",
                               mpi_prefix(3), kToy, out("ssp")),
                   dir_);
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, 40.0);
  EXPECT_NE(r.err.find("copse: error: rank "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank(s) 1"), std::string::npos) << r.err;
}

// Rank 2 dies: mpirun ends the job (no rank waits forever).
TEST_F(MpiSsp, DeadRankEndsTheJob) {
  Result r = shell(fmt::format("{} {} --staleness 1 --clocks 20 --timeout-ms 2000 --die 2:3 --out {}",
                               mpi_prefix(3), kToy, out("ssp")),
                   dir_);
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, 40.0);
  EXPECT_FALSE(fs::exists(out("ssp.params")));
}

// Ranks that disagree on the staleness are refused at start-up.
TEST_F(MpiSsp, StalenessDifferingAcrossRanksIsRefused) {
  const std::string env =
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 ";
  Result r = shell(fmt::format("{} {} --oversubscribe --bind-to none {} 1 {} --staleness 1 --out {} : "
                               "{} 1 {} --staleness 2 --out {}",
                               env, COPSE_MPIEXEC, COPSE_MPIEXEC_NUMPROC_FLAG, kToy, out("a"),
                               COPSE_MPIEXEC_NUMPROC_FLAG, kToy, out("a")),
                   dir_);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("copse: error: --staleness differs across ranks"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out("a.params")));
}

}  // namespace
