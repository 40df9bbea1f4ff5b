// optimize_fused (see fused_optimize.h): copy propagation, destination
// forwarding and dead-code elimination column by column, then scratch packing.
#include "ops/fused_optimize.h"

#include <algorithm>
#include <climits>
#include <utility>
#include <vector>

namespace copse::ops {

namespace {

// The op reads its destination as well as writing it.
bool accumulates(EwOp op) {
  switch (op) {
    case EwOp::AddTo:
    case EwOp::SubTo:
    case EwOp::MulAddTo:
    case EwOp::SigmoidGradAddTo:
    case EwOp::TanhGradAddTo:
    case EwOp::ReluGradAddTo:
    case EwOp::ScaleAddTo: return true;
    default: return false;
  }
}

bool overlap(int a0, int aw, int b0, int bw) { return a0 < b0 + bw && b0 < a0 + aw; }

EwArg& source(EwInstr& in, int k) { return k == 0 ? in.a : in.b; }
const EwArg& source(const EwInstr& in, int k) { return k == 0 ? in.a : in.b; }

// Columns [col, col + width) of register reg.
struct Span {
  int reg, col, width;
};

// (instruction, source operand 0 = a, 1 = b): a read to redirect.
using Use = std::pair<int, int>;

class Optimizer {
 public:
  Optimizer(FusedProgram& p, FusedOptimizeStats& stats) : p_(p), code_(p.code), stats_(stats) {
    const int nregs = static_cast<int>(p_.regs.size());
    shared_.assign(nregs, 0);
    for (int r = 0; r < nregs; ++r) shared_[r] = p_.regs[r].kind == RegKind::Output;
    for (const EwInstr& in : code_)
      if (!accumulates(in.op)) shared_[in.d.reg] = 0;
  }

  // True if some instruction reads a Temp column no earlier instruction of
  // the row wrote (its value would come from the previous row).
  bool reads_unwritten_scratch() const {
    std::vector<std::vector<char>> written(p_.regs.size());
    for (std::size_t r = 0; r < p_.regs.size(); ++r) written[r].assign(p_.regs[r].width, 0);
    auto all_written = [&](const EwArg& x, int w) {
      if (kind(x.reg) != RegKind::Temp) return true;
      for (int c = x.col; c < x.col + w; ++c)
        if (!written[x.reg][c]) return false;
      return true;
    };
    for (const EwInstr& in : code_) {
      for (int k = 0; k < ew_num_sources(in.op); ++k)
        if (!all_written(source(in, k), in.width)) return true;
      if (accumulates(in.op) && !all_written(in.d, in.width)) return true;
      if (kind(in.d.reg) == RegKind::Temp)
        std::fill_n(written[in.d.reg].begin() + in.d.col, in.width, 1);
    }
    return false;
  }

  void run() {
    for (bool changed = true; changed;) {
      changed = remove_dead();
      for (int i = 0; i < size() && !changed; ++i)
        if (code_[i].op == EwOp::Copy) changed = propagate_copy(i) || forward_copy(i);
    }
    p_.code = std::move(code_);
    pack_scratch();
  }

 private:
  RegKind kind(int reg) const { return p_.regs[reg].kind; }
  int size() const { return static_cast<int>(code_.size()); }

  // Registers whose memory may be shared: the same one, or two Outputs that
  // are only accumulated into.
  bool may_alias(int r1, int r2) const { return r1 == r2 || (shared_[r1] && shared_[r2]); }
  bool touches(const EwArg& x, int w, const Span& s) const {
    if (!may_alias(x.reg, s.reg)) return false;
    return x.reg != s.reg || overlap(x.col, w, s.col, s.width);
  }
  bool writes(const EwInstr& in, const Span& s) const { return touches(in.d, in.width, s); }
  bool reads(const EwInstr& in, const Span& s) const {
    for (int k = 0; k < ew_num_sources(in.op); ++k)
      if (touches(source(in, k), in.width, s)) return true;
    return accumulates(in.op) && touches(in.d, in.width, s);
  }
  // Each source is d exactly or disjoint from it (FusedProgram::finalize's
  // rule, extended to registers that may share memory).
  bool operands_valid(const EwInstr& in) const {
    for (int k = 0; k < ew_num_sources(in.op); ++k) {
      const EwArg& x = source(in, k);
      if (!touches(x, in.width, {in.d.reg, in.d.col, in.width})) continue;
      if (x.reg != in.d.reg || x.col != in.d.col) return false;
    }
    return true;
  }

