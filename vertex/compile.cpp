// compile(): VertexFunction -> ExecPlan (classification, fusion, layout, grad modes).
#include <algorithm>
#include <map>
#include <queue>
#include <tuple>
#include <set>

#include <fmt/format.h>

#include "common/error.h"
#include "vertex/fusion.h"
#include "vertex/plan.h"
#include "vertex/strided_views.h"

namespace copse::vertex {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::Hoisted: return "hoisted";
    case Phase::Level: return "level";
    case Phase::Output: return "output";
  }
  return "?";
}

const char* step_kind_name(StepKind k) {
  switch (k) {
    case StepKind::Pull: return "pull";
    case StepKind::Gather: return "gather";
    case StepKind::EdgeChild: return "edge_child";
    case StepKind::EdgeParent: return "edge_parent";
    case StepKind::ReduceEdges: return "reduce_edges";
    case StepKind::MatMul: return "gemm";
    case StepKind::Fused: return "fused";
    case StepKind::Copy: return "copy";
  }
  return "?";
}

int ExecPlan::num_gemm_steps(Phase p) const {
  int c = 0;
  for (const auto& s : steps) c += (s.kind == StepKind::MatMul && s.phase == p);
  return c;
}

namespace {

bool is_source(Op op) {
  return op == Op::Gather || op == Op::EdgeChild || op == Op::EdgeParent || op == Op::ReduceEdges;
}

class Compiler {
 public:
  Compiler(const VertexFunction& fn, const CompileOptions& opts) : fn_(fn), opts_(opts) {
    p_.fn = fn;
    n_ = static_cast<int>(fn.nodes.size());
  }

  ExecPlan run() {
    classify();
    form_regions();
    materialize();
    place_values();
    schedule();
    viewed_base_ = opts_.strided_views ? mark_strided_views(p_)
                                       : std::vector<char>(p_.values.size(), 0);
    decide_grad_modes();
    for (size_t r = 0; r < p_.regions.size(); ++r)
      build_region_programs(p_.regions[r], fn_, p_, r, opts_.optimize_programs);
    build_view_programs();
    if (opts_.optimize_programs) find_bias_aliases();
    return std::move(p_);
  }

 private:
  const Node& node(int i) const { return fn_.nodes[i]; }

  // Hoisted: depends only on pulls and parameters. Level: needed by a scatter
  // (or a per-level source). Output: depends on children but feeds pushes only.
  void classify() {
    std::vector<int> rec(n_, 0);
    for (int i = 0; i < n_; ++i) {
      const Node& nd = node(i);
      if (is_source(nd.op) || nd.domain == Domain::Edge) rec[i] = 1;
      for (int j : nd.in) rec[i] |= rec[j];
    }
    std::vector<char> loop(n_, 0);
    std::vector<int> stack;
    for (const auto& s : fn_.states) stack.push_back(s.value);
    for (int i = 0; i < n_; ++i)
      if (is_source(node(i).op) || node(i).domain == Domain::Edge) stack.push_back(i);
    while (!stack.empty()) {
      int i = stack.back();
      stack.pop_back();
      if (!rec[i] || loop[i]) continue;
      loop[i] = 1;
      for (int j : node(i).in) stack.push_back(j);
    }
    p_.node_phase.assign(n_, Phase::Hoisted);
    for (int i = 0; i < n_; ++i)
      if (rec[i]) p_.node_phase[i] = loop[i] ? Phase::Level : Phase::Output;
  }

  // Greedy convex fusion: an elementwise node joins the region of one of its
  // inputs unless another input depends on that region through a node outside
  // it (which would make the region run before its own input).
  void form_regions() {
    p_.node_region.assign(n_, -1);
    view_.assign(n_, 0);
    std::vector<std::set<int>> dep(n_);
    for (int i = 0; i < n_; ++i) {
      const Node& nd = node(i);
      for (int j : nd.in) {
        dep[i].insert(dep[j].begin(), dep[j].end());
        if (p_.node_region[j] >= 0) dep[i].insert(p_.node_region[j]);
      }
      if (!is_elementwise(nd.op)) continue;
      if (nd.op == Op::Slice && p_.node_region[nd.in[0]] < 0) {
        view_[i] = 1;  // a column view of a materialized value
        continue;
      }
      int chosen = -1;
      for (int j : nd.in) {
        int r = p_.node_region[j];
        if (r < 0 || (!opts_.fuse && nd.op != Op::Slice)) continue;
        const Region& reg = p_.regions[r];
        if (reg.phase != p_.node_phase[i] || reg.domain != nd.domain) continue;
        bool ok = true;
        for (int m : nd.in)
          if (p_.node_region[m] != r && dep[m].count(r)) ok = false;
        if (ok) {
          chosen = r;
          break;
        }
      }
      if (chosen < 0) {
        if (nd.op == Op::Slice) {  // slice of another region's node: a view of its output
          view_[i] = 1;
          continue;
        }
        chosen = static_cast<int>(p_.regions.size());
        Region reg;
        reg.phase = p_.node_phase[i];
        reg.domain = nd.domain;
        p_.regions.push_back(reg);
      }
      p_.node_region[i] = chosen;
      p_.regions[chosen].nodes.push_back(i);
      dep[i].insert(chosen);
    }
  }

