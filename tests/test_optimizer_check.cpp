// The non-finite check of an optimizer update (ops/optimizer_cpu.h,
// ParamStore::prepare_step): its verdict is exactly "the update would write
// an inf or NaN", element by element, for every rule, dense and listed rows,
// float and double; it writes nothing; a discarded step leaves parameters,
// state and counters as they were, and the store names the parameter.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "memory/optimizer.h"
#include "memory/param_store.h"
#include "ops/optimizer_cpu.h"
#include "tests/host_test_backend.h"

namespace copse {
namespace {

using memory::OptimizerConfig;

std::vector<OptimizerConfig> configs() {
  std::vector<OptimizerConfig> out;
  for (auto kind : {OptimizerConfig::Sgd, OptimizerConfig::Adagrad, OptimizerConfig::Adam})
    for (float momentum : {0.f, 0.9f}) {
      if (kind != OptimizerConfig::Sgd && momentum > 0.f) continue;
      OptimizerConfig c;
      c.kind = kind;
      c.momentum = momentum;
      c.lr = 3.f;
      c.l2 = 1e-3f;
      out.push_back(c);
    }
  return out;
}

// Values around the float overflow threshold: some updates overflow, most do not.
template <typename T>
std::vector<T> edgy(std::size_t n, std::mt19937& rng, bool state) {
  std::uniform_real_distribution<double> e(-3.0, 38.5), sign(-1, 1);
  std::uniform_int_distribution<int> pick(0, 9);
  std::vector<T> v(n);
  for (T& x : v) {
    double mag = std::pow(10.0, e(rng));
    if (std::is_same_v<T, double>) mag = std::pow(mag, 8.0);  // past double's range too
    x = static_cast<T>(state ? std::abs(mag) : (sign(rng) < 0 ? -mag : mag));
    if (pick(rng) < 6) x = static_cast<T>(state ? 0.5 : sign(rng));  // ordinary values
  }
  return v;
}

template <typename T>
bool finite(T x) {
  return std::isfinite(x);
}

template <typename T>
void check_rule(const OptimizerConfig& c, std::mt19937& rng) {
  const int width = 7, rows_total = 40;
  const std::size_t n = static_cast<std::size_t>(width) * rows_total;
  const bool s0_used = c.kind != OptimizerConfig::Sgd || c.momentum > 0.f;
  const bool s1_used = c.kind == OptimizerConfig::Adam;
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<T> p = edgy<T>(n, rng, false), g = edgy<T>(n, rng, false);
    std::vector<T> s0 = edgy<T>(n, rng, true), s1 = edgy<T>(n, rng, true);
    if (trial % 3 == 0) {  // all finite updates too
      for (std::size_t i = 0; i < n; ++i) p[i] = T(0.5), g[i] = T(-0.25), s0[i] = s1[i] = T(1);
    }
    const long t = 1 + trial % 4;
    // Dense: the reference is the update itself, then a scan for inf/NaN.
    std::vector<T> up = p, u0 = s0, u1 = s1;
    const std::vector<T> p_before = p, s0_before = s0, s1_before = s1;
    long want = -1;
    ops::optimizer_update_host<T>(c, t, n, up.data(), g.data(), u0.data(), u1.data());
    for (std::size_t i = 0; i < n && want < 0; ++i)
      if (!finite(up[i]) || (s0_used && !finite(u0[i])) || (s1_used && !finite(u1[i])))
        want = static_cast<long>(i);
    EXPECT_EQ(ops::optimizer_check_host<T>(c, t, n, p.data(), g.data(), s0.data(), s1.data()), want)
        << "kind " << c.kind << " trial " << trial;
    EXPECT_TRUE(p == p_before && s0 == s0_before && s1 == s1_before) << "the check wrote";
    // Rows: an unordered subset.
    std::vector<int> rows;
    for (int r = rows_total - 1; r >= 0; r -= 1 + trial % 3) rows.push_back(r);
    std::vector<T> rp = p, r0 = s0, r1 = s1;
    ops::optimizer_update_rows_host<T>(c, t, static_cast<int>(rows.size()), rows.data(), width,
                                       rp.data(), g.data(), r0.data(), r1.data());
    long want_rows = -1;
    for (std::size_t i = 0; i < n && want_rows < 0; ++i)
      if (!finite(rp[i]) || (s0_used && !finite(r0[i])) || (s1_used && !finite(r1[i])))
        want_rows = static_cast<long>(i);
    EXPECT_EQ(ops::optimizer_check_rows_host<T>(c, t, static_cast<int>(rows.size()), rows.data(),
                                                width, p.data(), g.data(), s0.data(), s1.data()),
              want_rows)
        << "kind " << c.kind << " trial " << trial << " (rows)";
  }
}

TEST(OptimizerCheck, VerdictIsExactlyWhetherTheUpdateWritesANonFiniteValue) {
  std::mt19937 rng(11);
  for (const auto& c : configs()) {
    check_rule<float>(c, rng);
    check_rule<double>(c, rng);
  }
}

// A large dense buffer goes through the threaded path (blocks per thread):
// the first bad element is found whichever thread's block holds it.
TEST(OptimizerCheck, FindsTheFirstBadElementOfALargeBuffer) {
  const std::size_t n = 1 << 18;
  OptimizerConfig c;
  c.kind = OptimizerConfig::Adam;
  std::vector<float> p(n, 0.5f), g(n, 0.1f), m(n, 0.f), v(n, 0.f);
  EXPECT_EQ(ops::optimizer_check_host<float>(c, 1, n, p.data(), g.data(), m.data(), v.data()), -1);
  for (std::size_t at : {n - 1, n / 2 + 3, std::size_t(5)}) {
    g[at] = 3e38f;  // v overflows
    EXPECT_EQ(ops::optimizer_check_host<float>(c, 1, n, p.data(), g.data(), m.data(), v.data()),
              static_cast<long>(at));
  }
  p[2] = std::numeric_limits<float>::quiet_NaN();  // a NaN parameter stays NaN
  EXPECT_EQ(ops::optimizer_check_host<float>(c, 1, n, p.data(), g.data(), m.data(), v.data()), 2);
}

// The store: a discarded step changes nothing, counts nothing, and the next
// steps equal those of a store that never saw the bad gradient.
TEST(OptimizerCheck, DiscardedStepIsAsIfTheBatchWasNeverSeen) {
  for (const auto& c : configs()) {
    test_support::HostTestBackend<float> b1, b2;
    memory::ParamStore<float> a(b1), ref(b2);
    for (auto* s : {&a, &ref}) {
      s->add({"emb", {10, 4}, memory::Init::Uniform, 0.1f, true});
      s->add({"W", {5, 3}});
      s->add({"b", {5}, memory::Init::Zeros});
      s->finalize();
      s->init(3);
      s->set_optimizer(c);
    }
    auto grads = [](memory::ParamStore<float>& s, float scale, float poison) {
      s.zero_grads();
      for (std::size_t i = 0; i < s.dense_elements(); ++i)
        s.grads_flat()[i] = scale * static_cast<float>(i % 7) - 0.1f;
      const int rows[] = {2, 7};
      s.touch_rows(s.id("emb"), rows, 2);
      for (int r : rows)
        for (int j = 0; j < 4; ++j) s.grad(s.id("emb"))[r * 4 + j] = scale * (j + 1);
      if (poison != 0.f) s.grad(s.id("b"))[3] = poison;
    };
    grads(a, 0.01f, 0.f);
    a.step();
    grads(ref, 0.01f, 0.f);
    ref.step();
    const std::vector<float> p_before = a.get_flat_host(-1);
    std::vector<std::vector<float>> s_before;
    for (int k = 0; k < a.optimizer_state_slots(); ++k) s_before.push_back(a.get_flat_host(k));
    const long steps = a.step_count(), opt_steps = a.optimizer_steps();

    grads(a, 0.02f, 3e38f);  // with lr 3 SGD's p overflows, the others' state
    EXPECT_EQ(a.prepare_step(), "b") << "kind " << c.kind;
    a.discard_step();
    EXPECT_TRUE(a.get_flat_host(-1) == p_before);
    for (int k = 0; k < a.optimizer_state_slots(); ++k)
      EXPECT_TRUE(a.get_flat_host(k) == s_before[k]);
    EXPECT_EQ(a.step_count(), steps);
    EXPECT_EQ(a.optimizer_steps(), opt_steps);
    // step() refuses the same update, naming the parameter, and writes nothing.
    grads(a, 0.02f, 3e38f);
    try {
      a.step();
      ADD_FAILURE() << "step() took a non-finite update";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'b' non-finite"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(a.get_flat_host(-1) == p_before);

    for (float scale : {0.03f, 0.04f}) {
      grads(a, scale, 0.f);
      a.step();
      grads(ref, scale, 0.f);
      ref.step();
    }
    EXPECT_TRUE(a.get_flat_host(-1) == ref.get_flat_host(-1)) << "kind " << c.kind;
    for (int k = 0; k < a.optimizer_state_slots(); ++k)
      EXPECT_TRUE(a.get_flat_host(k) == ref.get_flat_host(k)) << "kind " << c.kind;
  }
}

}  // namespace
}  // namespace copse
