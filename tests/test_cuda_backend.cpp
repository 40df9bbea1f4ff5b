// The CUDA backend against the CPU backend (differential tests), and the
// fused-kernel generator against NVRTC.
//
// Without a GPU (CI) the code-generation tests still run: NVRTC compiles to
// PTX with no device present. Every test that needs a GPU skips with the
// reason. With a GPU: every primitive, every fused program of every cell
// (generated kernel and interpreter), and every cell's forward and all its
// gradients on random trees, chains and DAGs match the CPU backend to 1e-5
// relative (TF32 off), and a few training steps of the sentiment model give
// the same parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "memory/arena.h"
#include "memory/param_store.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "ops/device.h"
#include "scheduler/executor.h"
#include "scheduler/graph_batch.h"
#include "tests/cell_runs.h"
#include "tests/random_graphs.h"
#include "vertex/plan.h"

#ifdef COPSE_WITH_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/fused_codegen.h"
#include "cuda/nvrtc_compile.h"
#endif

namespace copse {
namespace {

using Vec = std::vector<float>;

// ---------------------------------------------------------------------------
// Helpers.

using celltest::random_vec;

// ||a - b|| / ||b|| (0 when both are zero), and every element within
// tol * (max |b| + 1e-30) of its reference.
::testing::AssertionResult close(const Vec& a, const Vec& b, double tol, const std::string& what) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << what << ": sizes " << a.size() << " vs " << b.size();
  double num = 0, den = 0, amax = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i]))
      return ::testing::AssertionFailure() << what << ": NaN mismatch at " << i;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
    amax = std::max(amax, std::fabs(double(b[i])));
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (rel > tol)
    return ::testing::AssertionFailure() << what << ": norm-wise relative error " << rel
                                         << " > " << tol;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::fabs(double(a[i]) - b[i]) > 10 * tol * (amax + 1e-30))
      return ::testing::AssertionFailure()
             << what << ": element " << i << " is " << a[i] << ", reference " << b[i];
  return ::testing::AssertionSuccess() << what << ": relative error " << rel;
}

