// FusedProgram validation and CpuBackend::run_fused against per-element
// formulas written out by hand (an LSTM cell and a backward-style program).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "ops/cpu_backend.h"
#include "ops/fused_program.h"

namespace copse::ops {
namespace {

EwInstr instr(EwOp op, EwArg d, EwArg a = {}, EwArg b = {}, int width = 0, float imm = 0.f) {
  return make_instr(op, d, a, b, width, imm);
}

EwReg reg(RegKind kind, int width, int ext = -1) { return EwReg{kind, width, ext}; }

// LSTM cell over gates g = x + bias, [rows, 4H] as (i, f, o, u):
//   c = sigmoid(i) * tanh(u) + sigmoid(f) * c_prev,  h = sigmoid(o) * tanh(c)
FusedProgram lstm_program(int hidden) {
  const int h = hidden;
  FusedProgram p;
  p.name = "test/lstm/fwd";
  p.num_inputs = 3;   // x [rows, 4H], bias [4H] (ld 0), c_prev [rows, H]
  p.num_outputs = 2;  // h [rows, H], c [rows, H]
  p.regs = {reg(RegKind::Input, 4 * h, 0),  reg(RegKind::Input, 4 * h, 1),
            reg(RegKind::Input, h, 2),      reg(RegKind::Output, h, 0),
            reg(RegKind::Output, h, 1),     reg(RegKind::Temp, 4 * h),
            reg(RegKind::Temp, h)};
  enum { X, B, CP, H, C, G, TC };
  p.code = {
      instr(EwOp::Add, {G, 0}, {X, 0}, {B, 0}, 4 * h),
      instr(EwOp::Sigmoid, {G, 0}, {G, 0}, {}, 3 * h),  // in place: i, f, o
      instr(EwOp::Tanh, {G, 3 * h}, {G, 3 * h}, {}, h),  // u
      instr(EwOp::Mul, {C, 0}, {G, 0}, {G, 3 * h}, h),
      instr(EwOp::MulAddTo, {C, 0}, {G, h}, {CP, 0}, h),
      instr(EwOp::Tanh, {TC, 0}, {C, 0}, {}, h),  // reads an output written above
      instr(EwOp::Mul, {H, 0}, {G, 2 * h}, {TC, 0}, h),
  };
  p.finalize();
  return p;
}

// Every remaining op, backward style, on dy, y, x [rows, W]:
//   t = dy*y*(1-y) + dy*(1-y^2) + (y > 0 ? dy : 0) + 0.5*x - relu(x)
//   o0 = t - dy + y,  o1 = t,  o2 = 0,
//   o3 = -(dy*y*(1-y) + dy*(1-y^2) - (y > 0 ? dy : 0))  (assigning grad ops)
FusedProgram grad_program(int width) {
  FusedProgram p;
  p.name = "test/grad";
  p.num_inputs = 3;
  p.num_outputs = 4;
  p.regs = {reg(RegKind::Input, width, 0),  reg(RegKind::Input, width, 1),
            reg(RegKind::Input, width, 2),  reg(RegKind::Output, width, 0),
            reg(RegKind::Output, width, 1), reg(RegKind::Output, width + 2, 2),
            reg(RegKind::Temp, width),      reg(RegKind::Temp, width),
            reg(RegKind::Output, width, 3)};
  enum { DY, Y, X, O0, O1, O2, T, R, O3 };
  const int w = width;
  p.code = {
      instr(EwOp::Zero, {T, 0}, {}, {}, w),
      instr(EwOp::SigmoidGradAddTo, {T, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::TanhGradAddTo, {T, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::ReluGradAddTo, {T, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::ScaleAddTo, {T, 0}, {X, 0}, {}, w, 0.5f),
      instr(EwOp::Relu, {R, 0}, {X, 0}, {}, w),
      instr(EwOp::SubTo, {T, 0}, {R, 0}, {}, w),
      instr(EwOp::Sub, {O0, 0}, {T, 0}, {DY, 0}, w),
      instr(EwOp::AddTo, {O0, 0}, {Y, 0}, {}, w),
      instr(EwOp::Copy, {O1, 0}, {T, 0}, {}, w),
      instr(EwOp::Zero, {O2, 1}, {}, {}, w),
      instr(EwOp::SigmoidGrad, {R, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::TanhGrad, {O3, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::AddTo, {O3, 0}, {R, 0}, {}, w),
      instr(EwOp::ReluGrad, {R, 0}, {DY, 0}, {Y, 0}, w),
      instr(EwOp::SubTo, {O3, 0}, {R, 0}, {}, w),
      instr(EwOp::Neg, {O3, 0}, {O3, 0}, {}, w),  // in place
  };
  p.finalize();
  return p;
}

template <typename T>
std::vector<T> random_vec(std::size_t n, std::mt19937& rng, double scale) {
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

template <typename T>
double fused_tol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-14;
}

template <typename T>
class CpuFusedTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuFusedTest, Types);

TYPED_TEST(CpuFusedTest, LstmCell) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const int h = 37;
  const FusedProgram prog = lstm_program(h);
  EXPECT_EQ(prog.scratch_width, 5 * h);
  for (int rows : {3, 300}) {  // 300 rows is past the parallel threshold
    std::mt19937 rng(11);
    const long ld_x = 4 * h + 3, ld_cp = h + 1, ld_h = h + 2, ld_c = h;
    auto x = random_vec<T>(rows * ld_x, rng, 4.0);
    auto bias = random_vec<T>(4 * h, rng, 1.0);
    auto cp = random_vec<T>(rows * ld_cp, rng, 2.0);
    for (int threads : {1, 2}) {
      CpuBackend<T> be(threads);
      std::vector<T> hv(rows * ld_h, nan), cv(rows * ld_c, nan);
      const RowView<const T> in[3] = {{x.data(), ld_x}, {bias.data(), 0}, {cp.data(), ld_cp}};
      const RowView<T> out[2] = {{hv.data(), ld_h}, {cv.data(), ld_c}};
      be.run_fused(prog, rows, in, out);
      auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
      for (int r = 0; r < rows; ++r)
        for (int j = 0; j < h; ++j) {
          auto g = [&](int gate) { return double(x[r * ld_x + gate * h + j]) + bias[gate * h + j]; };
          const double c = sig(g(0)) * std::tanh(g(3)) + sig(g(1)) * cp[r * ld_cp + j];
          const double hh = sig(g(2)) * std::tanh(c);
          ASSERT_NEAR(cv[r * ld_c + j], c, fused_tol<T>() * (1 + std::fabs(c)))
              << "rows=" << rows << " threads=" << threads << " at " << r << "," << j;
          ASSERT_NEAR(hv[r * ld_h + j], hh, fused_tol<T>() * (1 + std::fabs(hh)))
              << "rows=" << rows << " threads=" << threads << " at " << r << "," << j;
        }
      for (int r = 0; r < rows; ++r)  // padding untouched
        for (long j = h; j < ld_h; ++j) ASSERT_TRUE(std::isnan(hv[r * ld_h + j]));
    }
  }
}

TYPED_TEST(CpuFusedTest, GradOps) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const int w = 61, rows = 301;
  const FusedProgram prog = grad_program(w);
  std::mt19937 rng(12);
  auto dy = random_vec<T>(rows * w, rng, 1.0);
  auto y = random_vec<T>(rows * w, rng, 1.0);
  auto x = random_vec<T>(rows * w, rng, 1.0);
  for (int threads : {1, 2}) {
    CpuBackend<T> be(threads);
    std::vector<T> o0(rows * w, nan), o1(rows * w, nan), o2(rows * (w + 2), nan);
    std::vector<T> o3(rows * w, nan);
    const RowView<const T> in[3] = {{dy.data(), w}, {y.data(), w}, {x.data(), w}};
    const RowView<T> out[4] = {
        {o0.data(), w}, {o1.data(), w}, {o2.data(), w + 2}, {o3.data(), w}};
    be.run_fused(prog, rows, in, out);
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < w; ++j) {
        const double a = dy[r * w + j], b = y[r * w + j], xv = x[r * w + j];
        const double t = a * b * (1 - b) + a * (1 - b * b) + (b > 0 ? a : 0) + 0.5 * xv -
                         (xv > 0 ? xv : 0);
        ASSERT_NEAR(o0[r * w + j], t - a + b, fused_tol<T>() * 4) << r << "," << j;
        ASSERT_NEAR(o1[r * w + j], t, fused_tol<T>() * 4) << r << "," << j;
        ASSERT_TRUE(std::isnan(o2[r * (w + 2)]));
        ASSERT_EQ(o2[r * (w + 2) + 1 + j], T(0));
        const double g3 = -(a * b * (1 - b) + a * (1 - b * b) - (b > 0 ? a : 0));
        ASSERT_NEAR(o3[r * w + j], g3, fused_tol<T>() * 4) << r << "," << j;
      }
  }
}

TEST(CpuFused, ZeroRowsAndNaNPropagate) {
  const FusedProgram prog = lstm_program(4);
  CpuBackend<float> be(1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  be.run_fused(prog, 0, nullptr, nullptr);  // nothing to read or write
  std::vector<float> x(16, nan), bias(16, 0.f), cp(4, 0.f), hv(4, 0.f), cv(4, 0.f);
  const RowView<const float> in[3] = {{x.data(), 16}, {bias.data(), 0}, {cp.data(), 4}};
  const RowView<float> out[2] = {{hv.data(), 4}, {cv.data(), 4}};
  be.run_fused(prog, 1, in, out);
  for (float v : hv) EXPECT_TRUE(std::isnan(v));
}

// A valid two-register program for finalize tests to break.
FusedProgram small_program() {
  FusedProgram p;
  p.name = "test/small";
  p.num_inputs = 1;
  p.num_outputs = 1;
  p.regs = {reg(RegKind::Input, 8, 0), reg(RegKind::Temp, 8), reg(RegKind::Output, 4, 0),
            reg(RegKind::Temp, 3)};
  p.code = {instr(EwOp::Tanh, {1, 0}, {0, 0}, {}, 8),
            instr(EwOp::Add, {2, 0}, {1, 0}, {1, 4}, 4)};
  return p;
}

void expect_rejected(FusedProgram p, const std::string& needle) {
  try {
    p.finalize();
    ADD_FAILURE() << "finalize accepted a bad program, expected: " << needle;
  } catch (const copse::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("test/small"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(FusedProgram, FinalizeLaysOutScratch) {
  FusedProgram p = small_program();
  p.finalize();
  EXPECT_EQ(p.scratch_width, 11);
  EXPECT_EQ(p.temp_offset, (std::vector<int>{-1, 0, -1, 8}));
  const std::string s = p.to_string();
  EXPECT_NE(s.find("tanh r1[0:8], r0[0:8]"), std::string::npos) << s;
  EXPECT_NE(s.find("add r2[0:4], r1[0:4], r1[4:8]"), std::string::npos) << s;
  EXPECT_STREQ(ew_op_name(EwOp::SigmoidGradAddTo), "sigmoid_grad_add_to");
  EXPECT_STREQ(ew_op_name(EwOp::ReluGrad), "relu_grad");
}

TEST(FusedProgram, FinalizeRejectsBadPrograms) {
  FusedProgram p = small_program();
  p.code[1].a.reg = 9;  // no such register
  expect_rejected(p, "instruction 1");

  p = small_program();
  p.code[1].b.col = 5;  // [5, 9) past width 8
  expect_rejected(p, "outside register r1");

  p = small_program();
  p.code[1].d.col = -1;
  expect_rejected(p, "instruction 1");

  p = small_program();
  p.code[0].d = {0, 0};  // writes the input
  expect_rejected(p, "writes input register r0");

  p = small_program();
  p.regs[0].ext = 1;  // only one input
  expect_rejected(p, "input register r0");

  p = small_program();
  p.regs[2].ext = -1;
  expect_rejected(p, "output register r2");

  p = small_program();
  p.code[1] = instr(EwOp::Add, {1, 2}, {1, 0}, {0, 0}, 4);  // d overlaps a, shifted
  expect_rejected(p, "partially overlaps");

  p = small_program();
  p.code[1].width = -2;
  expect_rejected(p, "negative width");

  p = small_program();
  p.code[0].op = static_cast<EwOp>(200);
  expect_rejected(p, "unknown op");
}

}  // namespace
}  // namespace copse::ops