  // Commits rewritten code if every changed instruction is valid, then
  // deletes instruction `erase`.
  bool commit(std::vector<EwInstr>& code, const std::vector<int>& changed, int erase) {
    for (int i : changed)
      if (!operands_valid(code[i])) return false;
    code.erase(code.begin() + erase);
    code_ = std::move(code);
    return true;
  }

  // copy t <- s at p, t a Temp: the reads of the copied columns until t is
  // overwritten read s instead, if s is not written meanwhile and nothing
  // accumulates into the copied columns.
  bool propagate_copy(int p) {
    const EwInstr cp = code_[p];
    const int w = cp.width;
    const Span t{cp.d.reg, cp.d.col, w}, s{cp.a.reg, cp.a.col, w};
    if (kind(t.reg) != RegKind::Temp) return false;
    if (t.reg == s.reg && t.col == s.col) {  // copies a Temp onto itself
      code_.erase(code_.begin() + p);
      ++stats_.copies_propagated;
      return true;
    }
    std::vector<char> holding(w, 1);  // t column still holds the copied value
    int nholding = w;
    // How many of the columns x[0, width) of t hold the copied value.
    auto held = [&](const EwArg& x, int width) {
      int n = 0;
      if (x.reg != t.reg) return 0;
      for (int c = std::max(x.col, t.col); c < std::min(x.col + width, t.col + w); ++c)
        n += holding[c - t.col];
      return n;
    };
    bool clobbered = false;  // s was written since the copy
    std::vector<Use> uses;
    for (int q = p + 1; q < size() && nholding > 0; ++q) {
      const EwInstr& in = code_[q];
      for (int k = 0; k < ew_num_sources(in.op); ++k) {
        const int n = held(source(in, k), in.width);
        if (n == 0) continue;
        if (n != in.width || clobbered) return false;
        uses.push_back({q, k});
      }
      if (in.d.reg == t.reg && held(in.d, in.width) > 0) {
        if (accumulates(in.op)) return false;  // updates the copy in place: t is needed
        for (int c = std::max(in.d.col, t.col); c < std::min(in.d.col + in.width, t.col + w); ++c)
          if (holding[c - t.col]) holding[c - t.col] = 0, --nholding;
      }
      if (writes(in, s)) clobbered = true;
    }
    std::vector<EwInstr> code = code_;
    std::vector<int> changed;
    for (const auto& [q, k] : uses) {
      EwArg& x = source(code[q], k);
      x = {s.reg, s.col + (x.col - t.col)};
      changed.push_back(q);
    }
    if (!commit(code, changed, p)) return false;
    ++stats_.copies_propagated;
    return true;
  }