using celltest::CellRun;
using celltest::graphs_for;
using celltest::host;
using celltest::run_cell;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The executor's batching of a level's gathers and scatter-adds (what it
// does for CUDA), exercised on the CPU backend: the same outputs and
// gradients as one call per gather, in fewer calls.
TEST(Executor, BatchedRowJobsEqualOneCallPerGather) {
  const int vocab = 50, embed = 24, hidden = 20;
  for (const std::string& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const auto fn = models::make_cell(name, embed, hidden);
    const auto graphs = graphs_for(name, vocab);
    ops::CpuBackend<float> plain(1), batched(1);
    batched.set_batch_row_jobs(true);
    CellRun ref = run_cell(plain, fn, graphs, vocab, embed);
    CellRun got = run_cell(batched, fn, graphs, vocab, embed);
    EXPECT_TRUE(close(got.h, ref.h, 1e-6, name + " output h"));
    EXPECT_TRUE(close(got.grads, ref.grads, 1e-6, name + " gradients"));
    EXPECT_EQ(ref.row_job_batches, 0);
    EXPECT_EQ(got.gather_calls, ref.gather_calls);
    if (name == "tree-lstm") {  // four gathers a level (h and c of two children): one call
      EXPECT_GT(got.row_job_batches, 0);
      EXPECT_LE(got.row_job_batches * 3, got.gather_calls);
    }
  }
}

TEST(Device, ResolvesNamesAndRefusesUnknownOnes) {
  EXPECT_EQ(ops::resolve_device("cpu"), "cpu");
  EXPECT_EQ(ops::resolve_device("auto"), ops::gpu_count() > 0 ? "cuda" : "cpu");
  try {
    ops::resolve_device("tpu");
    FAIL() << "expected an error for --device tpu";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected cpu, cuda or auto"), std::string::npos);
  }
  if (ops::gpu_count() == 0) {
    try {
      ops::resolve_device("cuda");
      FAIL() << "expected an error for --device cuda without a GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
    }
  }
}

#ifndef COPSE_WITH_CUDA

TEST(Cuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without the CUDA backend (COPSE_WITH_CUDA=OFF)";
}

#else

// A device copy of host data that frees itself.
struct DevBuf {
  ops::Backend<float>& be;
  std::size_t bytes;
  void* p;
  DevBuf(ops::Backend<float>& b, const void* host, std::size_t n)
      : be(b), bytes(std::max<std::size_t>(n, 4)), p(b.allocate(bytes)) {
    if (n) be.upload(p, host, n);
  }
  ~DevBuf() { be.deallocate(p, bytes); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* f() { return static_cast<float*>(p); }
  int* i() { return static_cast<int*>(p); }
};
DevBuf dev(ops::Backend<float>& be, const Vec& v) {
  return DevBuf(be, v.data(), v.size() * sizeof(float));
}
DevBuf dev(ops::Backend<float>& be, const std::vector<int>& v) {
  return DevBuf(be, v.data(), v.size() * sizeof(int));
}

#define COPSE_REQUIRE_GPU()                                                      \
  do {                                                                           \
    if (cuda::device_count() == 0)                                               \
      GTEST_SKIP() << "needs a GPU: " << cuda::device_description(0);            \
  } while (0)

// ---------------------------------------------------------------------------
// Code generation (no GPU needed).

TEST(CudaCodegen, EveryFusedProgramOfEveryCellCompilesWithNvrtc) {
  int programs = 0;
  for (const std::string& name : models::cell_names()) {
    vertex::ExecPlan plan = vertex::compile(models::make_cell(name, 12, 10), {});
    for (const auto& reg : plan.regions)
      for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd, &reg.bwd_views}) {
        if (p->code.empty()) continue;
        const std::string src = cuda::fused_kernel_source(*p);
        const std::string kname = cuda::fused_kernel_name(*p);
        cuda::NvrtcResult r = cuda::nvrtc_compile(src, kname, "compute_90");
        ASSERT_TRUE(r.ok) << name << " / " << p->name << ":\n" << r.log << "\n" << src;
        const std::string ptx(r.binary.begin(), r.binary.end());
        EXPECT_NE(ptx.find(".entry " + kname), std::string::npos) << name << " / " << p->name;
        ++programs;
      }
  }
  EXPECT_GE(programs, 2 * static_cast<int>(models::cell_names().size()));
}

// A program with a register read at the column offset it was written at (no
// lane crosses over: no sync), then at a shifted offset (a sync).
TEST(CudaCodegen, SyncsOnlyWhereLanesCrossColumns) {
  ops::FusedProgram p;
  p.name = "shift";
  p.num_inputs = 1;
  p.num_outputs = 1;
  p.regs = {{ops::RegKind::Input, 8, 0}, {ops::RegKind::Temp, 8, -1}, {ops::RegKind::Output, 4, 0}};
  p.code.push_back({ops::EwOp::Sigmoid, {1, 0}, {0, 0}, {}, 8, 0.f});  // t = sigmoid(x)
  p.code.push_back({ops::EwOp::Tanh, {1, 0}, {1, 0}, {}, 8, 0.f});     // t = tanh(t): same lanes
  p.finalize();
  EXPECT_EQ(cuda::fused_kernel_syncs(p), 0);
  p.code.push_back({ops::EwOp::Mul, {2, 0}, {1, 0}, {1, 4}, 4, 0.f});  // out = t[0:4] * t[4:8]
  p.finalize();
  EXPECT_EQ(cuda::fused_kernel_syncs(p), 1);
  // Overwriting columns at the offset they were read at needs no sync (each
  // lane rewrites its own element) ...
  p.code.push_back({ops::EwOp::Copy, {1, 4}, {0, 0}, {}, 4, 0.f});  // t[4:8] = x[0:4]
  p.finalize();
  EXPECT_EQ(cuda::fused_kernel_syncs(p), 1);
  // ... but overwriting columns another lane read at a different offset does.
  p.code.push_back({ops::EwOp::Copy, {1, 2}, {0, 0}, {}, 4, 0.f});  // t[2:6] = x[0:4]
  p.finalize();
  EXPECT_EQ(cuda::fused_kernel_syncs(p), 2);
  cuda::NvrtcResult r = cuda::nvrtc_compile(cuda::fused_kernel_source(p),
                                            cuda::fused_kernel_name(p), "compute_90");
  EXPECT_TRUE(r.ok) << r.log;
}

