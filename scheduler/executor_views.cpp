// Executor, strided views: on a level where a gather's children form a
// StridedRun its consumers read (and add their gradients into) the children's
// rows in place; the helpers that point them there (see executor.h and
// vertex::Step::strided_view).
#include "scheduler/executor.h"
#include "scheduler/executor_timer.h"

namespace copse::scheduler {

using vertex::Domain;
using vertex::Step;
using vertex::StepKind;

template <typename T>
StridedRun Executor<T>::run_of(int vi, int level) const {
  const Step& s = plan_.steps[view_steps_[vi]];
  if (s.kind == StepKind::Gather) return batch_->run_of_slot(level, plan_.fn.nodes[s.node].slot);
  return batch_->edge_run[level];
}

// Turns on, for this level, the view of every strided gather whose children
// form a run: row r of the level reads source row start + (r - row0) * stride.
template <typename T>
void Executor<T>::set_level_views(int level) {
  const int V = static_cast<int>(view_steps_.size());
  for (int vi = 0; vi < V; ++vi) {
    const Step& s = plan_.steps[view_steps_[vi]];
    const StridedRun run = run_of(vi, level);
    LevelView& lv = level_view_[vi];
    lv.on = run.found();
    if (!lv.on) continue;
    const int sv = plan_.node_value[source_of_node_[s.node]];
    lv.val = value_ptr(sv, run.start);
    lv.grad = opts_.training ? grad_ptr(sv, run.start) : nullptr;
    lv.ld = run.stride * ld_of(sv);
    lv.row0 = rows_of(s.domain, level).begin;
  }
}

template <typename T>
void Executor<T>::clear_level_views() {
  for (LevelView& lv : level_view_) lv.on = false;
}

template <typename T>
const typename Executor<T>::LevelView* Executor<T>::view_of(int value) const {
  const int vi = view_of_value_[value];
  return vi >= 0 && level_view_[vi].on ? &level_view_[vi] : nullptr;
}

template <typename T>
T* Executor<T>::in_ptr(int node, int row) const {
  const int v = plan_.node_value[node];
  const LevelView* lv = view_of(v);
  if (!lv) return value_ptr(v, row);
  const auto& pv = plan_.values[v];
  return lv->val + (row - lv->row0) * lv->ld + (pv.col - plan_.values[pv.base].col);
}

template <typename T>
T* Executor<T>::in_grad_ptr(int node, int row) const {
  const int v = plan_.node_value[node];
  const LevelView* lv = view_of(v);
  if (!lv) return grad_ptr(v, row);
  const auto& pv = plan_.values[v];
  return lv->grad + (row - lv->row0) * lv->ld + (pv.col - plan_.values[pv.base].col);
}

template <typename T>
long Executor<T>::in_ld(int node) const {
  const int v = plan_.node_value[node];
  const LevelView* lv = view_of(v);
  return lv ? lv->ld : ld_of(v);
}

// Zeroes the gradient of a strided gather on the levels where it was not
// viewed (on the others its consumers wrote the children's rows instead).
template <typename T>
void Executor<T>::fill_grad_outside_views(int value) {
  const int vi = view_of_value_[value];
  const int V = static_cast<int>(view_steps_.size());
  const Domain d = plan_.steps[view_steps_[vi]].domain;
  const auto& pv = plan_.values[value];
  int begin = 0, end = 0;  // pending rows
  for (int l = 0; l <= batch_->num_levels; ++l) {
    const bool viewed = l < batch_->num_levels && viewed_[static_cast<size_t>(l) * V + vi];
    if (l < batch_->num_levels && !viewed) {
      Range r = rows_of(d, l);
      if (end != r.begin) begin = r.begin;
      end = r.end;
      continue;
    }
    fill(end - begin, pv.width, grad_ptr(value, begin), ld_of(value));
    begin = end = 0;
  }
}

// The operand X of a lazy weight gradient over rows [a.begin, a.end) as
// spans of contiguous memory. X is the part's buffer, except on the levels
// where a strided gather was viewed: there it is the children's rows. Each
// extra span costs one more pass over dW[:, part] ([out, k]); gathering the
// viewed rows into the buffer after all costs [viewed rows, k], so whichever
// is smaller is done (one span for a batch of equal-length chains).
template <typename T>
void Executor<T>::lazy_operand_spans(const Step& s, Range a, std::vector<Span>& spans) {
  spans.clear();
  const long ldx = plan_.buffers[s.in_buf].width;
  const T* xb = buf_[s.in_buf] + s.in_col;
  const int x0 = s.part_inputs.size() == 1 ? s.part_inputs[0] : -1;
  const int vi = x0 >= 0 ? view_of_value_[plan_.node_value[x0]] : -1;
  if (vi < 0 || rematerialized_[vi]) {
    spans.push_back({a.begin, a.end, xb + static_cast<long>(a.begin) * ldx, ldx});
    return;
  }
  const int V = static_cast<int>(view_steps_.size());
  const Step& g = plan_.steps[view_steps_[vi]];
  const int sv = plan_.node_value[source_of_node_[g.node]];
  const auto& xv = plan_.values[plan_.node_value[x0]];
  const int col = xv.col - plan_.values[xv.base].col;
  long viewed_rows = 0;
  for (int l = 0; l < batch_->num_levels; ++l) {
    const Range r = rows_of(s.domain, l);
    if (r.end <= a.begin || r.begin >= a.end || r.begin == r.end) continue;
    Span sp{r.begin, r.end, xb + static_cast<long>(r.begin) * ldx, ldx};
    if (viewed_[static_cast<size_t>(l) * V + vi]) {
      const StridedRun run = run_of(vi, l);
      sp.x = value_ptr(sv, run.start) + col;
      sp.ld = run.stride * ld_of(sv);
      viewed_rows += r.end - r.begin;
    }
    if (!spans.empty()) {
      Span& last = spans.back();
      if (last.end == sp.begin && last.ld == sp.ld &&
          last.x + static_cast<long>(last.end - last.begin) * last.ld == sp.x) {
        last.end = sp.end;
        continue;
      }
    }
    spans.push_back(sp);
  }
  if (static_cast<long>(spans.size() - 1) * s.out_width <= viewed_rows) return;
  // Gather the viewed gather's rows once over [a.begin, a.end) into its buffer.
  const auto& gn = plan_.fn.nodes[g.node];
  const int* idx =
      g.kind == StepKind::Gather ? dix_.slot[gn.slot] : dix_.edge_child;  // backend memory
  const int gv = plan_.node_value[g.node];
  {
    Timer t(be_, opts_.profile, &stats_.t_gather);
    ++stats_.gather_calls;
    ++stats_.view_rematerialized;
    be_.gather_rows(a.end - a.begin, gn.width, value_ptr(sv, 0), ld_of(sv), idx + a.begin,
                    value_ptr(gv, a.begin), ld_of(gv));
  }
  rematerialized_[vi] = 1;
  spans.assign(1, {a.begin, a.end, xb + static_cast<long>(a.begin) * ldx, ldx});
}

#define COPSE_INSTANTIATE_VIEWS(T)                                        \
  template StridedRun Executor<T>::run_of(int, int) const;                \
  template void Executor<T>::set_level_views(int);                        \
  template void Executor<T>::clear_level_views();                         \
  template const Executor<T>::LevelView* Executor<T>::view_of(int) const; \
  template T* Executor<T>::in_ptr(int, int) const;                        \
  template T* Executor<T>::in_grad_ptr(int, int) const;                   \
  template long Executor<T>::in_ld(int) const;                            \
  template void Executor<T>::fill_grad_outside_views(int);                \
  template void Executor<T>::lazy_operand_spans(const Step&, Range, std::vector<Span>&);
COPSE_INSTANTIATE_VIEWS(float)
COPSE_INSTANTIATE_VIEWS(double)
#undef COPSE_INSTANTIATE_VIEWS

}  // namespace copse::scheduler
