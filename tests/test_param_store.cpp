// ParamStore: layout, init, names, optimizers against naive scalar
// references, L2, clipping, sparse rows, gradient sync hook.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "memory/optimizer.h"
#include "memory/param_store.h"
#include "tests/host_test_backend.h"

namespace copse::memory {
namespace {

using test_support::HostTestBackend;

template <typename T>
T tolerance() {
  return std::is_same<T, float>::value ? T(3e-5) : T(1e-12);
}

template <typename T>
void expect_close(const T* got, const std::vector<T>& want, const std::string& what) {
  for (std::size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tolerance<T>() * (1 + std::abs(want[i])))
        << what << " [" << i << "]";
}

template <typename T>
std::string error_of(T&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no copse::Error thrown>";
}

template <typename T>
std::vector<T> random_vector(std::size_t n, std::mt19937& rng, double scale = 1.0) {
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(u(rng));
  return v;
}

// The textbook update rules, one element at a time, written independently of
// ops/optimizer_cpu.cpp.
template <typename T>
struct RefOptimizer {
  OptimizerConfig cfg;
  std::vector<T> p, s0, s1;
  long t = 0;

  RefOptimizer(const OptimizerConfig& c, std::vector<T> init)
      : cfg(c), p(std::move(init)), s0(p.size(), T(0)), s1(p.size(), T(0)) {}

  // Updates the elements with active[i] (all when active is empty).
  void step(std::vector<T> g, const std::vector<bool>& active = {}) {
    ++t;
    if (cfg.clip_norm > 0) {
      double sq = 0;
      for (std::size_t i = 0; i < g.size(); ++i)
        if (active.empty() || active[i]) sq += double(g[i]) * double(g[i]);
      double norm = std::sqrt(sq);
      if (norm > cfg.clip_norm)
        for (T& x : g) x = static_cast<T>(x * T(cfg.clip_norm / norm));
    }
    const T lr = cfg.lr, l2 = cfg.l2, eps = cfg.eps, mu = cfg.momentum;
    const T b1 = cfg.beta1, b2 = cfg.beta2;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (!active.empty() && !active[i]) continue;
      T gi = g[i] + l2 * p[i];
      switch (cfg.kind) {
        case OptimizerConfig::Sgd:
          s0[i] = mu * s0[i] + gi;
          p[i] = p[i] - lr * s0[i];
          break;
        case OptimizerConfig::Adagrad:
          s0[i] = s0[i] + gi * gi;
          p[i] = p[i] - lr * gi / (std::sqrt(s0[i]) + eps);
          break;
        case OptimizerConfig::Adam: {
          s0[i] = b1 * s0[i] + (1 - b1) * gi;
          s1[i] = b2 * s1[i] + (1 - b2) * gi * gi;
          T mhat = s0[i] / T(1 - std::pow(double(b1), double(t)));
          T vhat = s1[i] / T(1 - std::pow(double(b2), double(t)));
          p[i] = p[i] - lr * mhat / (std::sqrt(vhat) + eps);
          break;
        }
      }
    }
  }
};

OptimizerConfig make_config(OptimizerConfig::Kind kind, float l2, float clip) {
  OptimizerConfig c;
  c.kind = kind;
  c.lr = kind == OptimizerConfig::Sgd ? 0.1f : 0.01f;
  c.momentum = kind == OptimizerConfig::Sgd ? 0.9f : 0.f;
  c.l2 = l2;
  c.clip_norm = clip;
  return c;
}

template <typename T>
class ParamStoreTest : public ::testing::Test {};
using StoreTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ParamStoreTest, StoreTypes);