  void materialize() {
    mat_.assign(n_, 0);
    for (int i = 0; i < n_; ++i) {
      const Node& nd = node(i);
      if (nd.op == Op::ParamRow) continue;
      if (!is_elementwise(nd.op) || view_[i]) mat_[i] = 1;
      for (int j : nd.in)
        if (p_.node_region[j] >= 0 && p_.node_region[j] != p_.node_region[i]) mat_[j] = 1;
    }
    for (const auto& s : fn_.states) mat_[s.value] = 1;
    for (const auto& o : fn_.outputs) mat_[o.value] = 1;
    for (auto& reg : p_.regions) {
      std::set<int> seen;
      for (int i : reg.nodes) {
        for (int j : node(i).in)
          if (p_.node_region[j] != p_.node_region[i] && seen.insert(j).second)
            reg.inputs.push_back(j);
        if (mat_[i]) reg.outputs.push_back(i);
      }
    }
  }

  int new_buffer(Domain d, int width, std::string name) {
    p_.buffers.push_back({d, width, std::move(name)});
    return static_cast<int>(p_.buffers.size()) - 1;
  }

  void place(int i, int buf, int col) {
    PlanValue v;
    v.node = i;
    v.buf = buf;
    v.col = col;
    v.width = node(i).width;
    v.base = static_cast<int>(p_.values.size());
    p_.node_value[i] = v.base;
    p_.values.push_back(v);
  }

  std::string value_name(int i) const {
    const Node& nd = node(i);
    return nd.name.empty() ? fmt::format("%{}.{}", i, op_name(nd.op))
                           : fmt::format("%{}.{}.{}", i, op_name(nd.op), nd.name);
  }