TEST(CudaCodegen, KernelNamesFollowContent) {
  ops::FusedProgram a;
  a.name = "scale";
  a.num_inputs = 1;
  a.num_outputs = 1;
  a.regs = {{ops::RegKind::Input, 4, 0}, {ops::RegKind::Output, 4, 0}};
  a.code.push_back({ops::EwOp::ScaleAddTo, {1, 0}, {0, 0}, {}, 4, 0.5f});
  a.finalize();
  ops::FusedProgram b = a;
  b.finalize();
  EXPECT_EQ(cuda::fused_kernel_name(a), cuda::fused_kernel_name(b));
  b.code[0].imm = 0.25f;
  b.finalize();
  EXPECT_NE(cuda::fused_kernel_name(a), cuda::fused_kernel_name(b));
  // The immediate is written exactly (a hex float literal).
  EXPECT_NE(cuda::fused_kernel_source(b).find("0x1p-2f"), std::string::npos)
      << cuda::fused_kernel_source(b);
}

TEST(CudaCodegen, NvrtcReportsCompileErrors) {
  cuda::NvrtcResult r = cuda::nvrtc_compile("this is not CUDA", "bad", "compute_90");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.log.empty());
}

TEST(CudaBackendNoGpu, ConstructionFailsWithTheReason) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present";
  try {
    cuda::CudaBackend be;
    FAIL() << "expected an error without a GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GPU"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------
// Primitives against the CPU backend (GPU needed).

struct Pair {
  ops::CpuBackend<float> cpu{1};
  cuda::CudaBackend gpu;
};

TEST(CudaBackend, GemmMatchesCpuForEveryTransposeAndLeadingDimension) {
  COPSE_REQUIRE_GPU();
  Pair b;
  const int m = 37, n = 29, k = 45;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float beta : {0.f, 1.f, 0.5f}) {
        const long lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 7;
        Vec A = random_vec((ta ? k : m) * lda, 1), B = random_vec((tb ? n : k) * ldb, 2);
        Vec C = random_vec(m * ldc, 3);
        if (beta == 0.f) std::fill(C.begin(), C.end(), kNaN);  // beta 0 must not read C
        Vec ref = C;
        b.cpu.gemm(ta, tb, m, n, k, 0.75f, A.data(), lda, B.data(), ldb, beta, ref.data(), ldc);
        DevBuf dA = dev(b.gpu, A), dB = dev(b.gpu, B), dC = dev(b.gpu, C);
        b.gpu.gemm(ta, tb, m, n, k, 0.75f, dA.f(), lda, dB.f(), ldb, beta, dC.f(), ldc);
        Vec got = host(b.gpu, dC.f(), C.size());
        Vec g2, r2;  // the [m, n] blocks (padding columns stay as they were)
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) g2.push_back(got[i * ldc + j]), r2.push_back(ref[i * ldc + j]);
        EXPECT_TRUE(close(g2, r2, 1e-5, fmt::format("gemm ta={} tb={} beta={}", ta, tb, beta)));
      }
  // k == 0: C = beta * C.
  Vec C = random_vec(6, 4), ref = C;
  b.cpu.gemm(false, false, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 2.f, ref.data(), 3);
  DevBuf dC = dev(b.gpu, C);
  b.gpu.gemm(false, false, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 2.f, dC.f(), 3);
  EXPECT_TRUE(close(host(b.gpu, dC.f(), 6), ref, 0, "gemm k=0"));
}