TYPED_TEST(ParamStoreTest, LayoutIsAlignedDenseFirstAndDisjoint) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  int emb = store.add({"emb", {10, 3}, Init::Uniform, 0.1f, true});
  int w = store.add({"w", {6, 9}});
  int b = store.add({"b", {6}, Init::Zeros});
  int s = store.add({"s", {}, Init::Normal, 1.f});
  store.finalize();
  EXPECT_EQ(store.size(), 4);
  EXPECT_EQ(store.numel(emb), 30u);
  EXPECT_EQ(store.numel(w), 54u);
  EXPECT_EQ(store.numel(s), 1u);
  EXPECT_EQ(store.offset(w), 0u);   // dense params first, in add order
  EXPECT_EQ(store.offset(b), 64u);  // 54 rounded up to 16
  EXPECT_EQ(store.offset(s), 80u);
  EXPECT_EQ(store.dense_elements(), 96u);
  EXPECT_EQ(store.offset(emb), 96u);  // sparse params after the dense region
  EXPECT_EQ(store.total_elements(), 128u);
  for (int i = 0; i < store.size(); ++i) {
    EXPECT_EQ(store.offset(i) % 16, 0u);
    EXPECT_EQ(store.param(i), store.params_flat() + store.offset(i));
    EXPECT_EQ(store.grad(i), store.grads_flat() + store.offset(i));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(store.param(i)) % 64, 0u);
    EXPECT_LE(store.offset(i) + store.numel(i), store.total_elements());
  }
  EXPECT_EQ(store.rows(emb), 10);
  EXPECT_EQ(store.row_width(emb), 3);
  // Params and grads start at zero, padding included.
  for (std::size_t i = 0; i < store.total_elements(); ++i) {
    ASSERT_EQ(store.params_flat()[i], T(0));
    ASSERT_EQ(store.grads_flat()[i], T(0));
  }
  EXPECT_EQ(backend.live_allocations(), 2u);  // one params buffer, one grads buffer
}

TYPED_TEST(ParamStoreTest, NamesAndErrors) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  store.add({"encoder/weight", {4, 4}});
  store.add({"encoder/bias", {4}, Init::Zeros});
  EXPECT_EQ(store.find("encoder/bias"), 1);
  EXPECT_EQ(store.find("nope"), -1);
  EXPECT_EQ(store.id("encoder/weight"), 0);

  std::string dup = error_of([&] { store.add({"encoder/bias", {3}}); });
  EXPECT_NE(dup.find("duplicate"), std::string::npos) << dup;
  EXPECT_NE(dup.find("encoder/bias"), std::string::npos) << dup;

  std::string unknown = error_of([&] { store.id("encoder/wieght"); });
  EXPECT_NE(unknown.find("unknown parameter 'encoder/wieght'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("did you mean 'encoder/weight'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("encoder/bias"), std::string::npos) << unknown;  // known names listed

  EXPECT_THROW(store.add({"bad", {3, 0}}), Error);
  EXPECT_THROW(store.add({"u", {3}, Init::Uniform}), Error);  // scale 0
  EXPECT_THROW(store.init(1), Error);                         // before finalize
  store.finalize();
  EXPECT_THROW(store.add({"late", {3}}), Error);
  EXPECT_THROW(store.step(), Error);  // no optimizer
  EXPECT_THROW(store.param(7), Error);
  std::string dense_touch = error_of([&] {
    int r = 0;
    store.touch_rows(0, &r, 1);
  });
  EXPECT_NE(dense_touch.find("not a sparse_rows"), std::string::npos) << dense_touch;

  std::string size = error_of([&] { store.set_host(1, std::vector<float>(5)); });
  EXPECT_NE(size.find("4 elements, got 5"), std::string::npos) << size;
}

TYPED_TEST(ParamStoreTest, InitIsDeterministicAndPerParameter) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  auto build = [&](bool extra, std::uint64_t seed) {
    auto store = std::make_unique<ParamStore<T>>(backend);
    if (extra) store->add({"extra", {7, 5}});
    store->add({"w", {20, 30}});
    store->add({"n", {4000}, Init::Normal, 0.5f});
    store->add({"u", {100}, Init::Uniform, 0.25f});
    store->add({"z", {9}, Init::Zeros});
    store->finalize();
    store->init(seed);
    return store;
  };
  auto a = build(false, 42), b = build(false, 42), c = build(true, 42), d = build(false, 43);
  for (const char* name : {"w", "n", "u", "z"}) {
    EXPECT_EQ(a->get_host(a->id(name)), b->get_host(b->id(name))) << name;
    EXPECT_EQ(a->get_host(a->id(name)), c->get_host(c->id(name)))
        << name << " changed by another param";
  }
  EXPECT_NE(a->get_host(a->id("w")), d->get_host(d->id("w")));
  EXPECT_NE(a->get_host(a->id("w")), a->get_host(a->id("n")));

  const double bound = std::sqrt(6.0 / (30 + 20));  // Xavier, [out=20, in=30]
  double max_abs = 0;
  for (float x : a->get_host(a->id("w"))) max_abs = std::max(max_abs, double(std::abs(x)));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.9 * bound);

  double sum = 0, sq = 0;
  std::vector<float> n = a->get_host(a->id("n"));
  for (float x : n) sum += x, sq += double(x) * x;
  const double mean = sum / n.size(), sd = std::sqrt(sq / n.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(sd, 0.5, 0.05);
  for (float x : a->get_host(a->id("u"))) EXPECT_LE(std::abs(x), 0.25f);
  for (float x : a->get_host(a->id("z"))) EXPECT_EQ(x, 0.f);
}

