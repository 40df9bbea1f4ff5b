// The hand-written kernels of cuda/kernels_body.cuh (what cuda/kernels.cu
// builds for the GPU), run on the host emulator through their own launchers
// (so with the grids and blocks those compute) against the CPU backend:
// rows, batched row jobs, scatter-adds with atomics, segment sums, fills and
// scales, the two-stage sums of squares, the softmax cross-entropy, the
// optimizer updates. The interpreter kernel is checked with the generated
// ones (test_generated_kernels.cpp).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "cuda/host_emu/host_kernels.h"
#include "cuda/launch_plans.h"
#include "ops/cpu_backend.h"
#include "tests/cuda_host/emu_test_util.h"

namespace copse {
namespace {

using emutest::close;
using emutest::random_vec;
using emutest::Vec;
namespace hk = cuda::host_kernels;
namespace emu = cuda::emu;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Runs `check(stream, what)` once per schedule.
template <typename F>
void for_each_schedule(F&& check, bool many_barriers = false) {
  for (const emu::Options& o : many_barriers ? emutest::fiber_schedules() : emutest::schedules()) {
    emu::Stream s{o};
    check(&s, emutest::describe(o));
  }
}

std::vector<int> random_rows(int n, int lo, int hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> v(n);
  for (int& i : v) i = std::uniform_int_distribution<int>(lo, hi)(rng);
  return v;
}

TEST(CudaOnHost, RowKernelsMatchCpu) {
  ops::CpuBackend<float> cpu(1);
  const int n = 53, w = 70, ld = 75, src_rows = 40;
  const Vec src = random_vec(src_rows * ld, 5);
  const std::vector<int> idx = random_rows(n, -1, src_rows - 1, 6);  // repeats and -1
  for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
    {
      Vec ref(n * ld, 7.f), got = ref;
      cpu.gather_rows(n, w, src.data(), ld, idx.data(), ref.data(), ld);
      hk::gather_rows(s, n, w, src.data(), ld, idx.data(), got.data(), ld);
      EXPECT_TRUE(close(got, ref, 0, "gather_rows " + how));
    }
    {  // repeated indices: atomics in an order the schedule picks
      const Vec g = random_vec(n * ld, 8);
      Vec ref = random_vec(src_rows * ld, 9), got = ref;
      cpu.scatter_add_rows(n, w, g.data(), ld, idx.data(), ref.data(), ld);
      hk::scatter_add_rows(s, n, w, g.data(), ld, idx.data(), got.data(), ld);
      EXPECT_TRUE(close(got, ref, 1e-6, "scatter_add_rows " + how));
    }
    {  // an offset first pointer, empty segments, mean and accumulate
      const std::vector<int> ptr = {5, 7, 7, 10, 11, 15};
      const int segs = 5;
      const Vec e = random_vec(10 * w, 10);
      for (bool mean : {false, true})
        for (bool acc : {false, true}) {
          Vec ref = random_vec(segs * ld, 11), got = ref;
          cpu.segment_sum(segs, w, ptr.data(), e.data(), w, ref.data(), ld, mean, acc);
          hk::segment_sum(s, segs, w, ptr.data(), e.data(), w, got.data(), ld, mean, acc);
          EXPECT_TRUE(close(got, ref, 1e-6, fmt::format("segment_sum {} {} {}", mean, acc, how)));
        }
    }
    {  // copies: broadcast, strided, dense (the flat kernel), one row
      const Vec row = random_vec(w, 12), dense = random_vec(n * w, 13);
      for (bool acc : {false, true}) {
        Vec ref = random_vec(n * ld, 14), got = ref;
        cpu.copy_rows(n, w, row.data(), 0, ref.data(), ld, acc);
        hk::copy_rows(s, n, w, row.data(), 0, got.data(), ld, acc);
        cpu.copy_rows(src_rows - 3, w - 5, src.data(), ld, ref.data() + 2, ld, acc);
        hk::copy_rows(s, src_rows - 3, w - 5, src.data(), ld, got.data() + 2, ld, acc);
        EXPECT_TRUE(close(got, ref, 0, "copy_rows strided " + how));
        Vec ref2 = random_vec(n * w, 15), got2 = ref2;
        cpu.copy_rows(n, w, dense.data(), w, ref2.data(), w, acc);
        hk::copy_rows(s, n, w, dense.data(), w, got2.data(), w, acc);
        cpu.copy_rows(1, 3 * w + 1, dense.data() + 1, 0, ref2.data() + 7, 0, acc);
        hk::copy_rows(s, 1, 3 * w + 1, dense.data() + 1, 0, got2.data() + 7, 0, acc);
        EXPECT_TRUE(close(got2, ref2, 0, "copy_rows dense " + how));
      }
    }
    {  // fills (strided and flat), scale_rows, C = beta C
      Vec ref = random_vec(n * ld, 16), got = ref;
      cpu.fill_rows(3, w, 2.5f, ref.data() + ld, ld);
      hk::fill_rows(s, 3, w, 2.5f, got.data() + ld, ld);
      cpu.fill_rows(4, ld, -1.f, ref.data() + 10 * ld, ld);
      hk::fill_rows(s, 4, ld, -1.f, got.data() + 10 * ld, ld);
      const Vec sc = random_vec(n, 17);
      cpu.scale_rows(n, w, sc.data(), ref.data(), ld);
      hk::scale_rows(s, n, w, sc.data(), got.data(), ld);
      EXPECT_TRUE(close(got, ref, 1e-7, "fill_rows, scale_rows " + how));
      for (float beta : {0.f, 0.5f}) {
        Vec c = random_vec(n * ld, 18);
        if (beta == 0.f) c[3] = kNaN;  // beta 0 writes zeros whatever C held
        Vec cref = c;
        cpu.gemm(false, false, n, w, 0, 1.f, nullptr, 1, nullptr, w, beta, cref.data(), ld);
        hk::scale_matrix(s, n, w, beta, c.data(), ld);
        EXPECT_TRUE(close(c, cref, 0, fmt::format("scale_matrix beta {} {}", beta, how)));
      }
    }
  });
}

