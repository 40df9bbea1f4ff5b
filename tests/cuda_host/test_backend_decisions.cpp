// What CudaBackend decides, checked on the host: its own code (cuda/cuda_backend.cpp)
// on the emulated device (cuda/host_emu/emu_device.h), whose trace shows
// every call the backend makes, and whose streams run their work only when
// waited for (so an order the backend forgets gives wrong values). Values
// are compared with the CPU backend; the plans of cuda/launch_plans.h are
// checked directly. Also: every resource is freed on every failure path.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "cuda/host_emu/emu_device.h"
#include "cuda/launch_plans.h"
#include "ops/cpu_backend.h"
#include "tests/cuda_host/emu_test_util.h"
#include "tests/random_fused_program.h"

namespace copse {
namespace {

using emutest::close;
using emutest::random_vec;
using emutest::Vec;
namespace emu = cuda::emu;

// A backend on a traced emulated device, and that device.
struct Traced {
  emu::EmuDevice* dev = nullptr;
  std::unique_ptr<cuda::CudaBackend> be;
  std::vector<std::pair<void*, std::size_t>> owned;
  explicit Traced(cuda::CudaOptions opts = {}) {
    emu::EmuDeviceOptions o;
    o.trace = true;
    auto d = std::make_unique<emu::EmuDevice>(o);
    dev = d.get();
    be = std::make_unique<cuda::CudaBackend>(std::move(d), opts);
    dev->clear_trace();
  }
  ~Traced() {
    for (auto& [p, bytes] : owned) be->deallocate(p, bytes);
  }
  Traced(const Traced&) = delete;
  Traced& operator=(const Traced&) = delete;
  // Trace lines that start with `prefix`.
  long count(const std::string& prefix) const {
    return std::count_if(dev->trace().begin(), dev->trace().end(),
                         [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
  }
  float* up(const Vec& v) {
    auto* p = static_cast<float*>(be->allocate(sizeof(float) * v.size()));
    owned.emplace_back(p, sizeof(float) * v.size());
    be->upload(p, v.data(), sizeof(float) * v.size());
    return p;
  }
  int* up(const std::vector<int>& v) {
    auto* p = static_cast<int*>(be->allocate(sizeof(int) * v.size()));
    owned.emplace_back(p, sizeof(int) * v.size());
    be->upload(p, v.data(), sizeof(int) * v.size());
    return p;
  }
  Vec down(const float* p, std::size_t n) {
    Vec v(n);
    be->download(v.data(), p, sizeof(float) * n);
    return v;
  }
};

// The widths of a program's inputs and outputs.
struct IoWidths {
  std::vector<int> in, out;
  explicit IoWidths(const ops::FusedProgram& p) : in(p.num_inputs), out(p.num_outputs) {
    for (const auto& r : p.regs) {
      if (r.kind == ops::RegKind::Input) in[r.ext] = r.width;
      if (r.kind == ops::RegKind::Output) out[r.ext] = r.width;
    }
  }
};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// ---- launch plans ----

TEST(BackendPlans, RowJobsPackEightNonEmptyJobsToALaunchInOrder) {
  std::vector<ops::RowJob<float>> jobs(19);
  for (int k = 0; k < 19; ++k) jobs[k] = {k == 3 || k == 11 ? 0 : k + 1, 4, nullptr, 4, nullptr, nullptr, 4};
  jobs[7].width = 0;  // empty too
  const auto launches = cuda::row_job_launches(jobs.data(), 19);
  ASSERT_EQ(launches.size(), 2u);  // 16 non-empty jobs
  EXPECT_EQ(launches[0].count, 8);
  EXPECT_EQ(launches[1].count, 8);
  std::vector<int> ns;
  for (const auto& l : launches) {
    int max_rows = 0;
    for (int j = 0; j < l.count; ++j) {
      ns.push_back(l.job[j].n);
      max_rows = std::max(max_rows, l.job[j].n);
    }
    EXPECT_EQ(l.max_rows, max_rows);
  }
  std::vector<int> want;
  for (int k = 0; k < 19; ++k)
    if (k != 3 && k != 11 && k != 7) want.push_back(k + 1);
  EXPECT_EQ(ns, want);
  EXPECT_TRUE(cuda::row_job_launches(jobs.data(), 0).empty());
}

TEST(BackendPlans, ScratchAtLeastDoubles) {
  EXPECT_EQ(cuda::grown_capacity(10, 0), 10u);
  EXPECT_EQ(cuda::grown_capacity(11, 10), 20u);
  EXPECT_EQ(cuda::grown_capacity(50, 10), 50u);
}

// ---- the backend's calls, traced ----

TEST(BackendDecisions, ConstructionMakesTwoStreamsAndNoHostWait) {
  emu::EmuDeviceOptions o;
  o.trace = true;
  auto d = std::make_unique<emu::EmuDevice>(o);
  emu::EmuDevice* dev = d.get();
  cuda::CudaBackend be(std::move(d), {});
  EXPECT_FALSE(be.host_accessible());
  const std::string t = joined(dev->trace());
  EXPECT_EQ(dev->live().at("stream"), 2) << t;
  EXPECT_EQ(dev->live().at("event"), 3) << t;  // two staging buffers' copies, one compute mark
  EXPECT_EQ(t.find("sync"), std::string::npos) << t;
}

// Row-major C = op(A) op(B) reaches cuBLAS as column-major C^T = op(B)^T op(A)^T.
TEST(BackendDecisions, GemmCallsCublasWithBFirstAndMNSwapped) {
  const int m = 7, n = 5, k = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Traced t;
      ops::CpuBackend<float> cpu(1);
      const long lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      Vec A = random_vec((ta ? k : m) * lda, 1), B = random_vec((tb ? n : k) * ldb, 2);
      Vec C = random_vec(m * ldc, 3), ref = C;
      float *dA = t.up(A), *dB = t.up(B), *dC = t.up(C);
      t.dev->clear_trace();
      t.be->gemm(ta, tb, m, n, k, 0.5f, dA, lda, dB, ldb, 0.25f, dC, ldc);
      const std::string want =
          fmt::format("sgemm {}{} {} {} {} s0", tb ? 'T' : 'N', ta ? 'T' : 'N', n, m, k);
      EXPECT_EQ(t.count(want), 1) << joined(t.dev->trace());
      cpu.gemm(ta, tb, m, n, k, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, ref.data(), ldc);
      EXPECT_TRUE(close(t.down(dC, C.size()), ref, 1e-6, "gemm"));
    }
  Traced t;
  Vec C = random_vec(6, 4);
  float* dC = t.up(C);
  t.dev->clear_trace();
  t.be->gemm(false, false, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 0.5f, dC, 3);
  EXPECT_EQ(t.count("launch scale_matrix"), 1) << joined(t.dev->trace());
  EXPECT_EQ(t.count("sgemm"), 0);
  for (float& x : C) x *= 0.5f;
  EXPECT_TRUE(close(t.down(dC, 6), C, 0, "gemm k=0"));
}

// A level's gathers: one launch per 8 jobs, the same rows as one gather each.
TEST(BackendDecisions, BatchedGathersAreOneLaunchPerEightJobs) {
  Traced t;
  const int rows = 40, width = 13, jobs_n = 11;
  Vec src = random_vec(rows * width, 5);
  float* dsrc = t.up(src);
  std::vector<ops::RowJob<float>> jobs;
  std::vector<Vec> refs;
  std::vector<float*> outs;
  for (int k = 0; k < jobs_n; ++k) {
    const int n = k == 4 ? 0 : 1 + (k * 7) % 17;
    std::vector<int> idx(std::max(n, 1));
    for (int i = 0; i < n; ++i) idx[i] = (i * 13 + k) % rows;
    Vec ref(static_cast<std::size_t>(std::max(n, 1)) * width, 0.f);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < width; ++c) ref[i * width + c] = src[idx[i] * width + c];
    float* out = t.up(Vec(ref.size(), 0.f));
    jobs.push_back({n, width, dsrc, width, t.up(idx), out, width});
    refs.push_back(ref);
    outs.push_back(out);
  }
  t.dev->clear_trace();
  t.be->gather_rows_batched(jobs.data(), jobs_n);
  EXPECT_EQ(t.count("launch gather_rows_batched s0"), 2) << joined(t.dev->trace());
  EXPECT_EQ(t.count("sync"), 0) << "queued, no host wait";
  for (int k = 0; k < jobs_n; ++k)
    EXPECT_TRUE(close(t.down(outs[k], refs[k].size()), refs[k], 0, fmt::format("job {}", k)));
}

// upload_async: through pinned buffers used in turn; the copy stream waits
// for the compute work queued before, the compute stream for the copy; the
// host waits only for the copy out of the buffer it is about to reuse.
TEST(BackendDecisions, AsyncUploadsAreStagedAndOrderedBothWays) {
  Traced t;
  const int n = 64;
  float* dst = t.up(Vec(n, 0.f));
  Vec a = random_vec(n, 6), b = random_vec(n, 7), c = random_vec(n, 8);
  // Queued before the upload, on the compute stream: it must run first.
  t.be->fill_rows(1, n, 9.f, dst, n);
  t.dev->clear_trace();
  t.be->upload_async(dst, a.data(), sizeof(float) * n);
  const std::vector<std::string> want = {"sync e0",          "pinned staging buffer 256",
                                         "record e2 s0",     "wait e2 s1",
                                         "h2d 256 s1",       "record e0 s1",
                                         "wait e0 s0"};
  EXPECT_EQ(t.dev->trace(), want);
  a.assign(n, 0.f);  // the host copy may change at once: it was staged
  Vec got = t.down(dst, n);
  EXPECT_TRUE(close(got, random_vec(n, 6), 0, "uploaded after the fill queued before it"));
  t.be->upload_async(dst, b.data(), sizeof(float) * n);
  t.be->upload_async(dst, c.data(), sizeof(float) * n);
  EXPECT_EQ(t.count("pinned staging buffer"), 2) << "two buffers, then reuse";
  EXPECT_EQ(t.count("sync s"), 1) << "only the download waited for a stream";
  EXPECT_TRUE(close(t.down(dst, n), c, 0, "the last upload"));
}

// Reductions and the loss: one host wait each, for their result.
TEST(BackendDecisions, ReductionsAndTheLossWaitOnce) {
  Traced t;
  ops::CpuBackend<float> cpu(1);
  const int rows = 37, classes = 5;
  Vec x = random_vec(1000, 9);
  float* dx = t.up(x);
  t.dev->clear_trace();
  const double ss = t.be->sum_squares(x.size(), dx);
  EXPECT_EQ(t.count("sync"), 1) << joined(t.dev->trace());
  EXPECT_NEAR(ss, cpu.sum_squares(x.size(), x.data()), 1e-9 * ss);

  Vec logits = random_vec(rows * classes, 10, -3.f, 3.f);
  std::vector<int> labels(rows);
  for (int r = 0; r < rows; ++r) labels[r] = r % 3 == 0 ? -1 : r % classes;
  float* dl = t.up(logits);
  int* dlab = t.up(labels);
  float* dd = t.up(Vec(rows * classes, 0.f));
  Vec ref_d(rows * classes, 0.f);
  std::vector<int> pred(rows), ref_pred(rows);
  long correct = -1, ref_correct = -2;
  t.dev->clear_trace();
  const double loss = t.be->softmax_xent(rows, classes, dl, classes, dlab, 0.5f, dd, classes,
                                         &correct, pred.data());
  EXPECT_EQ(t.count("sync"), 1) << joined(t.dev->trace());
  const double ref = cpu.softmax_xent(rows, classes, logits.data(), classes, labels.data(), 0.5f,
                                      ref_d.data(), classes, &ref_correct, ref_pred.data());
  EXPECT_NEAR(loss, ref, 1e-6 * std::fabs(ref));
  EXPECT_EQ(correct, ref_correct);
  EXPECT_EQ(pred, ref_pred);
  EXPECT_TRUE(close(t.down(dd, ref_d.size()), ref_d, 1e-6, "dlogits"));
}

// A bad label: the backend throws the CPU backend's error, naming the lowest
// bad row, and writes neither the caller's predictions nor dlogits.
TEST(BackendDecisions, BadLabelIsTheCpuErrorAndWritesNothing) {
  Traced t;
  ops::CpuBackend<float> cpu(1);
  const int rows = 70, classes = 4;
  Vec logits = random_vec(rows * classes, 11, -2.f, 2.f);
  std::vector<int> labels(rows);
  for (int r = 0; r < rows; ++r) labels[r] = r % classes;
  for (int r : {66, 41, 52}) labels[r] = classes + r % 3;  // the lowest is 41
  float* dl = t.up(logits);
  int* dlab = t.up(labels);
  const Vec sentinel(rows * classes, 7.f);
  float* dd = t.up(sentinel);
  std::vector<int> pred(rows, -7), ref_pred(rows, -7);
  Vec ref_d = sentinel;
  long correct = -5;
  std::string got, want;
  try {
    t.be->softmax_xent(rows, classes, dl, classes, dlab, 1.f, dd, classes, &correct, pred.data());
  } catch (const Error& e) {
    got = e.what();
  }
  try {
    cpu.softmax_xent(rows, classes, logits.data(), classes, labels.data(), 1.f, ref_d.data(),
                     classes, nullptr, ref_pred.data());
  } catch (const Error& e) {
    want = e.what();
  }
  EXPECT_FALSE(want.empty());
  EXPECT_NE(want.find("row 41"), std::string::npos) << want;
  EXPECT_EQ(got, want);
  EXPECT_EQ(pred, std::vector<int>(rows, -7)) << "predictions written";
  EXPECT_EQ(correct, -5);
  EXPECT_TRUE(t.down(dd, sentinel.size()) == sentinel) << "dlogits written";
}

// Row lists of the store's listed-row calls go up through the staging
// buffers, into a scratch list that grows geometrically.
TEST(BackendDecisions, RowListScratchGrowsGeometrically) {
  Traced t;
  const int width = 3, table = 300;
  Vec base(table * width, 1.f);
  float* dbase = t.up(base);
  t.dev->clear_trace();
  for (int n = 1; n <= table; n += 7) {
    std::vector<int> rows(n);
    for (int i = 0; i < n; ++i) rows[i] = (i * 31) % table;
    t.be->fill_listed_rows(n, rows.data(), width, static_cast<float>(n), dbase);
  }
  const long allocs = t.count("alloc row list");
  EXPECT_GE(allocs, 1);
  EXPECT_LE(allocs, 9) << "300 rows asked in steps of 7: log2(300) + 1 reallocations at most";
  EXPECT_EQ(t.count("sync s"), 0) << "no host wait for a stream";
}

// Issue 18 item 3: the interpreter's program goes up on the compute stream,
// from a host copy that outlives the (deferred) copy, so the first launch,
// right after the cache entry is made, sees it.
TEST(BackendDecisions, InterpreterProgramUploadIsOrderedBeforeItsFirstLaunch) {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(seed);
    cuda::CudaOptions co;
    co.generated_kernels = false;
    Traced t(co);
    ops::CpuBackend<float> cpu(1);
    const ops::FusedProgram prog = ops::fusedtest::RandomProgram(seed).make();
    const IoWidths rp(prog);
    const int rows = 19;
    std::vector<Vec> in(prog.num_inputs), out_ref(prog.num_outputs);
    std::vector<ops::RowView<const float>> vin, cin;
    std::vector<ops::RowView<float>> vout, cout;
    std::vector<float*> dout;
    for (int i = 0; i < prog.num_inputs; ++i) {
      const int w = rp.in[i];
      in[i] = random_vec(static_cast<std::size_t>(rows) * w, 20 + i);
      vin.push_back({t.up(in[i]), w});
      cin.push_back({in[i].data(), w});
    }
    for (int o = 0; o < prog.num_outputs; ++o) {
      const int w = rp.out[o];
      out_ref[o] = random_vec(static_cast<std::size_t>(rows) * w, 40 + o);
      dout.push_back(t.up(out_ref[o]));
      vout.push_back({dout.back(), w});
      cout.push_back({out_ref[o].data(), w});
    }
    t.dev->clear_trace();
    t.be->run_fused_interpreted(prog, rows, vin.data(), vout.data());
    const auto& tr = t.dev->trace();
    const auto launch = std::find(tr.begin(), tr.end(), "launch run_interpreter s0");
    ASSERT_NE(launch, tr.end()) << joined(tr);
    EXPECT_EQ(std::count_if(tr.begin(), launch,
                            [](const std::string& l) {
                              return l.rfind("h2d", 0) == 0 && l.find(" s0") != std::string::npos;
                            }),
              2)
        << "registers and instructions, on the compute stream:\n"
        << joined(tr);
    cpu.run_fused(prog, rows, cin.data(), cout.data());
    for (int o = 0; o < prog.num_outputs; ++o)
      EXPECT_TRUE(close(t.down(dout[o], out_ref[o].size()), out_ref[o], 1e-6,
                        fmt::format("output {}", o)));
  }
}

// ---- resources on failure paths (issue 18 item 6) ----

// A backend whose construction fails at each of its resources in turn frees
// every one it had made.
TEST(BackendResources, HalfBuiltBackendFreesWhatItMade) {
  long total = 0;
  {
    emu::EmuDeviceOptions o;
    o.on_destroy = [&](const emu::EmuDevice& d) { total = d.made(); };
    cuda::CudaBackend be(std::make_unique<emu::EmuDevice>(o), {});
  }
  ASSERT_GE(total, 8);
  for (long k = 1; k <= total; ++k) {
    SCOPED_TRACE(k);
    emu::EmuDeviceOptions o;
    o.fail_at = k;
    long left = -1;
    std::string what;
    o.on_destroy = [&](const emu::EmuDevice& d) {
      left = d.live_count();
      for (const auto& kv : d.live()) what += fmt::format("{} {}, ", kv.second, kv.first);
    };
    EXPECT_THROW(cuda::CudaBackend(std::make_unique<emu::EmuDevice>(o), {}), Error);
    EXPECT_EQ(left, 0) << "left alive: " << what;
  }
}

// A fused-kernel cache entry whose making fails (a kernel the driver will
// not load) frees its device buffers; the backend works on.
TEST(BackendResources, FailedCacheEntryFreesItsBuffers) {
  Traced t;
  const ops::FusedProgram prog = ops::fusedtest::RandomProgram(3).make();
  const IoWidths rp(prog);
  const int rows = 5;
  std::vector<ops::RowView<const float>> vin;
  std::vector<ops::RowView<float>> vout;
  for (int i = 0; i < prog.num_inputs; ++i)
    vin.push_back({t.up(Vec(rows * rp.in[i], 0.5f)), rp.in[i]});
  for (int o = 0; o < prog.num_outputs; ++o)
    vout.push_back({t.up(Vec(rows * rp.out[o], 0.f)), rp.out[o]});
  for (long step = 1; step <= 3; ++step) {  // the registers, the code, the kernel
    SCOPED_TRACE(step);
    const long live = t.dev->live_count();
    t.dev->fail_at(t.dev->made() + step);
    EXPECT_THROW(t.be->run_fused(prog, rows, vin.data(), vout.data()), Error);
    EXPECT_EQ(t.dev->live_count(), live);
  }
  t.dev->fail_at(0);
  t.be->run_fused(prog, rows, vin.data(), vout.data());
  EXPECT_EQ(t.be->stats().fused_generated, 1);
}

}  // namespace
}  // namespace copse