TEST(CudaBackend, RowKernelsMatchCpu) {
  COPSE_REQUIRE_GPU();
  Pair b;
  const int n = 53, w = 70, ld = 75, src_rows = 40;
  Vec src = random_vec(src_rows * ld, 5);
  std::vector<int> idx(n);
  std::mt19937 rng(6);
  for (int& i : idx) i = std::uniform_int_distribution<int>(-1, src_rows - 1)(rng);  // repeats, -1
  DevBuf dsrc = dev(b.gpu, src), didx = dev(b.gpu, idx);
  {  // gather
    Vec ref(n * ld, 7.f), d0 = ref;
    b.cpu.gather_rows(n, w, src.data(), ld, idx.data(), ref.data(), ld);
    DevBuf dd = dev(b.gpu, d0);
    b.gpu.gather_rows(n, w, dsrc.f(), ld, didx.i(), dd.f(), ld);
    EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 0, "gather_rows"));
  }
  {  // scatter-add with repeated indices
    Vec g = random_vec(n * ld, 8), ref = random_vec(src_rows * ld, 9), d0 = ref;
    b.cpu.scatter_add_rows(n, w, g.data(), ld, idx.data(), ref.data(), ld);
    DevBuf dg = dev(b.gpu, g), dd = dev(b.gpu, d0);
    b.gpu.scatter_add_rows(n, w, dg.f(), ld, didx.i(), dd.f(), ld);
    EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 1e-6, "scatter_add_rows"));
  }
  {  // segment sums, with an offset first pointer, empty segments, mean and accumulate
    std::vector<int> ptr = {5, 7, 7, 10, 11, 15};
    const int segs = 5;
    Vec e = random_vec(10 * w, 10);
    DevBuf dptr = dev(b.gpu, ptr), de = dev(b.gpu, e);
    for (bool mean : {false, true})
      for (bool acc : {false, true}) {
        Vec ref = random_vec(segs * w, 11), d0 = ref;
        b.cpu.segment_sum(segs, w, ptr.data(), e.data(), w, ref.data(), w, mean, acc);
        DevBuf dd = dev(b.gpu, d0);
        b.gpu.segment_sum(segs, w, dptr.i(), de.f(), w, dd.f(), w, mean, acc);
        EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 1e-6,
                          fmt::format("segment_sum mean={} acc={}", mean, acc)));
      }
  }
  {  // copy (broadcast and accumulate), fill, colsum, scale_rows
    Vec row = random_vec(w, 12), ref = random_vec(n * ld, 13), d0 = ref;
    b.cpu.copy_rows(n, w, row.data(), 0, ref.data(), ld, true);
    DevBuf drow = dev(b.gpu, row), dd = dev(b.gpu, d0);
    b.gpu.copy_rows(n, w, drow.f(), 0, dd.f(), ld, true);
    EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 0, "copy_rows broadcast"));
    b.cpu.fill_rows(3, w, 2.5f, ref.data() + ld, ld);
    b.gpu.fill_rows(3, w, 2.5f, dd.f() + ld, ld);
    EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 0, "fill_rows"));
    Vec y = random_vec(w, 14), y0 = y;
    b.cpu.colsum(n, w, ref.data(), ld, y.data(), true);
    DevBuf dy = dev(b.gpu, y0);
    b.gpu.colsum(n, w, dd.f(), ld, dy.f(), true);
    EXPECT_TRUE(close(host(b.gpu, dy.f(), w), y, 1e-6, "colsum"));
    Vec sc = random_vec(n, 15);
    b.cpu.scale_rows(n, w, sc.data(), ref.data(), ld);
    DevBuf dsc = dev(b.gpu, sc);
    b.gpu.scale_rows(n, w, dsc.f(), dd.f(), ld);
    EXPECT_TRUE(close(host(b.gpu, dd.f(), ref.size()), ref, 1e-7, "scale_rows"));
  }
  {  // flat reductions and listed rows
    Vec x = random_vec(100003, 16);
    DevBuf dx = dev(b.gpu, x);
    EXPECT_NEAR(b.gpu.sum_squares(x.size(), dx.f()), b.cpu.sum_squares(x.size(), x.data()),
                1e-9 * b.cpu.sum_squares(x.size(), x.data()));
    std::vector<int> rows = {3, 0, 17, 9};
    const int rw = 33;
    EXPECT_NEAR(b.gpu.sum_squares_listed_rows(4, rows.data(), rw, dx.f()),
                b.cpu.sum_squares_listed_rows(4, rows.data(), rw, x.data()), 1e-9 * 4 * rw);
    b.cpu.scale_listed_rows(4, rows.data(), rw, -2.f, x.data());
    b.gpu.scale_listed_rows(4, rows.data(), rw, -2.f, dx.f());
    b.cpu.fill_listed_rows(2, rows.data() + 2, rw, 0.f, x.data());
    b.gpu.fill_listed_rows(2, rows.data() + 2, rw, 0.f, dx.f());
    b.cpu.scale(1000, 0.5f, x.data() + 500);
    b.gpu.scale(1000, 0.5f, dx.f() + 500);
    EXPECT_TRUE(close(host(b.gpu, dx.f(), x.size()), x, 0, "listed rows and scale"));
  }
}