TEST(CudaOnHost, BatchedRowJobsMatchCpu) {
  ops::CpuBackend<float> cpu(1);
  const int ld = 45;
  const Vec src = random_vec(30 * ld, 20), grad = random_vec(64 * ld, 21);
  const std::vector<int> i0 = random_rows(17, -1, 29, 22), i1 = random_rows(64, 0, 29, 23),
                         i2 = random_rows(5, 0, 29, 24);
  for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
    Vec ref(100 * ld, 3.f), got = ref;
    std::vector<ops::RowJob<float>> jobs = {
        {17, 40, src.data(), ld, i0.data(), ref.data(), ld},
        {0, 40, src.data(), ld, i0.data(), ref.data(), ld},  // empty: dropped
        {64, 33, src.data() + 1, ld, i1.data(), ref.data() + 20 * ld, ld},
        {5, 45, src.data(), ld, i2.data(), ref.data() + 90 * ld, ld}};
    cpu.gather_rows_batched(jobs.data(), static_cast<int>(jobs.size()));
    std::vector<ops::RowJob<float>> gjobs = jobs;
    for (auto& j : gjobs) j.dst = got.data() + (j.dst - ref.data());
    const cuda::kernels::RowJobs packed = cuda::pack_jobs(gjobs.data(), 0, 4);
    EXPECT_EQ(packed.count, 3);
    hk::gather_rows_batched(s, packed);
    EXPECT_TRUE(close(got, ref, 0, "gather_rows_batched " + how));
    // Scatter-adds with repeated rows across jobs into one buffer.
    Vec sref = random_vec(30 * ld, 25), sgot = sref;
    std::vector<ops::RowJob<float>> sj = {
        {17, 40, grad.data(), ld, i0.data(), sref.data(), ld},
        {64, 33, grad.data() + 2, ld, i1.data(), sref.data() + 1, ld}};
    cpu.scatter_add_rows_batched(sj.data(), 2);
    for (auto& j : sj) j.dst = sgot.data() + (j.dst - sref.data());
    hk::scatter_add_rows_batched(s, cuda::pack_jobs(sj.data(), 0, 2));
    EXPECT_TRUE(close(sgot, sref, 1e-6, "scatter_add_rows_batched " + how));
  });
}