TYPED_TEST(ParamStoreTest, HostRoundTrip) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  int w = store.add({"w", {2, 3}});
  store.finalize();
  std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f, -0.125f};
  store.set_host(w, v);
  EXPECT_EQ(store.get_host(w), v);
  EXPECT_EQ(store.param(w)[2], T(3.25));
}

// Dense params: each optimizer, with and without L2, over several steps.
TYPED_TEST(ParamStoreTest, DenseOptimizersMatchScalarReference) {
  using T = TypeParam;
  for (auto kind : {OptimizerConfig::Sgd, OptimizerConfig::Adagrad, OptimizerConfig::Adam}) {
    for (float l2 : {0.f, 0.05f}) {
      SCOPED_TRACE(std::string(optimizer_kind_name(kind)) + " l2=" + std::to_string(l2));
      HostTestBackend<T> backend;
      ParamStore<T> store(backend);
      int w = store.add({"w", {5, 7}});
      int b = store.add({"b", {3}, Init::Uniform, 0.5f});
      int big = store.add({"big", {317, 331}});
      store.finalize();
      store.init(7);
      OptimizerConfig cfg = make_config(kind, l2, 0.f);
      store.set_optimizer(cfg);
      std::vector<T> w0(store.param(w), store.param(w) + 35),
          b0(store.param(b), store.param(b) + 3);
      RefOptimizer<T> ref_w(cfg, w0), ref_b(cfg, b0);
      // Large enough for the multi-threaded path of the kernels.
      const std::size_t n_big = store.numel(big);
      RefOptimizer<T> ref_big(cfg, std::vector<T>(store.param(big), store.param(big) + n_big));
      std::mt19937 rng(3);
      for (int s = 0; s < 6; ++s) {
        store.zero_grads();
        std::vector<T> gw = random_vector<T>(35, rng), gb = random_vector<T>(3, rng);
        std::copy(gw.begin(), gw.end(), store.grad(w));
        std::copy(gb.begin(), gb.end(), store.grad(b));
        std::vector<T> gbig = random_vector<T>(n_big, rng);
        std::copy(gbig.begin(), gbig.end(), store.grad(big));
        store.step();
        ref_w.step(gw);
        ref_b.step(gb);
        ref_big.step(gbig);
        expect_close(store.param(big), ref_big.p, "big step " + std::to_string(s));
        expect_close(store.param(w), ref_w.p, "w step " + std::to_string(s));
        expect_close(store.param(b), ref_b.p, "b step " + std::to_string(s));
      }
      EXPECT_EQ(store.step_count(), 6);
      // Padding stays zero (it would not if the update ran off the ends).
      for (std::size_t i = 35; i < store.offset(b); ++i) ASSERT_EQ(store.params_flat()[i], T(0));
    }
  }
}

