// Executor, backward half: the reverse level loop and the lazy parameter
// gradients (see executor.h).
#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "common/error.h"
#include "scheduler/executor.h"
#include "scheduler/executor_timer.h"

namespace copse::scheduler {

using vertex::Domain;
using vertex::Op;
using vertex::Phase;
using vertex::Step;
using vertex::StepKind;

template <typename T>
void Executor<T>::backward() {
  if (!opts_.training) fail("vertex function {}: backward() on an inference executor", plan_.fn.name);
  if (!have_forward_) fail("vertex function {}: backward() before forward()", plan_.fn.name);
  have_forward_ = false;
  const auto& fn = plan_.fn;
  for (size_t o = 0; o < fn.outputs.size(); ++o) {
    int v = plan_.node_value[fn.outputs[o].value];
    if (!push_set_[o] && plan_.values[v].push_assign && plan_.values[v].base == v)
      fill(batch_->num_rows, plan_.values[v].width, grad_ptr(v, 0), ld_of(v));
  }
  const auto& steps = plan_.steps;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (it->phase == Phase::Output) backward_step(*it, -1);
  flush_row_jobs();
  for (int l = batch_->num_levels - 1; l >= 0; --l) {
    set_level_views(l);
    for (auto it = steps.rbegin(); it != steps.rend(); ++it)
      if (it->phase == Phase::Level) backward_step(*it, l);
    flush_row_jobs();
  }
  clear_level_views();
  for (const Step& s : steps)
    if (s.phase == Phase::Level) lazy_param_grads(s);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (it->phase == Phase::Hoisted) {
      backward_step(*it, -1);
      flush_row_jobs();
      lazy_param_grads(*it);
    }
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (it->phase == Phase::Output) lazy_param_grads(*it);
}

template <typename T>
void Executor<T>::backward_step(const Step& s, int level) {
  if (s.kind != StepKind::Gather) flush_row_jobs();
  const GraphBatch& b = *batch_;
  const auto& nd = plan_.fn.nodes[s.node];
  Range rr = rows_of(s.domain, level);
  const int n = rr.end - rr.begin;
  // EdgeParent writes the vertex rows (zeros where a level has no edges).
  if (n == 0 && s.kind != StepKind::EdgeParent) return;
  switch (s.kind) {
    case StepKind::Pull: {
      const int pi = pull_of_node_[s.node];
      const PullBinding& p = pulls_[pi];
      if (p.param < 0) break;
      T* table_grad = params_.grad(p.param);
      if (dedup_on_ && dedup_pull_[pi]) {  // one row per distinct id: no repeats
        if (!dedup_dx_set_[pi]) break;
        Timer t(be_, opts_.profile, &stats_.t_gather);
        ++stats_.gather_calls;
        be_.scatter_add_rows(dedup_u_, nd.width, dedup_dx_[pi], nd.width, dix_.dedup_ids,
                             table_grad, p.ld);
        params_.touch_rows(p.param, dedup_ids_.data(), dedup_u_);
        break;
      }
      touched_.clear();
      for (int r = rr.begin; r < rr.end; ++r)
        if (b.input[r] >= 0) touched_.push_back(b.input[r]);
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.scatter_add_rows(n, nd.width, node_grad_ptr(s.node, rr.begin),
                           ld_of(plan_.node_value[s.node]), dix_.input + rr.begin, table_grad,
                           p.ld);
      params_.touch_rows(p.param, touched_.data(), static_cast<int>(touched_.size()));
      break;
    }
    case StepKind::Gather: {
      if (view_of(plan_.node_value[s.node])) {  // the consumers added into the children's rows
        ++stats_.strided_grads;
        break;
      }
      if (zero_at(s.node, level)) break;
      int sv = source_of_node_[s.node];
      ++stats_.gather_calls;
      const ops::RowJob<T> job{n, nd.width, node_grad_ptr(s.node, rr.begin),
                               ld_of(plan_.node_value[s.node]), dix_.slot[nd.slot] + rr.begin,
                               node_grad_ptr(sv, 0), ld_of(plan_.node_value[sv])};
      if (be_.batch_row_jobs()) {
        queue_row_job(true, job);
        break;
      }
      Timer t(be_, opts_.profile, &stats_.t_gather);
      be_.scatter_add_rows(job.n, job.width, job.src, job.ld_src, job.idx, job.dst, job.ld_dst);
      break;
    }
    case StepKind::EdgeChild: {
      if (view_of(plan_.node_value[s.node])) {
        ++stats_.strided_grads;
        break;
      }
      int sv = source_of_node_[s.node];
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.scatter_add_rows(n, nd.width, node_grad_ptr(s.node, rr.begin),
                           ld_of(plan_.node_value[s.node]), dix_.edge_child + rr.begin,
                           node_grad_ptr(sv, 0), ld_of(plan_.node_value[sv]));
      break;
    }
    case StepKind::EdgeParent: {
      // d(parent value) (+)= sum over the parent's edges of d(edge value).
      int src = nd.in[0];
      Range vr = rows_of(Domain::Vertex, level);
      const int first_edge = b.child_ptr[vr.begin];  // host copy
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.segment_sum(vr.end - vr.begin, nd.width, dix_.child_ptr + vr.begin,
                      node_grad_ptr(s.node, first_edge),
                      ld_of(plan_.node_value[s.node]), node_grad_ptr(src, vr.begin),
                      ld_of(plan_.node_value[src]), false, s.grad_accumulate);
      break;
    }
    case StepKind::ReduceEdges: {
      // d(edge value)[e] (+)= d(out)[parent(e)] (/ deg for a mean).
      int src = nd.in[0];
      Range er = rows_of(Domain::Edge, level);
      int ne = er.end - er.begin;
      if (ne == 0) break;
      long lds = in_ld(src);
      T* dst = in_grad_ptr(src, er.begin);
      T* tmp = dst;
      long ldt = lds;
      // A viewed gather's gradient is the children's rows: add into them.
      const bool accumulate = s.grad_accumulate || view_of(plan_.node_value[src]);
      if (accumulate) {
        tmp = arena_.alloc(static_cast<size_t>(ne) * nd.width);
        ldt = nd.width;
      }
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.gather_rows(ne, nd.width, node_grad_ptr(s.node, 0), ld_of(plan_.node_value[s.node]),
                      dix_.edge_parent + er.begin, tmp, ldt);
      if (nd.reduce == vertex::Reduce::Mean)
        be_.scale_rows(ne, nd.width, dix_.edge_scale + er.begin, tmp, ldt);
      if (accumulate) be_.copy_rows(ne, nd.width, tmp, ldt, dst, lds, true);
      break;
    }
    case StepKind::MatMul: {
      const auto [out, K, mv, ldm, ldx_buf, w] = gemm_operands(s);
      if (dedup_step(s)) {
        // dM summed per distinct id; then d(rows of the ids) (+)= dM_ids . W.
        const int k = static_cast<int>(&s - plan_.steps.data());
        const int pi = dedup_pull_of_step_[k];
        T* dm = arena_.alloc(static_cast<size_t>(dedup_u_) * out);
        dedup_dm_[k] = dm;
        fill(dedup_u_, out, dm, out);
        {
          Timer t(be_, opts_.profile, &stats_.t_gather);
          ++stats_.gather_calls;
          be_.scatter_add_rows(n, out, grad_ptr(mv, rr.begin), ldm, dix_.dedup_pos + rr.begin, dm,
                               out);
        }
        if (pulls_[pi].param >= 0) {
          gemm(false, false, dedup_u_, s.k, out, T(1), dm, out, w, K,
               dedup_dx_set_[pi] ? T(1) : T(0), dedup_dx_[pi], s.k);
          dedup_dx_set_[pi] = 1;
        }
        break;
      }
      // The input's gradient rows: the part's buffer, or a strided gather's view.
      const int x0 = s.part_inputs.size() == 1 ? s.part_inputs[0] : -1;
      const bool viewed = level >= 0 && x0 >= 0 && view_of(plan_.node_value[x0]);
      const long ldx = viewed ? in_ld(x0) : ldx_buf;
      auto dx_at = [&](int row) {
        return viewed ? in_grad_ptr(x0, row)
                      : gbuf_[s.in_buf] + static_cast<long>(row) * ldx_buf + s.in_col;
      };
      T beta = s.grad_accumulate || viewed ? T(1) : T(0);  // a view adds into the children
      Range a = rr;
      if (level >= 0) {
        if (all_zero_at(s.part_inputs, level)) {
          if (beta == T(0)) fill(n, s.k, dx_at(rr.begin), ldx);
          break;
        }
      } else {
        a = active_rows(s.part_inputs, s.domain);
        if (!s.grad_accumulate) {
          fill(a.begin - rr.begin, s.k, dx_at(rr.begin), ldx);
          fill(rr.end - a.end, s.k, dx_at(a.end), ldx);
        }
      }
      // dX = dM . W[:, part]      [rows, k] = [rows, out] . [out, k]
      if (a.end > a.begin)
        gemm(false, false, a.end - a.begin, s.k, out, T(1), grad_ptr(mv, a.begin), ldm, w, K, beta,
             dx_at(a.begin), ldx);
      break;
    }
    case StepKind::Copy: {
      long lds = plan_.buffers[s.in_buf].width;
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.copy_rows(n, nd.width, gbuf_[s.in_buf] + static_cast<long>(rr.begin) * lds + s.in_col, lds,
                    in_grad_ptr(s.node, rr.begin), in_ld(s.node),
                    s.grad_accumulate || view_of(plan_.node_value[s.node]));
      break;
    }
    case StepKind::Fused: {
      const auto& reg = plan_.regions[s.region];
      const size_t nin = reg.inputs.size();
      in_views_.resize(nin + reg.outputs.size());
      out_views_.resize(nin);
      // On a level where one of its strided gathers is viewed the region runs
      // bwd_views, which adds into every strided gather's gradient: one that
      // is not viewed here and is normally overwritten is zeroed first.
      bool any_view = false;
      for (int j : reg.inputs)
        any_view = any_view || (plan_.fn.nodes[j].op != Op::ParamRow && view_of(plan_.node_value[j]));
      if (any_view) {
        for (size_t k = 0; k < nin; ++k) {
          const int v = plan_.node_value[reg.inputs[k]];
          if (plan_.fn.nodes[reg.inputs[k]].op == Op::ParamRow || view_of_value_[v] < 0 ||
              view_of(v) || reg.input_grad_accumulate[k])
            continue;
          fill(n, plan_.values[v].width, grad_ptr(v, rr.begin), ld_of(v));
        }
      }
      for (size_t k = 0; k < nin; ++k) {
        int j = reg.inputs[k];
        const auto& jn = plan_.fn.nodes[j];
        if (jn.op == Op::ParamRow) {
          in_views_[k] = {params_.param(param_ids_[param_of_node_[j]]), 0};
          out_views_[k] = {param_row_grad_[s.region][k], jn.width};  // summed below
        } else {
          const bool zv = level >= 0 && zero_viewed(j, level);
          in_views_[k] = zv ? ops::RowView<const T>{zero_row_, 0}
                            : ops::RowView<const T>{in_ptr(j, rr.begin), in_ld(j)};
          out_views_[k] = {in_grad_ptr(j, rr.begin), in_ld(j)};
        }
      }
      for (size_t k = 0; k < reg.outputs.size(); ++k) {
        int j = reg.outputs[k];
        in_views_[nin + k] = {node_grad_ptr(j, rr.begin), ld_of(plan_.node_value[j])};
      }
      {
        Timer t(be_, opts_.profile, &stats_.t_fused);
        ++stats_.fused_calls;
        be_.run_fused(any_view ? reg.bwd_views : reg.bwd, n, in_views_.data(), out_views_.data());
      }
      // Bias gradients: db += colsum of this call's rows (still in cache):
      // the bias rows' gradient, or the input gradient it equals.
      for (size_t k = 0; k < nin; ++k) {
        const auto& jn = plan_.fn.nodes[reg.inputs[k]];
        if (jn.op != Op::ParamRow) continue;
        const int from = reg.bias_grad_from.empty() ? -1 : reg.bias_grad_from[k];
        const ops::RowView<T> rows = from >= 0 ? out_views_[from] : out_views_[k];
        Timer tc(be_, opts_.profile, &stats_.t_other);
        be_.colsum(n, jn.width, rows.ptr, rows.ld, weight_grad(param_of_node_[reg.inputs[k]]),
                   true);
      }
      break;
    }
  }
}

// Weight gradients of GEMMs, once per batch over all rows (lazy batching):
//   dW[:, part] += dM^T . X      [out, k] = [rows, out]^T . [rows, k]
// (Bias gradients are summed per fused call, in backward_step.)
template <typename T>
void Executor<T>::lazy_param_grads(const Step& s) {
  if (s.kind == StepKind::MatMul) {
    const int K = plan_.fn.params[s.param].shape[1];
    int mv = plan_.node_value[s.node];
    Range a = active_rows(s.part_inputs, s.domain);
    if (a.end <= a.begin) return;
    const bool direct = s.mm_params.size() <= 1 || weights_adjacent(s);
    T* dw = weight_grad(s.param);
    if (!direct) dw = arena_.alloc(static_cast<size_t>(s.out_width) * K);
    // dM and X by rows: the batch's rows, or the distinct ids' rows.
    const T* dm = grad_ptr(mv, 0);
    long lddm = ld_of(mv);
    if (dedup_step(s)) {
      const int k = static_cast<int>(&s - plan_.steps.data());
      dm = dedup_dm_[k];
      lddm = s.out_width;
      spans_.assign(1, Span{0, dedup_u_, dedup_x_[dedup_pull_of_step_[k]], s.k});
    } else {
      lazy_operand_spans(s, a, spans_);
    }
    for (size_t i = 0; i < spans_.size(); ++i) {
      const Span& sp = spans_[i];
      gemm(true, false, s.out_width, s.k, sp.end - sp.begin, T(1), dm + sp.begin * lddm, lddm,
           sp.x, sp.ld, direct || i > 0 ? T(1) : T(0), dw + s.w_col, K);
    }
    if (!direct) {
      int row = 0;
      for (int p : s.mm_params) {
        int out = plan_.fn.params[p].shape[0];
        be_.copy_rows(out, s.k, dw + static_cast<long>(row) * K + s.w_col, K,
                      weight_grad(p) + s.w_col, K, true);
        row += out;
      }
    }
  }
}

#define COPSE_INSTANTIATE_BACKWARD(T)                                   \
  template void Executor<T>::backward();                                \
  template void Executor<T>::backward_step(const Step&, int);           \
  template void Executor<T>::lazy_param_grads(const Step&);
COPSE_INSTANTIATE_BACKWARD(float)
COPSE_INSTANTIATE_BACKWARD(double)
#undef COPSE_INSTANTIATE_BACKWARD

}  // namespace copse::scheduler