TEST(CudaOnHost, ListedRowsAndFlatScaleMatchCpu) {
  ops::CpuBackend<float> cpu(1);
  const std::vector<int> rows = {3, 0, 17, 9, 40};
  const int rw = 33;
  for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
    Vec ref = random_vec(50 * rw + 4000, 30), got = ref;
    cpu.scale_listed_rows(5, rows.data(), rw, -2.f, ref.data());
    hk::scale_listed_rows(s, 5, rows.data(), rw, -2.f, got.data());
    cpu.fill_listed_rows(2, rows.data() + 2, rw, 0.f, ref.data());
    hk::fill_listed_rows(s, 2, rows.data() + 2, rw, 0.f, got.data());
    cpu.scale(3001, 0.5f, ref.data() + 500);
    hk::scale(s, 3001, 0.5f, got.data() + 500);
    EXPECT_TRUE(close(got, ref, 0, "listed rows and scale " + how));
  });
}

// The two-stage reductions: 256 blocks of partial sums, then one block.
// Deterministic: every schedule gives the same bits.
TEST(CudaOnHost, SumsOfSquaresMatchCpuAndAreDeterministic) {
  ops::CpuBackend<float> cpu(1);
  const Vec x = random_vec(100003, 31);
  const std::vector<int> rows = {3, 0, 17, 9, 2999};
  const int rw = 33;
  const double ref = cpu.sum_squares(x.size(), x.data());
  const double ref_rows = cpu.sum_squares_listed_rows(5, rows.data(), rw, x.data());
  std::vector<double> flat, listed;
  for_each_schedule(
      [&](hk::cudaStream_t s, const std::string& how) {
        std::vector<double> ws(cuda::kernels::kReduceBlocks + 1, std::nan(""));
        hk::sum_squares(s, x.size(), x.data(), ws.data(), ws.data() + cuda::kernels::kReduceBlocks);
        flat.push_back(ws.back());
        EXPECT_NEAR(ws.back(), ref, 1e-6 * ref) << how;
        hk::sum_squares(s, 7, x.data(), ws.data(), ws.data() + cuda::kernels::kReduceBlocks);
        EXPECT_NEAR(ws.back(), cpu.sum_squares(7, x.data()), 1e-12) << how << " (7 elements)";
        hk::sum_squares_listed_rows(s, 5, rows.data(), rw, x.data(), ws.data(),
                                    ws.data() + cuda::kernels::kReduceBlocks);
        listed.push_back(ws.back());
        EXPECT_NEAR(ws.back(), ref_rows, 1e-6 * ref_rows) << how;
      },
      true);
  for (std::size_t k = 1; k < flat.size(); ++k) {
    EXPECT_EQ(flat[k], flat[0]) << "sum_squares differs between schedules";
    EXPECT_EQ(listed[k], listed[0]) << "sum_squares_listed_rows differs between schedules";
  }
}

TEST(CudaOnHost, SoftmaxCrossEntropyMatchesCpu) {
  ops::CpuBackend<float> cpu(1);
  for (int classes : {5, 37}) {
    const int rows = 70, ld = classes + 3;
    const Vec logits = random_vec(rows * ld, 40, -4.f, 4.f);
    const std::vector<int> labels = random_rows(rows, -1, classes - 1, 41);
    Vec dref(rows * ld, 9.f);
    std::vector<int> pred_ref(rows);
    long correct_ref = 0;
    const double loss_ref = cpu.softmax_xent(rows, classes, logits.data(), ld, labels.data(), 0.25f,
                                             dref.data(), ld, &correct_ref, pred_ref.data());
    for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
      Vec d(rows * ld, 9.f);
      std::vector<int> pred(rows, -7), hit(rows, -7);
      std::vector<double> row_loss(rows, std::nan("")), out(2, std::nan(""));
      int bad = 0;  // not reset: the label check sets it
      hk::softmax_xent(s, rows, classes, logits.data(), ld, labels.data(), 0.25f, d.data(), ld,
                       pred.data(), row_loss.data(), hit.data(), out.data(), &bad);
      const std::string what = fmt::format("classes {} {}", classes, how);
      EXPECT_NEAR(out[0], loss_ref, 1e-6 * std::fabs(loss_ref)) << what;
      EXPECT_EQ(out[1], static_cast<double>(correct_ref)) << what;
      EXPECT_EQ(pred, pred_ref) << what;
      EXPECT_EQ(bad, INT_MAX) << what;
      EXPECT_TRUE(close(d, dref, 1e-6, "dlogits " + what));
    });
  }
}