TYPED_TEST(ParamStoreTest, ClippingUsesGlobalNorm) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  int a = store.add({"a", {4, 4}});
  int e = store.add({"e", {6, 2}, Init::Uniform, 1.f, true});
  store.finalize();
  store.init(1);
  OptimizerConfig cfg;  // plain SGD, lr 1: p_new = p - clipped g
  cfg.lr = 1.f;
  cfg.clip_norm = 0.5f;
  store.set_optimizer(cfg);

  std::mt19937 rng(11);
  std::vector<T> ga = random_vector<T>(16, rng), ge = random_vector<T>(12, rng);
  std::copy(ga.begin(), ga.end(), store.grad(a));
  std::copy(ge.begin(), ge.end(), store.grad(e));
  const int rows[] = {4, 1, 4};  // rows 1 and 4 of "e" count; others do not
  store.touch_rows(e, rows, 3);
  double sq = 0;
  for (T x : ga) sq += double(x) * x;
  for (int r : {1, 4})
    for (int c = 0; c < 2; ++c) sq += double(ge[r * 2 + c]) * ge[r * 2 + c];
  const double norm = std::sqrt(sq);
  ASSERT_GT(norm, 0.5);
  EXPECT_NEAR(store.grad_norm(), norm, 1e-6 * norm);

  std::vector<T> pa(store.param(a), store.param(a) + 16), pe(store.param(e), store.param(e) + 12);
  store.step();
  const T k = T(0.5 / norm);
  std::vector<T> want_a(16), want_e = pe;
  for (int i = 0; i < 16; ++i) want_a[i] = pa[i] - ga[i] * k;
  for (int r : {1, 4})
    for (int c = 0; c < 2; ++c) want_e[r * 2 + c] = pe[r * 2 + c] - ge[r * 2 + c] * k;
  expect_close(store.param(a), want_a, "a");
  expect_close(store.param(e), want_e, "e");

  // Below the threshold nothing is scaled.
  store.zero_grads();
  store.grad(a)[0] = T(0.25);
  store.step();
  EXPECT_NEAR(store.param(a)[0], want_a[0] - T(0.25), tolerance<T>());
}

// A sparse_rows table against the same table stored dense: untouched rows
// stay bit-exact, touched rows follow the dense update.
TYPED_TEST(ParamStoreTest, SparseRowsMatchDenseUpdateOfTouchedRows) {
  using T = TypeParam;
  const int n_rows = 12, width = 5;
  for (auto kind : {OptimizerConfig::Sgd, OptimizerConfig::Adagrad, OptimizerConfig::Adam}) {
    SCOPED_TRACE(optimizer_kind_name(kind));
    HostTestBackend<T> backend;
    ParamStore<T> sparse(backend), dense(backend);
    int hs = sparse.add({"h", {3, 3}});
    int es = sparse.add({"emb", {n_rows, width}, Init::Uniform, 0.3f, true});
    int hd = dense.add({"h", {3, 3}});
    int ed = dense.add({"emb", {n_rows, width}, Init::Uniform, 0.3f, false});
    sparse.finalize();
    dense.finalize();
    sparse.init(5);
    dense.init(5);
    // L2 moves every dense row; clipping is active (the norm is ~2-3).
    OptimizerConfig cfg = make_config(kind, 0.02f, 1.0f);
    sparse.set_optimizer(cfg);
    dense.set_optimizer(cfg);
    const std::vector<T> init(sparse.param(es), sparse.param(es) + n_rows * width);
    ASSERT_EQ(init, std::vector<T>(dense.param(ed), dense.param(ed) + n_rows * width));

    const std::vector<int> touched = {7, 2, 9, 2, 7};  // duplicates on purpose
    std::mt19937 rng(9);
    for (int s = 0; s < 4; ++s) {
      sparse.zero_grads();
      dense.zero_grads();
      std::vector<T> gh = random_vector<T>(9, rng);
      std::copy(gh.begin(), gh.end(), sparse.grad(hs));
      std::copy(gh.begin(), gh.end(), dense.grad(hd));
      for (int r : {2, 7, 9}) {
        std::vector<T> g = random_vector<T>(width, rng);
        std::copy(g.begin(), g.end(), sparse.grad(es) + r * width);
        std::copy(g.begin(), g.end(), dense.grad(ed) + r * width);
      }
      sparse.touch_rows(es, touched.data(), 2);
      sparse.touch_rows(es, touched.data() + 2, 3);
      EXPECT_EQ(sparse.touched_rows(es), (std::vector<int>{2, 7, 9}));
      EXPECT_NEAR(sparse.grad_norm(), dense.grad_norm(), 1e-9);
      sparse.step();
      dense.step();
      EXPECT_TRUE(sparse.touched_rows(es).empty());
    }
    for (int r = 0; r < n_rows; ++r) {
      const T* got = sparse.param(es) + r * width;
      if (r == 2 || r == 7 || r == 9) {
        std::vector<T> want(dense.param(ed) + r * width, dense.param(ed) + (r + 1) * width);
        expect_close(got, want, "touched row " + std::to_string(r));
      } else {
        EXPECT_EQ(std::memcmp(got, init.data() + r * width, width * sizeof(T)), 0) << "row " << r;
        // The dense table's L2 did move this row: the test can tell them apart.
        EXPECT_NE(dense.param(ed)[r * width], init[r * width]);
      }
    }
    expect_close(sparse.param(hs), std::vector<T>(dense.param(hd), dense.param(hd) + 9), "h");
  }
}