TEST(CudaBackend, SoftmaxCrossEntropyMatchesCpu) {
  COPSE_REQUIRE_GPU();
  Pair b;
  const int rows = 300, classes = 5, ld = 8;
  Vec logits = random_vec(rows * ld, 17, -4.f, 4.f);
  std::vector<int> labels(rows);
  std::mt19937 rng(18);
  for (int& l : labels) l = std::uniform_int_distribution<int>(-1, classes - 1)(rng);
  Vec dref(rows * ld, 9.f);
  std::vector<int> pred_ref(rows), pred(rows);
  long correct_ref = 0, correct = 0;
  const double loss_ref = b.cpu.softmax_xent(rows, classes, logits.data(), ld, labels.data(),
                                             0.25f, dref.data(), ld, &correct_ref,
                                             pred_ref.data());
  DevBuf dl = dev(b.gpu, logits), dlab = dev(b.gpu, labels), dd = dev(b.gpu, Vec(rows * ld, 9.f));
  const double loss = b.gpu.softmax_xent(rows, classes, dl.f(), ld, dlab.i(), 0.25f, dd.f(), ld,
                                         &correct, pred.data());
  EXPECT_NEAR(loss, loss_ref, 1e-5 * std::fabs(loss_ref));
  EXPECT_EQ(correct, correct_ref);
  EXPECT_EQ(pred, pred_ref);
  EXPECT_TRUE(close(host(b.gpu, dd.f(), dref.size()), dref, 1e-5, "dlogits"));
  // Out of range in several rows: the CPU's error (its lowest row), and
  // nothing written.
  for (int r : {250, 7, 130, 3}) labels[r] = classes + r % 3;
  DevBuf dbad = dev(b.gpu, labels), dd2 = dev(b.gpu, Vec(rows * ld, 9.f));
  std::string want, got;
  try {
    b.cpu.softmax_xent(rows, classes, logits.data(), ld, labels.data(), 1.f, dref.data(), ld,
                       &correct_ref, pred_ref.data());
  } catch (const Error& e) {
    want = e.what();
  }
  std::vector<int> pred2(rows, -7);
  long correct2 = -7;
  try {
    b.gpu.softmax_xent(rows, classes, dl.f(), ld, dbad.i(), 1.f, dd2.f(), ld, &correct2,
                       pred2.data());
  } catch (const Error& e) {
    got = e.what();
  }
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(got, want);
  EXPECT_EQ(host(b.gpu, dd2.f(), dref.size()), Vec(rows * ld, 9.f)) << "dlogits written";
  EXPECT_EQ(pred2, std::vector<int>(rows, -7)) << "predictions written";
  EXPECT_EQ(correct2, -7);
}