// Labels >= classes in several rows, set in a random order, some in one
// block: the check names the lowest row, so the CUDA backend's error is the
// CPU backend's text, and, as on the CPU, nothing is written.
TEST(CudaOnHost, SoftmaxBadLabelsNameTheLowestRowAndWriteNothing) {
  ops::CpuBackend<float> cpu(1);
  const int rows = 300, classes = 5, ld = 8;
  const Vec logits = random_vec(rows * ld, 42, -4.f, 4.f);
  std::vector<int> labels = random_rows(rows, -1, classes - 1, 43);
  std::vector<int> bad_rows = {45, 298, 41, 170, 47, 42, 9 * 8 + 3};
  std::shuffle(bad_rows.begin(), bad_rows.end(), std::mt19937(44));
  for (std::size_t k = 0; k < bad_rows.size(); ++k)
    labels[bad_rows[k]] = classes + static_cast<int>(k);
  const float kSentinel = 9.f;
  Vec dref(rows * ld, kSentinel);
  std::vector<int> pred_ref(rows, -7);
  long correct_ref = -7;
  std::string want;
  try {
    cpu.softmax_xent(rows, classes, logits.data(), ld, labels.data(), 1.f, dref.data(), ld,
                     &correct_ref, pred_ref.data());
  } catch (const Error& e) {
    want = e.what();
  }
  ASSERT_FALSE(want.empty()) << "the CPU backend accepted labels >= classes";
  ASSERT_EQ(dref, Vec(rows * ld, kSentinel)) << "the CPU backend wrote dlogits";
  for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
    Vec d(rows * ld, kSentinel);
    std::vector<int> pred(rows, -7), hit(rows, -7);
    std::vector<double> row_loss(rows, std::nan("")), out(2, std::nan(""));
    int bad = 0;
    hk::softmax_xent(s, rows, classes, logits.data(), ld, labels.data(), 1.f, d.data(), ld,
                     pred.data(), row_loss.data(), hit.data(), out.data(), &bad);
    ASSERT_TRUE(bad >= 0 && bad < rows) << how << ": bad_label is " << bad;
    EXPECT_EQ(ops::softmax_label_error(bad, labels[bad], classes), want) << how;
    EXPECT_EQ(d, Vec(rows * ld, kSentinel)) << how << ": dlogits written";
    EXPECT_EQ(pred, std::vector<int>(rows, -7)) << how << ": predictions written";
    EXPECT_EQ(hit, std::vector<int>(rows, -7)) << how << ": row hits written";
    EXPECT_TRUE(
        std::all_of(row_loss.begin(), row_loss.end(), [](double v) { return std::isnan(v); }))
        << how << ": row losses written";
  });
}

TEST(CudaOnHost, OptimizerUpdatesMatchCpu) {
  ops::CpuBackend<float> cpu(1);
  const std::size_t n = 4099;
  const int width = 16;
  const std::vector<int> rows = {2, 40, 7, 100};
  using K = memory::OptimizerConfig;
  for (auto kind : {K::Sgd, K::Adagrad, K::Adam})
    for (float mom : {0.f, 0.9f}) {
      if (kind != K::Sgd && mom > 0) continue;
      K a;
      a.kind = kind;
      a.lr = 0.05f;
      a.momentum = mom;
      a.l2 = 1e-3f;
      const bool uses_s0 = kind != K::Sgd || mom > 0, uses_s1 = kind == K::Adam;
      for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
        Vec p = random_vec(n, 19), s0(n, 0.f), s1(n, 0.f);
        Vec hp = p, hs0 = s0, hs1 = s1;
        for (long t = 1; t <= 3; ++t) {
          const Vec g = random_vec(n, 20 + t);
          cpu.optimizer_update(a, t, 2000, p.data(), g.data(), uses_s0 ? s0.data() : nullptr,
                               uses_s1 ? s1.data() : nullptr);
          hk::optimizer_update(s, cuda::optimizer_params(a, t), 2000, hp.data(), g.data(),
                               uses_s0 ? hs0.data() : nullptr, uses_s1 ? hs1.data() : nullptr);
          cpu.optimizer_update_rows(a, t, 4, rows.data(), width, p.data() + 2048, g.data() + 2048,
                                    uses_s0 ? s0.data() + 2048 : nullptr,
                                    uses_s1 ? s1.data() + 2048 : nullptr);
          hk::optimizer_update_rows(s, cuda::optimizer_params(a, t), 4, rows.data(), width,
                                    hp.data() + 2048, g.data() + 2048,
                                    uses_s0 ? hs0.data() + 2048 : nullptr,
                                    uses_s1 ? hs1.data() + 2048 : nullptr);
        }
        const std::string what = fmt::format("optimizer {} momentum {} {}", int(kind), mom, how);
        EXPECT_TRUE(close(hp, p, 1e-6, "parameters " + what));
        EXPECT_TRUE(close(hs0, s0, 1e-6, "state 0 " + what));
        EXPECT_TRUE(close(hs1, s1, 1e-6, "state 1 " + what));
      });
    }
}