  // Lays the inputs of every GEMM side by side (one GEMM for all of them),
  // then gives every other materialized value a buffer of its own.
  void place_values() {
    p_.node_value.assign(n_, -1);
    // Linears over the same inputs in the same phase and domain: one GEMM.
    std::map<std::tuple<std::vector<int>, int, int>, std::vector<int>> groups;
    std::vector<int> group_leader(n_, -1);
    for (int m = 0; m < n_; ++m) {
      const Node& nd = node(m);
      if (nd.op != Op::MatMul) continue;
      auto& g = groups[{nd.in, static_cast<int>(p_.node_phase[m]), static_cast<int>(nd.domain)}];
      if (!opts_.merge_gemms && !g.empty()) {
        group_leader[m] = m;
        continue;
      }
      g.push_back(m);
      group_leader[m] = g.front();
    }
    std::map<int, std::vector<int>> members;  // leader -> group
    for (const auto& [key, g] : groups) members[g.front()] = g;
    for (int m = 0; m < n_; ++m)
      if (group_leader[m] == m && !members.count(m)) members[m] = {m};
    for (int m = 0; m < n_; ++m) {
      const Node& nd = node(m);
      if (nd.op != Op::MatMul || group_leader[m] != m) continue;
      const std::vector<int>& group = members.at(m);
      std::vector<int> group_params;
      int out_width = 0;
      for (int g : group) {
        group_params.push_back(fn_.find_param(node(g).name));
        out_width += node(g).width;
      }
      if (group.size() > 1) {
        int buf = new_buffer(nd.domain, out_width, fmt::format("{}.merged", nd.name));
        int col = 0;
        for (int g : group) {
          place(g, buf, col);
          col += node(g).width;
        }
        p_.param_groups.push_back(group_params);
      }
      // Runs of inputs executed in the same phase form the parts of the GEMM.
      std::vector<std::vector<int>> runs;
      std::vector<Phase> run_phase;
      for (int j : nd.in) {
        Phase ph = p_.node_phase[m];
        if (ph == Phase::Level && p_.node_phase[j] == Phase::Hoisted) ph = Phase::Hoisted;
        if (runs.empty() || run_phase.back() != ph) {
          runs.emplace_back();
          run_phase.push_back(ph);
        }
        runs.back().push_back(j);
      }
      // The part that runs first (earliest phase) writes M; the others add.
      size_t first_run = 0;
      for (size_t r = 1; r < runs.size(); ++r)
        if (run_phase[r] < run_phase[first_run]) first_run = r;
      int w_col = 0;
      for (size_t r = 0; r < runs.size(); ++r) {
        Step s;
        s.kind = StepKind::MatMul;
        s.phase = run_phase[r];
        s.domain = nd.domain;
        s.node = m;
        s.param = fn_.find_param(nd.name);
        s.mm_nodes = group;
        s.mm_params = group_params;
        s.out_width = out_width;
        s.w_col = w_col;
        s.part_inputs = runs[r];
        for (int j : runs[r]) s.k += node(j).width;
        w_col += s.k;
        s.first_part = (r == first_run);
        const auto& in = runs[r];
        std::set<int> distinct(in.begin(), in.end());
        bool all_free = distinct.size() == in.size();
        for (int j : in) all_free = all_free && p_.node_value[j] < 0 && !view_[j];
        if (in.size() == 1 && (view_[in[0]] || p_.node_value[in[0]] >= 0 || all_free)) {
          // Single input: read it where it lives (placed below if not yet).
          s.in_buf = -2 - in[0];  // resolved after every value is placed
        } else if (all_free) {
          s.in_buf = new_buffer(nd.domain, s.k, fmt::format("{}.in{}", nd.name, r));
          int col = 0;
          for (int j : in) {
            place(j, s.in_buf, col);
            col += node(j).width;
          }
        } else {
          s.in_buf = new_buffer(nd.domain, s.k, fmt::format("{}.in{}.copy", nd.name, r));
          int col = 0;
          for (int j : in) {
            Step c;
            c.kind = StepKind::Copy;
            c.phase = s.phase;
            c.domain = nd.domain;
            c.node = j;
            c.in_buf = s.in_buf;
            c.in_col = col;
            copies_.push_back(c);
            col += node(j).width;
          }
        }
        matmul_parts_.push_back(s);
      }
    }
    for (int i = 0; i < n_; ++i) {
      if (!mat_[i] || view_[i] || p_.node_value[i] >= 0) continue;
      place(i, new_buffer(node(i).domain, node(i).width, value_name(i)), 0);
    }
    for (int i = 0; i < n_; ++i) {
      if (!view_[i]) continue;
      const PlanValue& src = p_.values.at(p_.node_value[node(i).in[0]]);
      PlanValue v;
      v.node = i;
      v.buf = src.buf;
      v.col = src.col + node(i).offset;
      v.width = node(i).width;
      v.base = src.base;
      p_.node_value[i] = static_cast<int>(p_.values.size());
      p_.values.push_back(v);
    }
    for (auto& s : matmul_parts_) {
      if (s.in_buf <= -2) {
        const PlanValue& v = p_.values.at(p_.node_value[-2 - s.in_buf]);
        s.in_buf = v.buf;
        s.in_col = v.col;
      }
    }
  }