TEST(CudaBackend, OptimizerUpdatesMatchCpu) {
  COPSE_REQUIRE_GPU();
  Pair b;
  const std::size_t n = 4099;
  const int width = 16;
  std::vector<int> rows = {2, 40, 7, 100};
  using K = memory::OptimizerConfig;
  for (auto kind : {K::Sgd, K::Adagrad, K::Adam})
    for (float mom : {0.f, 0.9f}) {
      if (kind != K::Sgd && mom > 0) continue;
      K a;
      a.kind = kind;
      a.lr = 0.05f;
      a.momentum = mom;
      a.l2 = 1e-3f;
      Vec p = random_vec(n, 19), s0(n, 0.f), s1(n, 0.f);
      DevBuf dp = dev(b.gpu, p), ds0 = dev(b.gpu, s0), ds1 = dev(b.gpu, s1);
      for (long t = 1; t <= 3; ++t) {
        Vec g = random_vec(n, 20 + t);
        DevBuf dg = dev(b.gpu, g);
        const bool uses_s0 = kind != K::Sgd || mom > 0;
        float* c0 = uses_s0 ? s0.data() : nullptr;
        float* c1 = kind == K::Adam ? s1.data() : nullptr;
        b.cpu.optimizer_update(a, t, 2000, p.data(), g.data(), c0, c1);
        b.gpu.optimizer_update(a, t, 2000, dp.f(), dg.f(), uses_s0 ? ds0.f() : nullptr,
                               c1 ? ds1.f() : nullptr);
        b.cpu.optimizer_update_rows(a, t, 4, rows.data(), width, p.data() + 2048,
                                    g.data() + 2048, c0 ? c0 + 2048 : nullptr,
                                    c1 ? c1 + 2048 : nullptr);
        b.gpu.optimizer_update_rows(a, t, 4, rows.data(), width, dp.f() + 2048, dg.f() + 2048,
                                    uses_s0 ? ds0.f() + 2048 : nullptr,
                                    c1 ? ds1.f() + 2048 : nullptr);
      }
      EXPECT_TRUE(close(host(b.gpu, dp.f(), n), p, 1e-6,
                        fmt::format("optimizer {} momentum {}", int(kind), mom)));
    }
}