// The read-only checks before an update: the smallest (tag, offset) of an
// element the update would make inf or NaN, through atomicMin on one word,
// in whatever order the schedule runs the threads; the CPU's answer.
TEST(CudaOnHost, OptimizerChecksFindTheFirstNonFiniteElementAsCpu) {
  ops::CpuBackend<float> cpu(1);
  const std::size_t n = 5000;
  const int width = 24;
  const std::vector<int> rows = {7, 1, 30, 12};
  using K = memory::OptimizerConfig;
  const float inf = std::numeric_limits<float>::infinity();
  for (auto kind : {K::Sgd, K::Adagrad, K::Adam}) {
    K a;
    a.kind = kind;
    a.lr = 0.05f;
    a.momentum = kind == K::Sgd ? 0.9f : 0.f;
    const Vec p = random_vec(n, 50), s0 = random_vec(n, 51, 0.f, 1.f),
              s1 = random_vec(n, 52, 0.f, 1.f);
    for (int bad : {0, 1, 3}) {  // how many poisoned gradients (each case its own positions)
      Vec g = random_vec(n, 53);
      const std::size_t at[] = {4321, 893, 1343};  // 893, 1343: in listed rows 12 and 30 too
      for (int k = 0; k < bad; ++k) g[at[k]] = k == 1 ? kNaN : inf;
      const float* c0 = kind == K::Sgd && a.momentum == 0.f ? nullptr : s0.data();
      const float* c1 = kind == K::Adam ? s1.data() : nullptr;
      cpu.optimizer_check(a, 2, n, p.data(), g.data(), c0, c1, 3);
      cpu.optimizer_check_rows(a, 2, 4, rows.data(), width, p.data() + 600, g.data() + 600,
                               c0 ? c0 + 600 : nullptr, c1 ? c1 + 600 : nullptr, 1);
      const auto ref = cpu.take_nonfinite();
      EXPECT_EQ(ref.found(), bad > 0);
      for_each_schedule([&](hk::cudaStream_t s, const std::string& how) {
        unsigned long long first = ~0ull;
        const auto params = cuda::optimizer_params(a, 2);
        hk::optimizer_check(s, params, n, p.data(), g.data(), c0, c1, 3, &first);
        hk::optimizer_check_rows(s, params, 4, rows.data(), width, p.data() + 600, g.data() + 600,
                                 c0 ? c0 + 600 : nullptr, c1 ? c1 + 600 : nullptr, 1, &first);
        const int tag =
            first == ~0ull ? -1 : static_cast<int>(first >> cuda::kernels::kNonFiniteTagShift);
        const long offset =
            first == ~0ull
                ? -1
                : static_cast<long>(first & ((1ull << cuda::kernels::kNonFiniteTagShift) - 1));
        const std::string what =
            fmt::format("optimizer {} with {} bad gradients, {}", int(kind), bad, how);
        EXPECT_EQ(tag, ref.tag) << what;
        EXPECT_EQ(offset, ref.offset) << what;
      });
    }
  }
}

// After a run of the whole binary: which kernels ran on the host.
class ListKernels : public ::testing::Environment {
 public:
  void TearDown() override {
    const std::vector<std::string> names = emu::kernels_launched();
    int generated = 0;
    for (const std::string& n : names) generated += n.rfind("copse_fused_", 0) == 0;
    std::printf(
        "kernels run on the host: %zu (%d generated, %zu of cuda/kernels_body.cuh), %ld "
        "launches\n",
        names.size(), generated, names.size() - generated, emu::launches());
    for (const std::string& n : names)
      if (n.rfind("copse_fused_", 0) != 0) std::printf("  %s\n", n.c_str());
  }
};
const auto* const list_kernels = ::testing::AddGlobalTestEnvironment(new ListKernels);

}  // namespace
}  // namespace copse