  // Orders the steps topologically: hoisted first, then level, then output.
  void schedule() {
    std::vector<Step> items;
    std::vector<int> producer_steps_begin(n_, -1);
    std::multimap<int, int> producers;  // node -> step index producing it
    for (int i = 0; i < n_; ++i) {
      const Node& nd = node(i);
      if (view_[i] || nd.op == Op::ParamRow || nd.op == Op::MatMul || is_elementwise(nd.op))
        continue;
      Step s;
      s.phase = p_.node_phase[i];
      s.domain = nd.domain;
      s.node = i;
      switch (nd.op) {
        case Op::Pull: s.kind = StepKind::Pull; break;
        case Op::Gather: s.kind = StepKind::Gather; break;
        case Op::EdgeChild: s.kind = StepKind::EdgeChild; break;
        case Op::EdgeParent: s.kind = StepKind::EdgeParent; break;
        case Op::ReduceEdges: s.kind = StepKind::ReduceEdges; break;
        default: COPSE_ASSERT(false);
      }
      producers.emplace(i, static_cast<int>(items.size()));
      items.push_back(s);
    }
    for (const auto& s : matmul_parts_) {
      for (int g : s.mm_nodes) producers.emplace(g, static_cast<int>(items.size()));
      items.push_back(s);
    }
    for (size_t r = 0; r < p_.regions.size(); ++r) {
      Step s;
      s.kind = StepKind::Fused;
      s.phase = p_.regions[r].phase;
      s.domain = p_.regions[r].domain;
      s.region = static_cast<int>(r);
      s.node = p_.regions[r].nodes.front();
      for (int i : p_.regions[r].nodes) producers.emplace(i, static_cast<int>(items.size()));
      items.push_back(s);
    }
    size_t first_copy = items.size();
    for (const auto& c : copies_) items.push_back(c);

    auto base_node = [&](int i) {
      while (view_[i]) i = node(i).in[0];
      return i;
    };
    const int m = static_cast<int>(items.size());
    std::vector<std::set<int>> deps(m);
    auto depend_on_node = [&](int s, int i) {
      i = base_node(i);
      auto range = producers.equal_range(i);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second != s) deps[s].insert(it->second);
    };
    for (int s = 0; s < m; ++s) {
      const Step& st = items[s];
      switch (st.kind) {
        case StepKind::Gather:
        case StepKind::EdgeChild:
          break;  // reads rows of earlier levels only
        case StepKind::MatMul:
          for (int j : st.part_inputs) depend_on_node(s, j);
          for (size_t c = first_copy; c < items.size(); ++c)
            if (items[c].in_buf == st.in_buf) deps[s].insert(static_cast<int>(c));
          // The part that writes M comes first (it runs in the earliest
          // phase, wherever its inputs stand in the list); the parts that add
          // follow it, in list order within a phase.
          for (int t = 0; t < m; ++t) {
            const Step& o = items[t];
            if (t == s || st.first_part || o.kind != StepKind::MatMul || o.node != st.node)
              continue;
            if (o.first_part || (t < s && o.phase == st.phase)) deps[s].insert(t);
          }
          break;
        case StepKind::Fused:
          for (int j : p_.regions[st.region].inputs)
            if (node(j).op != Op::ParamRow) depend_on_node(s, j);
          break;
        case StepKind::Copy:
          depend_on_node(s, st.node);
          break;
        default:
          for (int j : node(st.node).in) depend_on_node(s, j);
      }
    }
    std::vector<int> indeg(m, 0);
    std::vector<std::vector<int>> users(m);
    for (int s = 0; s < m; ++s)
      for (int d : deps[s]) {
        ++indeg[s];
        users[d].push_back(s);
      }
    using Key = std::tuple<int, int, int>;
    std::priority_queue<Key, std::vector<Key>, std::greater<Key>> ready;
    for (int s = 0; s < m; ++s)
      if (!indeg[s]) ready.emplace(static_cast<int>(items[s].phase), items[s].node, s);
    while (!ready.empty()) {
      auto [ph, nd, s] = ready.top();
      ready.pop();
      p_.steps.push_back(items[s]);
      for (int u : users[s])
        if (--indeg[u] == 0) ready.emplace(static_cast<int>(items[u].phase), items[u].node, u);
    }
    if (static_cast<int>(p_.steps.size()) != m)
      throw InternalError(fmt::format("{}: cyclic step schedule", fn_.name));
    for (size_t s = 1; s < p_.steps.size(); ++s)
      if (p_.steps[s].phase < p_.steps[s - 1].phase)
        throw InternalError(fmt::format("{}: step phases out of order", fn_.name));
  }