  // copy D <- t at q, t a Temp: the instructions whose results t[cols] holds
  // at q (R) write D instead, and every read of a value they produced reads
  // D, if D is untouched from the first of them to q and, for reads after q,
  // not written again before them.
  bool forward_copy(int q) {
    const EwInstr cp = code_[q];
    const int w = cp.width;
    const Span dst{cp.d.reg, cp.d.col, w}, t{cp.a.reg, cp.a.col, w};
    if (kind(t.reg) != RegKind::Temp || dst.reg == t.reg) return false;
    // R, backwards from q: per column, the last plain write and the
    // accumulations after it. R writes nothing outside t[cols].
    std::vector<char> open(w, 1), in_r(size(), 0);
    int nopen = w, first = q;
    for (int i = q - 1; i >= 0 && nopen > 0; --i) {
      const EwInstr& in = code_[i];
      if (in.d.reg != t.reg) continue;
      const int c0 = std::max(in.d.col, t.col), c1 = std::min(in.d.col + in.width, t.col + w);
      int n = 0;
      for (int c = c0; c < c1; ++c) n += open[c - t.col];
      if (n == 0) continue;
      if (in.d.col < t.col || in.d.col + in.width > t.col + w) return false;
      if (accumulates(in.op)) {
        if (n != in.width) return false;  // would read D where an earlier value is not
      } else {
        for (int c = c0; c < c1; ++c)
          if (open[c - t.col]) open[c - t.col] = 0, --nopen;
      }
      in_r[i] = 1;
      first = i;
    }
    if (nopen > 0) return false;
    for (int i = first; i < q; ++i)
      if (reads(code_[i], dst) || writes(code_[i], dst)) return false;
    // Reads of t whose columns all come from R read D; partly from R: give up.
    std::vector<int> last(w, -1);  // last writer of each column of t[cols]
    auto from_r = [&](const EwArg& x, int width) {
      if (x.reg != t.reg) return 0;
      int n = 0;
      for (int c = std::max(x.col, t.col); c < std::min(x.col + width, t.col + w); ++c)
        n += last[c - t.col] >= 0 && in_r[last[c - t.col]];
      return n == 0 ? 0 : n == width ? 1 : -1;
    };
    std::vector<Use> uses;
    bool dst_written = false;  // D written after q
    for (int i = 0; i < size(); ++i) {
      const EwInstr& in = code_[i];
      if (i != q) {
        for (int k = 0; k < ew_num_sources(in.op); ++k) {
          const int st = from_r(source(in, k), in.width);
          if (st < 0 || (st == 1 && dst_written)) return false;
          if (st == 1) uses.push_back({i, k});
        }
        // An accumulation into R's values must itself be in R.
        if (accumulates(in.op) && from_r(in.d, in.width) != (in_r[i] ? 1 : 0)) return false;
      }
      if (in.d.reg == t.reg)
        for (int c = std::max(in.d.col, t.col); c < std::min(in.d.col + in.width, t.col + w); ++c)
          last[c - t.col] = i;
      if (i > q && writes(in, dst)) dst_written = true;
    }
    std::vector<EwInstr> code = code_;
    std::vector<int> changed;
    auto to_dst = [&](const EwArg& x) { return EwArg{dst.reg, dst.col + (x.col - t.col)}; };
    for (int i = first; i < q; ++i)
      if (in_r[i]) {
        code[i].d = to_dst(code[i].d);
        changed.push_back(i);
      }
    for (const auto& [i, k] : uses) {
      source(code[i], k) = to_dst(source(code[i], k));
      changed.push_back(i);
    }
    if (!commit(code, changed, q)) return false;
    ++stats_.copies_forwarded;
    return true;
  }

  // Drops instructions that write only Temp columns nobody reads later.
  bool remove_dead() {
    std::vector<std::vector<char>> live(p_.regs.size());
    for (std::size_t r = 0; r < p_.regs.size(); ++r) live[r].assign(p_.regs[r].width, 0);
    std::vector<char> dead(size(), 0);
    bool any = false;
    auto mark = [&](const EwArg& x, int w, char v) {
      if (kind(x.reg) == RegKind::Temp) std::fill_n(live[x.reg].begin() + x.col, w, v);
    };
    for (int i = size() - 1; i >= 0; --i) {
      const EwInstr& in = code_[i];
      if (kind(in.d.reg) == RegKind::Temp) {
        const auto b = live[in.d.reg].begin() + in.d.col;
        if (std::none_of(b, b + in.width, [](char v) { return v != 0; })) {
          dead[i] = 1;
          any = true;
          continue;
        }
        if (!accumulates(in.op)) mark(in.d, in.width, 0);
      }
      for (int k = 0; k < ew_num_sources(in.op); ++k) mark(source(in, k), in.width, 1);
      if (accumulates(in.op)) mark(in.d, in.width, 1);
    }
    if (!any) return false;
    std::vector<EwInstr> kept;
    for (int i = 0; i < size(); ++i)
      if (!dead[i]) kept.push_back(code_[i]);
    stats_.dead_removed += size() - static_cast<int>(kept.size());
    code_ = std::move(kept);
    return true;
  }

