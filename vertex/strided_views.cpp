// mark_strided_views: which gathers may be served by strided views (see
// strided_views.h and Step::strided_view).
#include "vertex/strided_views.h"

#include <algorithm>

namespace copse::vertex {

std::vector<char> mark_strided_views(ExecPlan& plan) {
  const auto& nodes = plan.fn.nodes;
  const int n = static_cast<int>(nodes.size());
  std::vector<char> viewed(plan.values.size(), 0);
  std::vector<std::vector<int>> readers(n);
  for (int i = 0; i < n; ++i)
    for (int j : nodes[i].in) readers[j].push_back(i);
  std::vector<char> state_or_output(n, 0);
  for (const auto& s : plan.fn.states) state_or_output[s.value] = 1;
  for (const auto& o : plan.fn.outputs) state_or_output[o.value] = 1;
  auto is_slice_view = [&](int i) {
    const int v = plan.node_value[i];
    return v >= 0 && plan.values[v].base != v;
  };
  auto copied_into = [&](int buf) {  // a Copy step fills this GEMM operand
    for (const Step& c : plan.steps)
      if (c.kind == StepKind::Copy && c.in_buf == buf) return true;
    return false;
  };
  for (Step& st : plan.steps) {
    if ((st.kind != StepKind::Gather && st.kind != StepKind::EdgeChild) || st.phase != Phase::Level)
      continue;
    const int gv = plan.node_value[st.node];
    bool ok = true;
    for (const PlanValue& v : plan.values)  // alone in its buffer (not in a GEMM operand block)
      ok = ok && (v.buf != plan.values[gv].buf || v.base == gv);
    std::vector<int> stack{st.node};
    while (ok && !stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      if (state_or_output[i]) ok = false;
      for (int m : readers[i]) {
        if (is_slice_view(m)) {
          stack.push_back(m);
        } else if (plan.node_region[m] >= 0) {
          ok = ok && plan.regions[plan.node_region[m]].phase == Phase::Level;
        } else if (nodes[m].op == Op::ReduceEdges) {
          ok = ok && plan.node_phase[m] == Phase::Level;
        } else if (nodes[m].op == Op::MatMul) {
          for (const Step& mm : plan.steps) {
            if (mm.kind != StepKind::MatMul || mm.node != m ||
                std::find(mm.part_inputs.begin(), mm.part_inputs.end(), i) == mm.part_inputs.end())
              continue;
            ok = ok && mm.phase == Phase::Level &&
                 (mm.part_inputs.size() == 1 || copied_into(mm.in_buf));
          }
        } else {
          ok = false;  // an edge_parent reads it by index
        }
      }
    }
    st.strided_view = ok;
    if (ok) viewed[gv] = 1;
  }
  return viewed;
}

}  // namespace copse::vertex