  // Region::bias_grad_from. After optimization a bias row added to a GEMM
  // output leaves `copy d(bias rows) <- d(GEMM output)` as the only write of
  // the bias output (and the GEMM output's gradient is final there). When
  // that holds in bwd and in bwd_views, for the same input, and that input's
  // gradient is overwritten by the region (not accumulated, not a gather
  // whose gradient a view could add into), the copy is dropped.
  void find_bias_aliases() {
    using ops::EwOp;
    using ops::FusedProgram;
    using ops::RegKind;
    // The input whose gradient output `prog` copies whole into input k's
    // output as that output's only write, with nothing writing either after; or -1.
    auto alias_in = [](const FusedProgram& prog, int k) -> int {
      int out_k = -1;
      for (size_t r = 0; r < prog.regs.size(); ++r)
        if (prog.regs[r].kind == RegKind::Output && prog.regs[r].ext == k) out_k = static_cast<int>(r);
      if (out_k < 0) return -1;
      int at = -1;
      for (size_t i = 0; i < prog.code.size(); ++i) {
        if (prog.code[i].d.reg != out_k) continue;
        if (at >= 0) return -1;  // written twice
        at = static_cast<int>(i);
      }
      if (at < 0) return -1;
      const ops::EwInstr& c = prog.code[at];
      const int w = prog.regs[out_k].width;
      if (c.op != EwOp::Copy || c.width != w || c.d.col != 0 || c.a.col != 0) return -1;
      const ops::EwReg& src = prog.regs[c.a.reg];
      if (src.kind != RegKind::Output || src.width != w || src.ext == k) return -1;
      for (size_t i = at + 1; i < prog.code.size(); ++i)
        if (prog.code[i].d.reg == c.a.reg) return -1;
      return src.ext;
    };
    auto drop_copy_into = [](FusedProgram& prog, int k) {
      for (size_t i = 0; i < prog.code.size(); ++i) {
        const auto& reg = prog.regs[prog.code[i].d.reg];
        if (reg.kind == RegKind::Output && reg.ext == k) {
          prog.code.erase(prog.code.begin() + static_cast<long>(i));
          prog.finalize();
          return;
        }
      }
    };
    for (Region& reg : p_.regions) {
      reg.bias_grad_from.assign(reg.inputs.size(), -1);
      for (size_t k = 0; k < reg.inputs.size(); ++k) {
        if (node(reg.inputs[k]).op != Op::ParamRow) continue;
        const int kk = static_cast<int>(k);
        const int from = alias_in(reg.bwd, kk);
        if (from < 0 || reg.input_grad_accumulate[from]) continue;
        const Op src_op = node(reg.inputs[from]).op;
        if (src_op == Op::ParamRow || src_op == Op::Gather || src_op == Op::EdgeChild) continue;
        if (!reg.bwd_views.code.empty() && alias_in(reg.bwd_views, kk) != from) continue;
        drop_copy_into(reg.bwd, kk);
        if (!reg.bwd_views.code.empty()) drop_copy_into(reg.bwd_views, kk);
        reg.bias_grad_from[k] = from;
      }
    }
  }

  // Region::bwd_views: the backward program with every input read through a
  // strided gather accumulating into its gradient (the children's rows).
  void build_view_programs() {
    for (size_t r = 0; r < p_.regions.size(); ++r) {
      Region& reg = p_.regions[r];
      Region with_views = reg;
      bool any = false;
      for (size_t k = 0; k < reg.inputs.size(); ++k) {
        const int v = p_.node_value[reg.inputs[k]];
        if (v >= 0 && viewed_base_[p_.values[v].base]) {
          with_views.input_grad_accumulate[k] = true;
          any = true;
        }
      }
      if (!any) continue;
      build_region_programs(with_views, fn_, p_, r, opts_.optimize_programs);
      reg.bwd_views = std::move(with_views.bwd);
    }
  }

