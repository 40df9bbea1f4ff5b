// Random valid FusedPrograms for differential tests: every op, slices,
// in-place updates, chains of copies, temps copied to one or several
// outputs, and outputs that are only accumulated into (which the executor may
// give the same memory). No Temp column is read before it is written.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "ops/fused_program.h"

namespace copse::ops::fusedtest {

inline bool accumulating(EwOp op) {
  return op == EwOp::AddTo || op == EwOp::SubTo || op == EwOp::MulAddTo ||
         op == EwOp::SigmoidGradAddTo || op == EwOp::TanhGradAddTo || op == EwOp::ReluGradAddTo ||
         op == EwOp::ScaleAddTo;
}

// RandomProgram(seed).make(): 1-3 inputs, 1-4 outputs, 1-6 temps of widths
// 2..12 in a shuffled register order, and up to ~36 instructions.
class RandomProgram {
 public:
  explicit RandomProgram(std::uint32_t seed) : rng_(seed) {}

  FusedProgram make() {
    p_ = FusedProgram();
    p_.name = "test/random";
    p_.num_inputs = pick(1, 3);
    p_.num_outputs = pick(1, 4);
    const int ntemps = pick(1, 6);
    std::vector<EwReg> regs;
    for (int i = 0; i < p_.num_inputs; ++i) regs.push_back({RegKind::Input, width(), i});
    for (int o = 0; o < p_.num_outputs; ++o) regs.push_back({RegKind::Output, width(), o});
    for (int t = 0; t < ntemps; ++t) regs.push_back({RegKind::Temp, width(), -1});
    std::shuffle(regs.begin(), regs.end(), rng_);  // kinds interleaved
    p_.regs = regs;
    written_.assign(regs.size(), {});
    results_.clear();
    acc_only_.assign(regs.size(), 0);
    for (std::size_t r = 0; r < regs.size(); ++r) {
      written_[r].assign(regs[r].width, 0);
      acc_only_[r] = regs[r].kind == RegKind::Output && pick(0, 2) == 0;
    }
    const int n = pick(4, 30);
    for (int tries = 0; static_cast<int>(p_.code.size()) < n && tries < 50 * n; ++tries) add();
    for (int tries = 0; tries < 6; ++tries) {  // a few results copied out last
      EwInstr in;
      copy_a_result(in);
    }
    p_.finalize();
    return p_;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  int width() {
    static const int widths[] = {2, 3, 4, 6, 8, 12};
    return widths[pick(0, 5)];
  }
  RegKind kind(int r) const { return p_.regs[r].kind; }
  int nregs() const { return static_cast<int>(p_.regs.size()); }
  bool all_written(int r, int col, int w) const {
    if (kind(r) != RegKind::Temp) return true;
    for (int c = col; c < col + w; ++c)
      if (!written_[r][c]) return false;
    return true;
  }

  // A readable operand of width w, or reg -1: a temp window already written
  // (preferred, so that copies chain), an input or an output.
  EwArg readable(int w) {
    for (int tries = 0; tries < 20; ++tries) {
      const int r = pick(0, nregs() - 1);
      const int rw = p_.regs[r].width;
      if (rw < w || (kind(r) != RegKind::Temp && pick(0, 2) == 0)) continue;
      const int col = pick(0, 2) == 0 ? 0 : pick(0, rw - w);
      if (all_written(r, col, w)) return {r, col};
    }
    return {};
  }

  void add() {
    static const EwOp others[] = {
        EwOp::Zero,        EwOp::Add,           EwOp::Sub,           EwOp::Mul,
        EwOp::Sigmoid,     EwOp::Tanh,          EwOp::Relu,          EwOp::AddTo,
        EwOp::SubTo,       EwOp::MulAddTo,      EwOp::SigmoidGradAddTo,
        EwOp::TanhGradAddTo,                    EwOp::ReluGradAddTo, EwOp::ScaleAddTo,
        EwOp::Neg,         EwOp::SigmoidGrad,   EwOp::TanhGrad,      EwOp::ReluGrad};  // 18
    EwInstr in;
    in.op = pick(0, 9) < 4 ? EwOp::Copy : others[pick(0, 17)];
    in.imm = pick(0, 1) ? 0.5f : -1.25f;
    if (in.op == EwOp::Copy && pick(0, 1) == 0 && copy_a_result(in)) return;
    const bool acc = accumulating(in.op);
    const int d = pick(0, nregs() - 1);
    if (kind(d) == RegKind::Input || (acc_only_[d] && !acc)) return;
    const int dw = p_.regs[d].width;
    in.width = pick(0, 1) ? dw : pick(1, dw);
    in.d = {d, pick(0, dw - in.width)};
    if (acc && !all_written(d, in.d.col, in.width)) return;
    for (int k = 0; k < ew_num_sources(in.op); ++k) {
      const bool in_place = pick(0, 5) == 0 && all_written(d, in.d.col, in.width);
      const EwArg x = in_place ? in.d : readable(in.width);
      if (x.reg < 0) return;
      if (x.reg == d && x.col != in.d.col && x.col < in.d.col + in.width &&
          in.d.col < x.col + in.width)
        return;  // shifted overlap: not a valid program
      if (acc_only_[d] && acc_only_[x.reg] && x.reg != d) return;  // may share memory
      (k == 0 ? in.a : in.b) = x;
    }
    push(in);
  }

  // A copy of something computed in a temp (one of the last few results, or
  // a whole temp register, as a concat or a gradient leaves it) to another
  // register: the pattern the compiler's backward programs are full of.
  bool copy_a_result(EwInstr& in) {
    EwArg from;
    if (!results_.empty() && pick(0, 1) == 0) {
      const EwInstr& r = results_[pick(std::max(0, static_cast<int>(results_.size()) - 3),
                                       static_cast<int>(results_.size()) - 1)];
      from = r.d;
      in.width = r.width;
    } else {
      const int t = pick(0, nregs() - 1);
      if (kind(t) != RegKind::Temp || !all_written(t, 0, p_.regs[t].width)) return false;
      from = {t, 0};
      in.width = p_.regs[t].width;
    }
    const int d = pick(0, nregs() - 1);
    if (d == from.reg || kind(d) == RegKind::Input || acc_only_[d] || p_.regs[d].width < in.width)
      return false;
    in.d = {d, pick(0, p_.regs[d].width - in.width)};
    in.a = from;
    push(in);
    return true;
  }

  void push(const EwInstr& in) {
    p_.code.push_back(in);
    if (kind(in.d.reg) != RegKind::Temp) return;
    std::fill_n(written_[in.d.reg].begin() + in.d.col, in.width, 1);
    results_.push_back(in);
  }

  std::mt19937 rng_;
  FusedProgram p_;
  std::vector<std::vector<char>> written_;  // per Temp: columns written so far
  std::vector<char> acc_only_;              // per Output: only accumulated into
  std::vector<EwInstr> results_;            // the instructions that wrote a temp, in order
};

}  // namespace copse::ops::fusedtest