TYPED_TEST(ParamStoreTest, ZeroGradsClearsTouchedRowsOnly) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  int w = store.add({"w", {3, 3}});
  int e = store.add({"emb", {8, 4}, Init::Uniform, 0.1f, true});
  store.finalize();
  OptimizerConfig cfg;
  store.set_optimizer(cfg);
  for (int i = 0; i < 9; ++i) store.grad(w)[i] = T(1);
  for (int c = 0; c < 4; ++c) {
    store.grad(e)[1 * 4 + c] = T(2);
    store.grad(e)[6 * 4 + c] = T(3);
  }
  const int rows[] = {1, 6};
  store.touch_rows(e, rows, 2);
  store.step();  // rows are still zeroed by the zero_grads after the step
  const int late[] = {3};
  store.grad(e)[3 * 4] = T(4);
  store.touch_rows(e, late, 1);
  // A row nobody touched: zero_grads must leave it alone (no full memset).
  store.grad(e)[5 * 4 + 2] = T(9);
  store.zero_grads();
  for (int i = 0; i < 9; ++i) EXPECT_EQ(store.grad(w)[i], T(0));
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_EQ(store.grad(e)[r * 4 + c], r == 5 && c == 2 ? T(9) : T(0)) << r << "," << c;
  const int bad[] = {8};
  EXPECT_THROW(store.touch_rows(e, bad, 1), Error);
}

// The hook runs first in step(): here it doubles every gradient, as a sum
// over two identical workers would.
template <typename T>
class DoublingSync : public GradSync<T> {
 public:
  void sync(ParamStore<T>& store) override {
    ++calls;
    for (std::size_t i = 0; i < store.dense_elements(); ++i) store.grads_flat()[i] *= 2;
    for (int id = 0; id < store.size(); ++id) {
      if (!store.spec(id).sparse_rows) continue;
      for (int r : store.touched_rows(id))
        for (int c = 0; c < store.row_width(id); ++c)
          store.grad(id)[r * store.row_width(id) + c] *= 2;
    }
  }
  int calls = 0;
};

TYPED_TEST(ParamStoreTest, GradSyncRunsBeforeTheUpdate) {
  using T = TypeParam;
  HostTestBackend<T> backend;
  ParamStore<T> store(backend);
  int w = store.add({"w", {2, 2}, Init::Zeros});
  int e = store.add({"e", {3, 2}, Init::Zeros, 0.f, true});
  store.finalize();
  OptimizerConfig cfg;
  cfg.lr = 1.f;
  store.set_optimizer(cfg);
  DoublingSync<T> sync;
  store.set_grad_sync(&sync);
  store.grad(w)[3] = T(1.5);
  store.grad(e)[2] = T(0.5);
  const int row = 1;
  store.touch_rows(e, &row, 1);
  store.step();
  EXPECT_EQ(sync.calls, 1);
  EXPECT_EQ(store.param(w)[3], T(-3));
  EXPECT_EQ(store.param(e)[2], T(-1));
}

TEST(OptimizerConfig, ParseAndValidate) {
  EXPECT_EQ(parse_optimizer_kind("sgd"), OptimizerConfig::Sgd);
  EXPECT_EQ(parse_optimizer_kind("Adagrad"), OptimizerConfig::Adagrad);
  EXPECT_EQ(parse_optimizer_kind("ADAM"), OptimizerConfig::Adam);
  std::string msg = error_of([] { parse_optimizer_kind("rmsprop"); });
  EXPECT_NE(msg.find("'rmsprop'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("sgd, adagrad, adam"), std::string::npos) << msg;
  OptimizerConfig c;
  c.validate();
  c.beta2 = 1.f;
  EXPECT_THROW(c.validate(), Error);
  c = OptimizerConfig{};
  c.lr = 0;
  EXPECT_THROW(c.validate(), Error);
}

}  // namespace
}  // namespace copse::memory