  // Decides for every gradient buffer whether its contributions overwrite
  // (one writer per column, full rows) or accumulate into a zeroed buffer.
  void decide_grad_modes() {
    struct Contrib {
      int c0, c1;
      bool full;
    };
    std::vector<std::vector<Contrib>> contrib(p_.values.size());
    auto add = [&](int node_id, bool full) {
      const PlanValue& v = p_.values.at(p_.node_value.at(node_id));
      int c0 = v.col - p_.values[v.base].col;
      contrib[v.base].push_back({c0, c0 + v.width, full});
    };
    for (const auto& s : p_.steps) {
      switch (s.kind) {
        case StepKind::Fused:
          for (int j : p_.regions[s.region].inputs)
            if (node(j).op != Op::ParamRow) add(j, true);
          break;
        case StepKind::MatMul:
          for (int j : s.part_inputs) add(j, true);
          break;
        case StepKind::Copy:
          add(s.node, true);
          break;
        case StepKind::EdgeParent:
        case StepKind::ReduceEdges:
          add(node(s.node).in[0], true);
          break;
        case StepKind::Gather:
        case StepKind::EdgeChild:
          add(fn_.states[fn_.find_state(node(s.node).name)].value, false);
          break;
        case StepKind::Pull:
          break;
      }
    }
    std::vector<char> pushed(p_.values.size(), 0);
    for (const auto& o : fn_.outputs) {
      const PlanValue& v = p_.values.at(p_.node_value[o.value]);
      if (v.base == p_.node_value[o.value] && !pushed[v.base]) {
        pushed[v.base] = 1;
        p_.values[v.base].push_assign = true;
      } else {
        contrib[v.base].push_back({0, 0, false});  // forces zero fill
      }
    }
    for (size_t b = 0; b < p_.values.size(); ++b) {
      PlanValue& v = p_.values[b];
      if (v.base != static_cast<int>(b) || pushed[b]) continue;
      auto& cs = contrib[b];
      std::sort(cs.begin(), cs.end(), [](const Contrib& a, const Contrib& c) { return a.c0 < c.c0; });
      bool exclusive = true;
      int at = 0;
      for (const auto& c : cs) {
        if (!c.full || c.c0 != at) exclusive = false;
        at = c.c1;
      }
      if (at != v.width) exclusive = false;
      v.grad_zero_fill = !exclusive;
    }
    // One GEMM writes the gradients of all the inputs of its part: they must
    // agree on overwrite vs accumulate.
    auto accumulates = [&](int node_id) {
      const PlanValue& b = p_.values[p_.values[p_.node_value[node_id]].base];
      return b.grad_zero_fill || b.push_assign;
    };
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& s : p_.steps) {
        if (s.kind != StepKind::MatMul) continue;
        bool any = false;
        for (int j : s.part_inputs) any = any || accumulates(j);
        if (!any) continue;
        for (int j : s.part_inputs) {
          PlanValue& b = p_.values[p_.values[p_.node_value[j]].base];
          if (!b.grad_zero_fill && !b.push_assign) {
            b.grad_zero_fill = true;
            changed = true;
          }
        }
      }
    }
    for (auto& s : p_.steps) {
      if (s.kind == StepKind::MatMul) {
        bool copied = false;
        for (const auto& c : copies_) copied = copied || c.in_buf == s.in_buf;
        s.grad_accumulate = !copied && accumulates(s.part_inputs[0]);
      } else if (s.kind == StepKind::EdgeParent || s.kind == StepKind::ReduceEdges ||
                 s.kind == StepKind::Copy) {
        int j = s.kind == StepKind::Copy ? s.node : node(s.node).in[0];
        s.grad_accumulate = accumulates(j);
      }
    }
    for (auto& reg : p_.regions) {
      reg.input_grad_accumulate.clear();
      for (int j : reg.inputs)
        reg.input_grad_accumulate.push_back(node(j).op != Op::ParamRow && accumulates(j));
    }
    for (size_t b = 0; b < p_.values.size(); ++b)
      if (p_.values[b].grad_zero_fill) p_.zero_fill_values.push_back(static_cast<int>(b));
  }

  const VertexFunction& fn_;
  CompileOptions opts_;
  ExecPlan p_;
  int n_ = 0;
  std::vector<char> view_, mat_;
  std::vector<char> viewed_base_;  // per value: the base value of a Step::strided_view gather
  std::vector<Step> matmul_parts_, copies_;
};

}  // namespace

std::string ExecPlan::to_string() const {
  std::string s = fn.to_string();
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    s += fmt::format("  step {} [{}] {}", i, phase_name(st.phase), step_kind_name(st.kind));
    if (st.kind == StepKind::Fused) {
      s += fmt::format(" region {} nodes", st.region);
      for (int n : regions[st.region].nodes) s += fmt::format(" %{}", n);
    } else {
      s += fmt::format(" %{}", st.node);
    }
    if (st.kind == StepKind::MatMul) {
      s += fmt::format(" k={} in_buf={} w_col={}", st.k, st.in_buf, st.w_col);
      if (st.mm_nodes.size() > 1) s += fmt::format(" merged with {} others", st.mm_nodes.size() - 1);
      for (int j : st.part_inputs) s += fmt::format(" %{}", j);
    }
    s += "\n";
  }
  return s;
}

ExecPlan compile(const VertexFunction& fn, const CompileOptions& opts) {
  return Compiler(fn, opts).run();
}

}  // namespace copse::vertex