  // Replaces the Temp registers by one: each gets the lowest columns not held
  // by a register live (first to last instruction naming it) at the same time.
  void pack_scratch() {
    const int nregs = static_cast<int>(p_.regs.size());
    std::vector<int> first(nregs, INT_MAX), last(nregs, -1);
    auto each_operand = [&](EwInstr& in, auto&& f) {
      f(in.d);
      for (int k = 0; k < ew_num_sources(in.op); ++k) f(source(in, k));
    };
    for (int i = 0; i < static_cast<int>(p_.code.size()); ++i)
      each_operand(p_.code[i], [&](EwArg& x) {
        first[x.reg] = std::min(first[x.reg], i);
        last[x.reg] = std::max(last[x.reg], i);
      });
    std::vector<int> temps;
    for (int r = 0; r < nregs; ++r)
      if (kind(r) == RegKind::Temp && last[r] >= 0) temps.push_back(r);
    std::stable_sort(temps.begin(), temps.end(), [&](int a, int b) { return first[a] < first[b]; });
    struct Block {
      int col, width, last;
    };
    std::vector<Block> held;
    std::vector<int> offset(nregs, -1);
    int pool = 0;
    for (int r : temps) {
      held.erase(std::remove_if(held.begin(), held.end(),
                                [&](const Block& b) { return b.last < first[r]; }),
                 held.end());
      const int w = p_.regs[r].width;
      std::vector<int> cand{0};
      for (const Block& b : held) cand.push_back(b.col + b.width);
      std::sort(cand.begin(), cand.end());
      for (int c : cand)
        if (std::none_of(held.begin(), held.end(),
                         [&](const Block& b) { return overlap(c, w, b.col, b.width); })) {
          offset[r] = c;
          break;
        }
      held.push_back({offset[r], w, last[r]});
      pool = std::max(pool, offset[r] + w);
    }
    // Inputs and Outputs keep their order; the scratch register comes last.
    std::vector<EwReg> regs;
    std::vector<int> renum(nregs, -1);
    for (int r = 0; r < nregs; ++r)
      if (kind(r) != RegKind::Temp) {
        renum[r] = static_cast<int>(regs.size());
        regs.push_back(p_.regs[r]);
      }
    const int scratch = static_cast<int>(regs.size());
    if (!temps.empty()) regs.push_back(EwReg{RegKind::Temp, pool, -1});
    for (EwInstr& in : p_.code) {
      const int srcs = ew_num_sources(in.op);
      if (srcs < 2) in.b = EwArg{};
      if (srcs < 1) in.a = EwArg{};
      each_operand(in, [&](EwArg& x) {
        x = offset[x.reg] >= 0 ? EwArg{scratch, offset[x.reg] + x.col} : EwArg{renum[x.reg], x.col};
      });
    }
    p_.regs = std::move(regs);
  }

  FusedProgram& p_;
  std::vector<EwInstr> code_;
  FusedOptimizeStats& stats_;
  std::vector<char> shared_;  // per register: an Output only accumulated into
};

}  // namespace

FusedOptimizeStats optimize_fused(FusedProgram& prog) {
  prog.finalize();  // validates every operand before the pass relies on them
  FusedOptimizeStats stats;
  stats.scratch_before = prog.scratch_width;
  Optimizer opt(prog, stats);
  if (opt.reads_unwritten_scratch()) {
    stats.skipped = true;
  } else {
    opt.run();
    prog.finalize();
  }
  stats.scratch_after = prog.scratch_width;
  return stats;
}

}  // namespace copse::ops