TEST(CudaBackend, OutOfMemoryNamesTheSize) {
  COPSE_REQUIRE_GPU();
  cuda::CudaBackend be;
  try {
    be.allocate(std::size_t(1) << 50);
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of device memory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(std::size_t(1) << 50)), std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------
// Fused programs: generated kernel, interpreter and CPU on the same data.

TEST(CudaBackend, FusedProgramsOfEveryCellMatchInterpreterAndCpu) {
  COPSE_REQUIRE_GPU();
  Pair b;
  const int rows = 45;
  for (const std::string& name : models::cell_names()) {
    vertex::ExecPlan plan = vertex::compile(models::make_cell(name, 24, 20), {});
    for (const auto& reg : plan.regions)
      for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd}) {
        if (p->code.empty()) continue;
        std::vector<int> in_w(p->num_inputs, 0), out_w(p->num_outputs, 0);
        for (const auto& r : p->regs) {
          if (r.kind == ops::RegKind::Input) in_w[r.ext] = std::max(in_w[r.ext], r.width);
          if (r.kind == ops::RegKind::Output) out_w[r.ext] = std::max(out_w[r.ext], r.width);
        }
        std::vector<Vec> ins, outs;
        std::uint32_t seed = 100;
        for (int w : in_w) ins.push_back(random_vec(std::size_t(rows) * w, seed++, -2.f, 2.f));
        for (int w : out_w) outs.push_back(random_vec(std::size_t(rows) * w, seed++));
        // CPU reference.
        std::vector<Vec> ref = outs;
        std::vector<ops::RowView<const float>> vin;
        std::vector<ops::RowView<float>> vout;
        for (int i = 0; i < p->num_inputs; ++i) vin.push_back({ins[i].data(), in_w[i]});
        for (int o = 0; o < p->num_outputs; ++o) vout.push_back({ref[o].data(), out_w[o]});
        b.cpu.run_fused(*p, rows, vin.data(), vout.data());
        // Mode 2: a fresh backend without generated kernels, whose first
        // launch of the interpreter comes right after the program's upload
        // (issue 18 item 3: the upload must be ordered before it).
        for (int mode = 0; mode < 3; ++mode) {
          std::unique_ptr<cuda::CudaBackend> fresh;
          if (mode == 2) {
            cuda::CudaOptions co;
            co.generated_kernels = false;
            fresh = std::make_unique<cuda::CudaBackend>(co);
          }
          cuda::CudaBackend& be = fresh ? *fresh : b.gpu;
          std::vector<std::unique_ptr<DevBuf>> din, dout;
          std::vector<ops::RowView<const float>> gin;
          std::vector<ops::RowView<float>> gout;
          for (int i = 0; i < p->num_inputs; ++i) {
            din.push_back(std::make_unique<DevBuf>(be, ins[i].data(), ins[i].size() * 4));
            gin.push_back({din.back()->f(), in_w[i]});
          }
          for (int o = 0; o < p->num_outputs; ++o) {
            dout.push_back(std::make_unique<DevBuf>(be, outs[o].data(), outs[o].size() * 4));
            gout.push_back({dout.back()->f(), out_w[o]});
          }
          if (mode == 1)
            be.run_fused_interpreted(*p, rows, gin.data(), gout.data());
          else
            be.run_fused(*p, rows, gin.data(), gout.data());
          for (int o = 0; o < p->num_outputs; ++o)
            EXPECT_TRUE(close(host(be, dout[o]->f(), ref[o].size()), ref[o], 1e-5,
                              fmt::format("{} {} output {} ({})", name, p->name, o,
                                          mode == 0   ? "generated"
                                          : mode == 1 ? "interpreter"
                                                      : "interpreter, first launch")));
          if (fresh) {
            EXPECT_EQ(fresh->stats().fused_interpreted, 1);
          }
        }
      }
  }
  EXPECT_GT(b.gpu.stats().fused_generated, 0) << "no generated kernel ran (NVRTC failed?)";
}

// ---------------------------------------------------------------------------
// Whole cells: forward outputs and every gradient, CUDA vs CPU.

TEST(CudaBackend, EveryCellForwardAndGradientsMatchCpu) {
  COPSE_REQUIRE_GPU();
  const int vocab = 50, embed = 24, hidden = 20;
  for (const std::string& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const auto fn = models::make_cell(name, embed, hidden);
    const auto graphs = graphs_for(name, vocab);
    ops::CpuBackend<float> cpu(1);
    cuda::CudaBackend gpu;
    CellRun ref = run_cell(cpu, fn, graphs, vocab, embed);
    CellRun got = run_cell(gpu, fn, graphs, vocab, embed);
    EXPECT_TRUE(close(got.h, ref.h, 1e-5, name + " output h"));
    EXPECT_TRUE(close(got.grads, ref.grads, 1e-5, name + " gradients"));
    EXPECT_EQ(got.uploads, 1) << "the batch's index arrays go up in one copy";
    EXPECT_EQ(ref.uploads, 0) << "the CPU backend reads them in place";
  }
}

TEST(CudaBackend, SentimentTrainingStepsMatchCpu) {
  COPSE_REQUIRE_GPU();
  ops::CpuBackend<float> cpu(1);
  cuda::CudaBackend gpu;
  std::vector<double> lc, lg;
  const Vec pc = celltest::sentiment_training_steps(cpu, &lc);
  const Vec pg = celltest::sentiment_training_steps(gpu, &lg);
  ASSERT_EQ(lg.size(), lc.size());
  for (size_t i = 0; i < lc.size(); ++i) EXPECT_NEAR(lg[i], lc[i], 1e-5 * std::fabs(lc[i]));
  EXPECT_TRUE(close(pg, pc, 1e-5, "parameters after 3 SGD steps"));
}

#endif  // COPSE_WITH_CUDA

}  // namespace
}  // namespace copse
