// ops::optimize_fused: random programs and every program of the model zoo
// write the same bits before and after the pass (also when the outputs that
// are only accumulated into share memory, as the executor may pass them), the
// pass never makes a program larger, and it leaves the Tree-LSTM's backward
// program only the copies its structure needs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "models/cells.h"
#include "models/tree_lstm.h"
#include "ops/cpu_backend.h"
#include "ops/fused_optimize.h"
#include "ops/fused_program.h"
#include "tests/random_fused_program.h"
#include "tests/random_graphs.h"
#include "tests/reference_harness.h"
#include "vertex/plan.h"

namespace copse::ops {
namespace {

using fusedtest::accumulating;
using fusedtest::RandomProgram;

// ---------------------------------------------------------------------------
// Running a program before and after the pass on the same data.

struct Size {
  int instrs = 0;
  long elements = 0, copy_elements = 0;  // per row
  int scratch = 0;
};

Size size_of(const FusedProgram& p) {
  Size s;
  s.instrs = static_cast<int>(p.code.size());
  for (const EwInstr& in : p.code) {
    s.elements += in.width;
    if (in.op == EwOp::Copy) s.copy_elements += in.width;
  }
  s.scratch = p.scratch_width;
  return s;
}

// Per output: only ever accumulated into (such outputs may share memory).
std::vector<char> accumulate_only(const FusedProgram& p) {
  std::vector<char> only(p.num_outputs, 1);
  for (const EwInstr& in : p.code)
    if (p.regs[in.d.reg].kind == RegKind::Output && !accumulating(in.op))
      only[p.regs[in.d.reg].ext] = 0;
  return only;
}

// Inputs and initial outputs of `rows` rows; leading dimensions with padding
// (its bits must survive too), some inputs broadcast (ld 0).
template <typename T>
struct ProgramData {
  int rows = 0;
  std::vector<std::vector<T>> in, out;
  std::vector<long> in_ld, out_ld;
};

template <typename T>
ProgramData<T> random_data(const FusedProgram& p, int rows, std::mt19937& rng) {
  ProgramData<T> d;
  d.rows = rows;
  std::vector<int> in_w(p.num_inputs, 0), out_w(p.num_outputs, 0);
  for (const EwReg& r : p.regs) {
    if (r.kind == RegKind::Input) in_w[r.ext] = std::max(in_w[r.ext], r.width);
    if (r.kind == RegKind::Output) out_w[r.ext] = std::max(out_w[r.ext], r.width);
  }
  std::uniform_real_distribution<double> u(-2, 2);
  std::uniform_int_distribution<int> pad(0, 2);
  auto fill = [&](std::size_t n) {
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(u(rng));
    return v;
  };
  for (int w : in_w) {
    const long ld = rng() % 5 == 0 ? 0 : w + pad(rng);
    d.in_ld.push_back(ld);
    d.in.push_back(fill(static_cast<std::size_t>(ld == 0 ? 1 : rows) * std::max<long>(ld, w)));
  }
  for (int w : out_w) {
    d.out_ld.push_back(w + pad(rng));
    d.out.push_back(fill(static_cast<std::size_t>(rows) * d.out_ld.back()));
  }
  return d;
}

// The output buffers after running p. With `alias`, the outputs of
// `shared` all write one buffer (the widest one's).
template <typename T>
std::vector<std::vector<T>> run(const FusedProgram& p, const ProgramData<T>& d, bool alias,
                                const std::vector<char>& shared) {
  CpuBackend<T> be(1);
  std::vector<std::vector<T>> out = d.out;
  int widest = -1;
  for (int o = 0; o < p.num_outputs; ++o)
    if (shared[o] && (widest < 0 || d.out_ld[o] > d.out_ld[widest])) widest = o;
  std::vector<RowView<const T>> vin;
  std::vector<RowView<T>> vout;
  for (int i = 0; i < p.num_inputs; ++i) vin.push_back({d.in[i].data(), d.in_ld[i]});
  for (int o = 0; o < p.num_outputs; ++o) {
    const int b = alias && shared[o] ? widest : o;
    vout.push_back({out[b].data(), d.out_ld[b]});
  }
  be.run_fused(p, d.rows, vin.data(), vout.data());
  return out;
}

// Runs `before` and `after` on the same data (and, when two or more outputs
// are only accumulated into, with those sharing memory): the bits agree.
template <typename T>
::testing::AssertionResult same_bits(const FusedProgram& before, const FusedProgram& after,
                                     std::mt19937& rng, int rows = 3) {
  const ProgramData<T> d = random_data<T>(before, rows, rng);
  const std::vector<char> shared = accumulate_only(before);
  const bool can_alias = std::count(shared.begin(), shared.end(), 1) >= 2;
  for (bool alias : {false, true}) {
    if (alias && !can_alias) break;
    const auto want = run(before, d, alias, shared), got = run(after, d, alias, shared);
    for (std::size_t o = 0; o < want.size(); ++o)
      for (std::size_t i = 0; i < want[o].size(); ++i)
        if (std::memcmp(&want[o][i], &got[o][i], sizeof(T)) != 0)
          return ::testing::AssertionFailure()
                 << "output " << o << " element " << i << ": " << got[o][i] << " instead of "
                 << want[o][i] << (alias ? " (shared outputs aliased)" : "") << "\nbefore:\n"
                 << before.to_string() << "after:\n"
                 << after.to_string();
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
void check_random_programs(int seeds) {
  FusedOptimizeStats total;
  int shrunk = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    const FusedProgram before = RandomProgram(seed).make();
    FusedProgram after = before;
    const FusedOptimizeStats st = optimize_fused(after);
    ASSERT_FALSE(st.skipped) << before.to_string();
    const Size b = size_of(before), a = size_of(after);
    ASSERT_LE(a.instrs, b.instrs);
    ASSERT_LE(a.elements, b.elements);
    ASSERT_LE(a.scratch, b.scratch);
    std::mt19937 rng(seed);
    for (int rows : {1, 3}) ASSERT_TRUE(same_bits<T>(before, after, rng, rows)) << "seed " << seed;
    total.copies_propagated += st.copies_propagated;
    total.copies_forwarded += st.copies_forwarded;
    total.dead_removed += st.dead_removed;
    shrunk += a.scratch < b.scratch;
  }
  // The programs exercised every rewrite, many times.
  EXPECT_GT(total.copies_propagated, seeds / 4);
  EXPECT_GT(total.copies_forwarded, seeds / 10);
  EXPECT_GT(total.dead_removed, seeds / 4);
  EXPECT_GT(shrunk, seeds / 4);
}

TEST(FusedOptimize, RandomProgramsKeepTheirBitsFloat) { check_random_programs<float>(3000); }
TEST(FusedOptimize, RandomProgramsKeepTheirBitsDouble) { check_random_programs<double>(1500); }

// ---------------------------------------------------------------------------
// Small programs with the expected result written out.

EwInstr instr(EwOp op, EwArg d, EwArg a, EwArg b, int width) {
  return make_instr(op, d, a, b, width);
}

// One value computed in a temp and copied whole to two outputs (the Tree-LSTM's
// gate gradient, which is the gradient of two inputs): the computation writes
// the first output, the second copies from it.
TEST(FusedOptimize, ValueCopiedToTwoOutputsKeepsOneCopy) {
  FusedProgram p;
  p.name = "test/two_outputs";
  p.num_inputs = 2;
  p.num_outputs = 2;
  enum { X, Y, O0, O1, T };
  p.regs = {{RegKind::Input, 8, 0}, {RegKind::Input, 4, 1}, {RegKind::Output, 8, 0},
            {RegKind::Output, 8, 1}, {RegKind::Temp, 8, -1}};
  p.code = {instr(EwOp::Mul, {T, 0}, {X, 0}, {X, 4}, 4),  // t[0:4] = x[0:4] * x[4:8]
            instr(EwOp::Copy, {T, 4}, {Y, 0}, {}, 4),     // t[4:8] = y
            instr(EwOp::Copy, {O0, 0}, {T, 0}, {}, 8), instr(EwOp::Copy, {O1, 0}, {T, 0}, {}, 8)};
  p.finalize();
  const FusedProgram before = p;
  const FusedOptimizeStats st = optimize_fused(p);
  EXPECT_EQ(st.copies_forwarded, 1);
  EXPECT_EQ(p.scratch_width, 0);
  const std::string s = p.to_string();
  EXPECT_NE(s.find("0: mul r2[0:4], r0[0:4], r0[4:8]"), std::string::npos) << s;
  EXPECT_NE(s.find("1: copy r2[4:8], r1[0:4]"), std::string::npos) << s;
  EXPECT_NE(s.find("2: copy r3[0:8], r2[0:8]"), std::string::npos) << s;
  EXPECT_EQ(p.code.size(), 3u) << s;
  std::mt19937 rng(1);
  EXPECT_TRUE(same_bits<float>(before, p, rng));
}

// A copy whose columns are then accumulated into stays (the accumulation
// needs its own register); a copy of an output that is only accumulated into
// stays when another such output is written before the copy's reader (the two
// may be one buffer); a copy of an ordinary output goes.
TEST(FusedOptimize, KeepsCopiesThatAccumulationOrSharedOutputsNeed) {
  enum { X, O0, O1, R, T };
  auto program = [](EwOp second_write) {
    FusedProgram p;
    p.name = "test/shared";
    p.num_inputs = 1;
    p.num_outputs = 3;
    p.regs = {{RegKind::Input, 4, 0}, {RegKind::Output, 4, 0}, {RegKind::Output, 4, 1},
              {RegKind::Output, 4, 2}, {RegKind::Temp, 4, -1}};
    p.code = {instr(EwOp::AddTo, {O0, 0}, {X, 0}, {}, 4),    // o0 += x
              instr(EwOp::Copy, {T, 0}, {O0, 0}, {}, 4),     // t = o0
              instr(second_write, {O1, 0}, {X, 0}, {}, 4),   // o1 += x  or  o1 = x
              instr(EwOp::Add, {R, 0}, {T, 0}, {X, 0}, 4)};  // r = t + x
    p.finalize();
    return p;
  };
  FusedProgram shared = program(EwOp::AddTo), plain = program(EwOp::Copy);
  const FusedProgram shared0 = shared, plain0 = plain;
  EXPECT_EQ(optimize_fused(shared).copies_propagated, 0) << shared.to_string();
  EXPECT_EQ(shared.code.size(), 4u);
  EXPECT_EQ(optimize_fused(plain).copies_propagated, 1) << plain.to_string();
  EXPECT_EQ(plain.code.size(), 3u);
  std::mt19937 rng(2);
  EXPECT_TRUE(same_bits<float>(shared0, shared, rng));
  EXPECT_TRUE(same_bits<float>(plain0, plain, rng));

  FusedProgram acc;
  acc.name = "test/accumulate";
  acc.num_inputs = 1;
  acc.num_outputs = 1;
  acc.regs = {{RegKind::Input, 4, 0}, {RegKind::Output, 4, 0}, {RegKind::Temp, 4, -1}};
  acc.code = {instr(EwOp::Copy, {2, 0}, {0, 0}, {}, 4),   // t = x
              instr(EwOp::AddTo, {2, 0}, {0, 0}, {}, 4),  // t += x
              instr(EwOp::Mul, {1, 0}, {2, 0}, {0, 0}, 4)};
  const FusedOptimizeStats st = optimize_fused(acc);
  EXPECT_EQ(st.copies_propagated + st.copies_forwarded, 0) << acc.to_string();
  EXPECT_EQ(acc.code.size(), 3u);
}

// t = copy of s, then s is overwritten: t's readers cannot read s.
TEST(FusedOptimize, KeepsCopiesWhoseSourceIsOverwritten) {
  FusedProgram p;
  p.name = "test/overwritten";
  p.num_inputs = 1;
  p.num_outputs = 1;
  enum { X, O, S, T };
  p.regs = {{RegKind::Input, 4, 0}, {RegKind::Output, 4, 0}, {RegKind::Temp, 4, -1},
            {RegKind::Temp, 4, -1}};
  p.code = {instr(EwOp::Tanh, {S, 0}, {X, 0}, {}, 4),     // s = tanh(x)
            instr(EwOp::Copy, {T, 0}, {S, 0}, {}, 4),     // t = s
            instr(EwOp::Sigmoid, {S, 0}, {X, 0}, {}, 4),  // s = sigmoid(x)
            instr(EwOp::Mul, {O, 0}, {T, 0}, {S, 0}, 4)};
  p.finalize();
  const FusedProgram before = p;
  const FusedOptimizeStats st = optimize_fused(p);
  EXPECT_EQ(st.copies_propagated, 0) << p.to_string();
  std::mt19937 rng(4);
  EXPECT_TRUE(same_bits<float>(before, p, rng));
}

// Scratch read before it is written in the row (it would hold the previous
// row's value): the program is left exactly as it was.
TEST(FusedOptimize, LeavesProgramsThatReadUnwrittenScratchAlone) {
  FusedProgram p;
  p.name = "test/unwritten";
  p.num_inputs = 1;
  p.num_outputs = 1;
  p.regs = {{RegKind::Input, 4, 0}, {RegKind::Output, 4, 0}, {RegKind::Temp, 4, -1}};
  p.code = {instr(EwOp::AddTo, {2, 0}, {0, 0}, {}, 4), instr(EwOp::Copy, {1, 0}, {2, 0}, {}, 4)};
  p.finalize();
  const std::uint64_t fingerprint = p.fingerprint;
  EXPECT_TRUE(optimize_fused(p).skipped);
  EXPECT_EQ(p.fingerprint, fingerprint);
}

// ---------------------------------------------------------------------------
// The model zoo.

struct ZooProgram {
  std::string what;
  const FusedProgram* raw;
  const FusedProgram* opt;
  std::vector<int> bias_grad_from;  // backward programs: vertex::Region::bias_grad_from
};

// The compiler's last step on backward programs: a bias output that is an
// exact copy of another input's gradient is not written (Region::bias_grad_from).
FusedProgram drop_bias_copies(FusedProgram p, const std::vector<int>& from) {
  for (std::size_t k = 0; k < from.size(); ++k) {
    if (from[k] < 0) continue;
    for (std::size_t i = 0; i < p.code.size(); ++i) {
      const EwReg& d = p.regs[p.code[i].d.reg];
      if (d.kind == RegKind::Output && d.ext == static_cast<int>(k)) {
        p.code.erase(p.code.begin() + static_cast<long>(i));
        break;
      }
    }
  }
  p.finalize();
  return p;
}

// The program the executor effectively runs: the dropped copies put back at
// the end (the source output is final: the compiler checked nothing writes
// it after the copy), so it can be compared with the unoptimized program.
FusedProgram restore_bias_copies(FusedProgram p, const std::vector<int>& from) {
  auto out_reg = [&](int ext) {
    for (std::size_t r = 0; r < p.regs.size(); ++r)
      if (p.regs[r].kind == RegKind::Output && p.regs[r].ext == ext) return static_cast<int>(r);
    return -1;
  };
  for (std::size_t k = 0; k < from.size(); ++k) {
    if (from[k] < 0) continue;
    const int d = out_reg(static_cast<int>(k)), a = out_reg(from[k]);
    EXPECT_GE(d, 0);
    EXPECT_GE(a, 0);
    if (d < 0 || a < 0) continue;
    EXPECT_EQ(p.regs[d].width, p.regs[a].width);
    p.code.push_back(instr(EwOp::Copy, {d, 0}, {a, 0}, {}, p.regs[d].width));
  }
  p.finalize();
  return p;
}

std::vector<ZooProgram> pair_programs(const std::string& cell, const vertex::ExecPlan& raw,
                                      const vertex::ExecPlan& opt) {
  std::vector<ZooProgram> v;
  EXPECT_EQ(raw.regions.size(), opt.regions.size()) << cell;
  for (std::size_t r = 0; r < std::min(raw.regions.size(), opt.regions.size()); ++r) {
    const vertex::Region &a = raw.regions[r], &b = opt.regions[r];
    v.push_back({cell + " fwd", &a.fwd, &b.fwd, {}});
    v.push_back({cell + " bwd", &a.bwd, &b.bwd, b.bias_grad_from});
    if (!a.bwd_views.code.empty() || !b.bwd_views.code.empty())
      v.push_back({cell + " bwd_views", &a.bwd_views, &b.bwd_views, b.bias_grad_from});
  }
  return v;
}

vertex::ExecPlan compile_raw(const vertex::VertexFunction& fn) {
  vertex::CompileOptions co;
  co.optimize_programs = false;
  return vertex::compile(fn, co);
}

// Every program of every cell: the compiler applied the pass, the result is
// never larger, and it writes the same bits on random data.
TEST(FusedOptimize, EveryZooProgramShrinksAndKeepsItsBits) {
  long copies_before = 0, copies_after = 0;
  for (const std::string& name : models::cell_names())
    for (int hidden : {5, 20}) {
      const vertex::VertexFunction fn = models::make_cell(name, 7, hidden);
      const vertex::ExecPlan raw = compile_raw(fn), opt = vertex::compile(fn);
      for (const ZooProgram& z : pair_programs(name, raw, opt)) {
        SCOPED_TRACE(z.what + " hidden " + std::to_string(hidden));
        FusedProgram again = *z.raw;
        optimize_fused(again);
        again = drop_bias_copies(again, z.bias_grad_from);
        EXPECT_EQ(again.fingerprint, z.opt->fingerprint) << "the compiler did not apply the pass";
        const FusedProgram runs = restore_bias_copies(*z.opt, z.bias_grad_from);
        const Size b = size_of(*z.raw), a = size_of(*z.opt);
        EXPECT_LE(a.instrs, b.instrs);
        EXPECT_LE(a.elements, b.elements);
        EXPECT_LE(a.copy_elements, b.copy_elements);
        EXPECT_LE(a.scratch, b.scratch);
        copies_before += b.copy_elements;
        copies_after += a.copy_elements;
        std::mt19937 rng(hidden);
        for (int rows : {1, 4}) {
          EXPECT_TRUE(same_bits<float>(*z.raw, runs, rng, rows));
          EXPECT_TRUE(same_bits<double>(*z.raw, runs, rng, rows));
        }
      }
    }
  EXPECT_LT(2 * copies_after, copies_before);
}

// The binary Tree-LSTM's backward program (and its strided-view twin) needs
// only these copies, H = hidden:
//   - the incoming gradient of c, an input, because d(c) is then accumulated
//     into (the gradient through h is added to it): H;
//   - the gate gradient d[i o u f_l f_r] is the gradient of the GEMM output and
//     of the bias row, two outputs: one is computed, the other copied: 5H;
//   - d(x_i), d(x_o), d(x_u) are outputs and also blocks of the gate gradient,
//     whose other blocks are computed in place: one copy each, 3H.
// So at most 9H copied elements after the pass, and the compiler then drops
// the bias copy (the executor sums the GEMM output's gradient into the bias
// instead): 4H. Every arithmetic instruction stays except the recomputation
// of h = o * tanh(c), which no gradient reads.
TEST(FusedOptimize, TreeLstmBackwardKeepsOnlyTheCopiesItsStructureNeeds) {
  const int H = 128;
  const vertex::VertexFunction fn = models::tree_lstm_cell(H, H);
  const vertex::ExecPlan raw = compile_raw(fn), opt = vertex::compile(fn);
  ASSERT_EQ(opt.regions.size(), 1u);
  for (const ZooProgram& z : pair_programs("tree_lstm", raw, opt)) {
    SCOPED_TRACE(z.what);
    const Size b = size_of(*z.raw), a = size_of(*z.opt);
    if (z.what == "tree_lstm fwd") {  // no copies, every value used: only the scratch shrinks
      EXPECT_EQ(a.instrs, b.instrs);
      EXPECT_EQ(a.elements, b.elements);
      EXPECT_LT(a.scratch, b.scratch);
      continue;
    }
    FusedProgram pass_only = *z.raw;
    optimize_fused(pass_only);
    EXPECT_LE(size_of(pass_only).copy_elements, 9 * H) << pass_only.to_string();
    ASSERT_EQ(z.bias_grad_from.size(), 7u);  // inputs: U out, U.b, x_i, x_o, x_u, c_l, c_r
    EXPECT_EQ(z.bias_grad_from[1], 0) << "U.b's gradient is the U GEMM output's";
    EXPECT_EQ(a.copy_elements, 4 * H) << z.opt->to_string();
    EXPECT_GE(b.copy_elements, 2 * a.copy_elements);
    EXPECT_EQ(a.elements - a.copy_elements, b.elements - b.copy_elements - H);
    // Registers live over disjoint stretches share columns: the backward
    // program's many short-lived gradient registers fit in half the row.
    EXPECT_LE(2 * a.scratch, b.scratch);
    std::mt19937 rng(3);
    EXPECT_TRUE(same_bits<float>(*z.raw, restore_bias_copies(*z.opt, z.bias_grad_from), rng, 5));
  }
}

}  // namespace
}  // namespace copse::ops

// ---------------------------------------------------------------------------
// Whole cells: forward outputs and every gradient, bit for bit, with the pass
// and without.

namespace copse::reftest {
namespace {

constexpr int kVocab = 19;

// Graphs whose every inner vertex has one child in both slots, of equal
// height: on each level both slots' children form the same run, so a cell's
// two strided gathers of a state are views of the same rows and bwd_views
// gets the same memory for their two (accumulated) gradients.
std::vector<scheduler::Graph> twin_child_chains(int count, int height, std::mt19937& rng) {
  std::vector<scheduler::Graph> graphs;
  for (int g = 0; g < count; ++g) {
    scheduler::Graph t;
    int v = t.add_vertex({}, random_input(rng, kVocab, 0));
    for (int l = 1; l < height; ++l) v = t.add_vertex({v, v}, random_input(rng, kVocab, 0.3));
    graphs.push_back(t);
  }
  return graphs;
}

// Runs m with the pass and without (same parameters, same loss weights) and
// expects the same bits; returns the statistics of the run with the pass.
template <typename T>
scheduler::ExecStats expect_same_bits_with_and_without_pass(
    const Model& m, const std::vector<scheduler::Graph>& graphs, std::uint64_t seed) {
  const Flat r = loss_weights(m, graphs, static_cast<std::uint32_t>(seed));
  RunConfig with, without;
  without.optimize_programs = false;
  RefParams pw, po;
  scheduler::ExecStats stats;
  const Result a = run_runtime<T>(m, graphs, with, r, seed, &pw, &stats);
  const Result b = run_runtime<T>(m, graphs, without, r, seed, &po);
  for (const auto& [name, v] : b.out) EXPECT_EQ(a.out.at(name), v) << m.name << " output " << name;
  for (const auto& [name, v] : b.grad) EXPECT_EQ(a.grad.at(name), v) << m.name << " grad " << name;
  return stats;
}

TEST(FusedOptimize, EveryCellComputesTheSameBitsWithThePass) {
  std::mt19937 rng(71);
  std::vector<scheduler::Graph> trees, dags;
  for (int leaves : {1, 3, 8, 21}) trees.push_back(random_binary_tree(leaves, rng, kVocab, false));
  for (int n : {4, 15, 30}) {
    dags.push_back(random_dag(n, 3, rng, kVocab));
    dags.push_back(random_nary_tree(n, 4, rng, kVocab));
  }
  const std::vector<scheduler::Graph> twins = twin_child_chains(3, 5, rng);
  for (const std::string& name : models::cell_names()) {
    SCOPED_TRACE(name);
    const Model m = make_model(name, models::make_cell(name, 5, 6), "word", kVocab, 5, {"h"});
    const bool tree_like =
        m.fn.child_slots >= 2 || name == "lstm" || name == "gru" || name == "lstm2";
    const auto& graphs = tree_like ? trees : dags;
    expect_same_bits_with_and_without_pass<float>(m, graphs, 72);
    expect_same_bits_with_and_without_pass<double>(m, graphs, 73);
    if (m.fn.child_slots == 2) {
      const auto f = expect_same_bits_with_and_without_pass<float>(m, twins, 74);
      const auto d = expect_same_bits_with_and_without_pass<double>(m, twins, 75);
      if (name == "tree-lstm") {  // bwd_views ran, with d(c_l) and d(c_r) in one place
        EXPECT_GT(f.strided_grads, 0);
        EXPECT_GT(d.strided_grads, 0);
      }
    }
  }
}

}  // namespace
}  // namespace copse::reftest
