// Executor: the level loop over a compiled plan (see executor.h).
#include "scheduler/executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"
#include "scheduler/executor_timer.h"

namespace copse::scheduler {

using vertex::Domain;
using vertex::Op;
using vertex::Phase;
using vertex::Step;
using vertex::StepKind;


template <typename T>
Executor<T>::Executor(const vertex::ExecPlan& plan, ops::Backend<T>& backend,
                      memory::ParamStore<T>& params, memory::Arena<T>& arena, ExecOptions opts)
    : plan_(plan), be_(backend), params_(params), arena_(arena), opts_(opts) {
  const auto& fn = plan_.fn;
  num_nodes_ = static_cast<int>(fn.nodes.size());
  for (const auto& p : fn.params) {
    int id = params_.id(p.name);
    std::vector<int> shape = params_.spec(id).shape;
    if (shape != p.shape)
      fail("vertex function {}: parameter '{}' has shape [{}] in the store, the function needs [{}]",
           fn.name, p.name, fmt::join(shape, ", "), fmt::join(p.shape, ", "));
    param_ids_.push_back(id);
  }
  pulls_.resize(fn.pulls.size());
  pull_of_node_.assign(num_nodes_, -1);
  for (size_t i = 0; i < fn.pulls.size(); ++i) pull_of_node_[fn.pulls[i].node] = static_cast<int>(i);
  push_set_.assign(fn.outputs.size(), 0);
  // Names resolved once, not per level.
  source_of_node_.assign(num_nodes_, -1);
  param_of_node_.assign(num_nodes_, -1);
  for (int i = 0; i < num_nodes_; ++i) {
    const auto& nd = fn.nodes[i];
    if (nd.op == Op::Gather || nd.op == Op::EdgeChild)
      source_of_node_[i] = fn.states[fn.find_state(nd.name)].value;
    if (nd.op == Op::ParamRow || nd.op == Op::MatMul) param_of_node_[i] = fn.find_param(nd.name);
  }
  view_of_value_.assign(plan_.values.size(), -1);
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    if (!plan_.steps[i].strided_view) continue;
    const int vi = static_cast<int>(view_steps_.size());
    view_steps_.push_back(static_cast<int>(i));
    const int base = plan_.node_value[plan_.steps[i].node];
    for (size_t v = 0; v < plan_.values.size(); ++v)
      if (plan_.values[v].base == base) view_of_value_[v] = vi;
  }
  level_view_.resize(view_steps_.size());
  find_dedup_pulls();
  find_zero_view_fillers();
}

// The GEMM steps (parts) of linear node `linear` (merged or not) that read `input`.
template <typename T>
std::vector<int> Executor<T>::gemm_parts_reading(int linear, int input) const {
  std::vector<int> parts;
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const Step& s = plan_.steps[k];
    if (s.kind != StepKind::MatMul ||
        std::find(s.part_inputs.begin(), s.part_inputs.end(), input) == s.part_inputs.end())
      continue;
    if (s.node == linear ||
        std::find(s.mm_nodes.begin(), s.mm_nodes.end(), linear) != s.mm_nodes.end())
      parts.push_back(static_cast<int>(k));
  }
  return parts;
}

// A level-phase gather step, or the first part of a level-phase GEMM, fills
// its rows with zeros on the levels where it is all zeros. Those zeros are
// needed only by readers other than level-phase fused programs, and by GEMM
// parts that run there or whose lazy weight gradient spans the level (the
// latter two are checked per batch).
template <typename T>
void Executor<T>::find_zero_view_fillers() {
  const auto& fn = plan_.fn;
  filler_of_node_.assign(num_nodes_, -1);
  zview_ok_.assign(num_nodes_, 0);
  zview_parts_.assign(num_nodes_, {});
  if (!opts_.zero_views) return;
  std::vector<int> base_filler(plan_.values.size(), -1);
  auto own = [&](int node, int filler) {
    const int v = plan_.node_value[node];
    if (v >= 0) base_filler[plan_.values[v].base] = filler;
  };
  for (const Step& s : plan_.steps) {
    if (s.phase != Phase::Level || s.domain != Domain::Vertex) continue;
    if (s.kind == StepKind::Gather) own(s.node, s.node);  // strided too: unviewed levels fill
    if (s.kind == StepKind::MatMul && s.first_part) {
      own(s.node, s.node);
      for (int m : s.mm_nodes) own(m, s.node);
    }
  }
  for (int j = 0; j < num_nodes_; ++j) {
    const int v = plan_.node_value[j];
    if (v >= 0) filler_of_node_[j] = base_filler[plan_.values[v].base];
  }
  std::vector<char> bad(num_nodes_, 0);
  for (int f = 0; f < num_nodes_; ++f) zview_ok_[f] = filler_of_node_[f] == f;
  for (const auto& o : fn.outputs)
    if (filler_of_node_[o.value] >= 0) bad[filler_of_node_[o.value]] = 1;
  for (const auto& st : fn.states)
    if (filler_of_node_[st.value] >= 0) bad[filler_of_node_[st.value]] = 1;
  for (const Step& s : plan_.steps)
    if (s.kind == StepKind::Copy && filler_of_node_[s.node] >= 0) bad[filler_of_node_[s.node]] = 1;
  for (int c = 0; c < num_nodes_; ++c) {
    const auto& nd = fn.nodes[c];
    for (int i : nd.in) {
      const int f = filler_of_node_[i];
      if (f < 0) continue;
      // A view of the same memory (a slice): its own readers are the readers.
      if (filler_of_node_[c] == f && nd.op == Op::Slice) continue;
      const int r = plan_.node_region[c];
      if (r >= 0 && plan_.regions[r].phase == Phase::Level &&
          std::find(plan_.regions[r].inputs.begin(), plan_.regions[r].inputs.end(), i) !=
              plan_.regions[r].inputs.end())
        continue;  // a level-phase fused program: takes a zero row
      if (nd.op == Op::MatMul) {
        const std::vector<int> parts = gemm_parts_reading(c, i);
        for (int k : parts) {
          if (plan_.steps[k].phase != Phase::Level) bad[f] = 1;
          zview_parts_[f].push_back(k);
        }
        if (!parts.empty()) continue;
      }
      bad[f] = 1;
    }
  }
  for (int f = 0; f < num_nodes_; ++f) zview_ok_[f] = zview_ok_[f] && !bad[f];
}

// This batch's zero views: filler f is left unfilled on level l when it is
// zero there, and every GEMM part reading it is skipped on l (all its inputs
// zero) and its lazy weight gradient's rows do not reach level l.
template <typename T>
void Executor<T>::compute_zero_views() {
  zview_.clear();
  zero_row_ = nullptr;
  if (!opts_.zero_views) return;
  const int L = batch_->num_levels;
  bool any = false;
  for (int f = 0; f < num_nodes_; ++f) any = any || zview_ok_[f];
  if (!any) return;
  zview_.assign(static_cast<size_t>(L) * num_nodes_, 0);
  // Per GEMM part: the levels its lazy weight gradient spans (first, last).
  std::vector<std::pair<int, int>> span(plan_.steps.size(), {-2, -2});
  for (int f = 0; f < num_nodes_; ++f) {
    if (!zview_ok_[f]) continue;
    for (int k : zview_parts_[f])
      if (span[k].first == -2) span[k] = active_levels(plan_.steps[k].part_inputs);
    for (int l = 0; l < L; ++l) {
      if (!zero_at(f, l)) continue;
      bool ok = true;
      for (int k : zview_parts_[f]) {
        const Step& s = plan_.steps[k];
        ok = ok && all_zero_at(s.part_inputs, l) &&
             (span[k].first < 0 || l < span[k].first || l > span[k].second);
      }
      zview_[static_cast<size_t>(l) * num_nodes_ + f] = ok;
    }
  }
  int widest = 1;
  for (const auto& nd : plan_.fn.nodes) widest = std::max(widest, nd.width);
  zero_row_ = arena_.alloc(static_cast<size_t>(widest));
  be_.fill_rows(1, widest, T(0), zero_row_, widest);
}

// A pull qualifies for the distinct-input path when every node reading it is
// a linear whose GEMM part over it is hoisted, reads this pull alone and is
// the node's first part (it writes every row of the output; later parts, on
// the levels, add to it), and the pull is neither pushed nor scattered.
template <typename T>
void Executor<T>::find_dedup_pulls() {
  const auto& fn = plan_.fn;
  dedup_pull_.assign(fn.pulls.size(), 0);
  dedup_pull_of_step_.assign(plan_.steps.size(), -1);
  dedup_x_.assign(fn.pulls.size(), nullptr);
  dedup_dx_.assign(fn.pulls.size(), nullptr);
  dedup_dx_set_.assign(fn.pulls.size(), 0);
  dedup_dm_.assign(plan_.steps.size(), nullptr);
  if (!opts_.dedup_pulls) return;
  for (size_t pi = 0; pi < fn.pulls.size(); ++pi) {
    const int P = fn.pulls[pi].node;
    bool ok = plan_.node_value[P] >= 0;
    for (const auto& o : fn.outputs) ok = ok && o.value != P;
    for (const auto& st : fn.states) ok = ok && st.value != P;
    std::vector<int> steps;
    for (int n = P + 1; ok && n < num_nodes_; ++n) {
      const auto& nd = fn.nodes[n];
      if (std::find(nd.in.begin(), nd.in.end(), P) == nd.in.end()) continue;
      const std::vector<int> parts = gemm_parts_reading(n, P);
      ok = nd.op == Op::MatMul && parts.size() == 1;
      if (!ok) break;
      const int found = parts[0];
      const Step& s = plan_.steps[found];
      ok = s.phase == Phase::Hoisted && s.domain == Domain::Vertex && s.first_part &&
           s.part_inputs.size() == 1 && s.part_inputs[0] == P;
      if (ok && std::find(steps.begin(), steps.end(), found) == steps.end()) steps.push_back(found);
    }
    if (!ok || steps.empty()) continue;
    dedup_pull_[pi] = 1;
    for (int k : steps) dedup_pull_of_step_[k] = static_cast<int>(pi);
  }
}

// The batch's distinct input ids (first-appearance order) and each row's
// position among them; the path is taken when they save at least 10% of the
// pulled rows.
template <typename T>
void Executor<T>::prepare_dedup(const GraphBatch& b) {
  dedup_on_ = false;
  dedup_u_ = 0;
  if (std::find(dedup_pull_.begin(), dedup_pull_.end(), 1) == dedup_pull_.end()) return;
  int rows = 0;
  for (const auto& p : pulls_) rows = std::max(rows, p.rows);
  if (dedup_stamp_.size() < static_cast<size_t>(rows)) dedup_stamp_.resize(rows, 0);
  const int N = b.num_rows;
  dedup_ids_.clear();
  dedup_pos_.assign(N, -1);
  long pulled = 0;
  for (int r = 0; r < N; ++r) {
    const int id = b.input[r];  // check_inputs: -1 or a row of every table
    if (id < 0) continue;
    ++pulled;
    int& st = dedup_stamp_[id];
    if (st == 0) {
      dedup_ids_.push_back(id);
      st = static_cast<int>(dedup_ids_.size());
    }
    dedup_pos_[r] = st - 1;
  }
  for (int id : dedup_ids_) dedup_stamp_[id] = 0;
  const long u = static_cast<long>(dedup_ids_.size());
  if (pulled == 0 || u * 10 > pulled * 9) return;
  dedup_on_ = true;
  dedup_u_ = static_cast<int>(u);
  std::fill(dedup_dx_set_.begin(), dedup_dx_set_.end(), 0);
  stats_.dedup_rows += pulled;
  stats_.dedup_ids += u;
}

template <typename T>
void Executor<T>::bind_pull(const std::string& name, const std::string& table_param) {
  const auto& fn = plan_.fn;
  for (size_t i = 0; i < fn.pulls.size(); ++i) {
    if (fn.pulls[i].name != name) continue;
    int id = params_.id(table_param);
    if (params_.row_width(id) != fn.pulls[i].width)
      fail("vertex function {}: pull '{}' has width {}, but table '{}' has rows of width {}",
           fn.name, name, fn.pulls[i].width, table_param, params_.row_width(id));
    pulls_[i] = {id, params_.param(id), params_.row_width(id), params_.rows(id)};
    return;
  }
  fail("vertex function {}: no pull named '{}'", fn.name, name);
}

template <typename T>
void Executor<T>::bind_pull_data(const std::string& name, const T* table, long ld, int rows) {
  const auto& fn = plan_.fn;
  for (size_t i = 0; i < fn.pulls.size(); ++i) {
    if (fn.pulls[i].name != name) continue;
    pulls_[i] = {-1, table, ld, rows};
    return;
  }
  fail("vertex function {}: no pull named '{}'", fn.name, name);
}

template <typename T>
void Executor<T>::check_inputs(const GraphBatch& b) {
  const auto& fn = plan_.fn;
  for (size_t i = 0; i < fn.pulls.size(); ++i)
    if (pulls_[i].data == nullptr && pulls_[i].param < 0)
      fail("vertex function {}: pull '{}' is not bound to a table", fn.name, fn.pulls[i].name);
  if (fn.pulls.empty()) return;
  int rows = pulls_[0].rows;
  for (const auto& p : pulls_) rows = std::min(rows, p.rows);
  for (int r = 0; r < b.num_rows; ++r) {
    int id = b.input[r];
    if (id < -1 || id >= rows) {
      int g = b.graph_of_row[r];
      int v = -1;
      for (int u = b.vertex_offset[g]; u < b.vertex_offset[g + 1]; ++u)
        if (b.row_of_vertex[u] == r) v = u - b.vertex_offset[g];
      fail("graph {} of the batch, vertex {}: input id {} out of range [0, {})", g, v, id, rows);
    }
  }
}

// Points dix_ at the index arrays in the backend's memory. Without
// host-visible memory they go up in one block: edge scales first (the widest
// element type), then the int arrays.
template <typename T>
void Executor<T>::prepare_index(const GraphBatch& b) {
  const int N = b.num_rows, E = b.num_edges, S = plan_.fn.child_slots;
  dix_.slot.assign(S, nullptr);
  const int U = dedup_on_ ? dedup_u_ : 0;
  const int NP = dedup_on_ ? N : 0;
  if (be_.host_accessible()) {
    dix_.dedup_ids = dedup_on_ ? dedup_ids_.data() : nullptr;
    dix_.dedup_pos = dedup_on_ ? dedup_pos_.data() : nullptr;
    dix_.input = b.input.data();
    dix_.label = b.label.data();
    dix_.edge_child = b.edge_child.data();
    dix_.edge_parent = b.edge_parent.data();
    dix_.child_ptr = b.child_ptr.data();
    for (int k = 0; k < S; ++k) dix_.slot[k] = slot_idx_[k].data();
    dix_.edge_scale = edge_scale_.data();
    return;
  }
  const std::size_t n_int = 2 * static_cast<std::size_t>(N) + 2 * static_cast<std::size_t>(E) +
                            (N + 1) + static_cast<std::size_t>(S) * N + U + NP;
  const std::size_t scale_bytes = sizeof(T) * E;
  const std::size_t bytes = scale_bytes + sizeof(int) * n_int;
  index_pack_.resize(bytes);
  char* h = index_pack_.data();
  T* dev = arena_.alloc((bytes + sizeof(T) - 1) / sizeof(T));
  const char* d = reinterpret_cast<const char*>(dev);
  std::size_t at = 0;
  auto put = [&](const void* src, std::size_t nbytes) {
    if (nbytes) std::memcpy(h + at, src, nbytes);
    const char* where = d + at;
    at += nbytes;
    return where;
  };
  dix_.edge_scale = reinterpret_cast<const T*>(put(edge_scale_.data(), scale_bytes));
  dix_.input = reinterpret_cast<const int*>(put(b.input.data(), sizeof(int) * N));
  dix_.label = reinterpret_cast<const int*>(put(b.label.data(), sizeof(int) * N));
  dix_.edge_child = reinterpret_cast<const int*>(put(b.edge_child.data(), sizeof(int) * E));
  dix_.edge_parent = reinterpret_cast<const int*>(put(b.edge_parent.data(), sizeof(int) * E));
  dix_.child_ptr = reinterpret_cast<const int*>(put(b.child_ptr.data(), sizeof(int) * (N + 1)));
  for (int k = 0; k < S; ++k)
    dix_.slot[k] = reinterpret_cast<const int*>(put(slot_idx_[k].data(), sizeof(int) * N));
  dix_.dedup_ids = reinterpret_cast<const int*>(put(dedup_ids_.data(), sizeof(int) * U));
  dix_.dedup_pos = reinterpret_cast<const int*>(put(dedup_pos_.data(), sizeof(int) * NP));
  if (!dedup_on_) dix_.dedup_ids = dix_.dedup_pos = nullptr;
  COPSE_ASSERT(at == bytes);
  be_.upload_async(dev, h, bytes);
  ++stats_.uploads;
  stats_.upload_bytes += static_cast<double>(bytes);
}

template <typename T>
typename Executor<T>::Range Executor<T>::rows_of(Domain d, int level) const {
  const GraphBatch& b = *batch_;
  if (level < 0) return {0, d == Domain::Vertex ? b.num_rows : b.num_edges};
  if (d == Domain::Vertex) return {b.level_begin(level), b.level_end(level)};
  return {b.edge_begin(level), b.edge_end(level)};
}

template <typename T>
bool Executor<T>::all_zero_at(const std::vector<int>& nodes, int level) const {
  for (int n : nodes)
    if (!zero_at(n, level)) return false;
  return true;
}

// Rows of the levels where some node of `nodes` is not known to be zero, as
// one span (first such level .. last such level).
template <typename T>
std::pair<int, int> Executor<T>::active_levels(const std::vector<int>& nodes) const {
  int first = -1, last = -1;
  for (int l = 0; l < batch_->num_levels; ++l)
    if (!all_zero_at(nodes, l)) {
      if (first < 0) first = l;
      last = l;
    }
  return {first, last};
}

template <typename T>
typename Executor<T>::Range Executor<T>::active_rows(const std::vector<int>& nodes,
                                                     Domain d) const {
  const auto [first, last] = active_levels(nodes);
  if (first < 0) return {0, 0};
  return {rows_of(d, first).begin, rows_of(d, last).end};
}

// zero_[l][n]: node n is all zeros on the rows of level l (no children there,
// no input there), so GEMMs and gathers of that level can be skipped.
template <typename T>
void Executor<T>::compute_zero_levels() {
  const GraphBatch& b = *batch_;
  const auto& nodes = plan_.fn.nodes;
  const int L = b.num_levels;
  zero_.assign(static_cast<size_t>(L) * num_nodes_, 0);
  pull_rows_per_level_.assign(L, 0);
  for (int l = 0; l < L; ++l)
    for (int r = b.level_begin(l); r < b.level_end(l); ++r) pull_rows_per_level_[l] += b.input[r] >= 0;
  for (int l = 0; l < L; ++l) {
    char* z = &zero_[static_cast<size_t>(l) * num_nodes_];
    bool no_edges = b.edge_begin(l) == b.edge_end(l);
    for (int i = 0; i < num_nodes_; ++i) {
      const auto& nd = nodes[i];
      auto in_zero = [&](int k) { return z[nd.in[k]] != 0; };
      switch (nd.op) {
        case Op::ParamRow: z[i] = 0; break;
        case Op::Pull: z[i] = pull_rows_per_level_[l] == 0; break;
        case Op::Gather: z[i] = b.level_max_children[l] <= nd.slot; break;
        case Op::EdgeChild: case Op::EdgeParent: case Op::ReduceEdges: z[i] = no_edges; break;
        case Op::Sigmoid: case Op::Tanh: z[i] = 0; break;
        case Op::Relu: case Op::Slice: z[i] = in_zero(0); break;
        case Op::Mul: z[i] = in_zero(0) || in_zero(1); break;
        case Op::MatMul: case Op::Add: case Op::Sub: case Op::Concat: {
          bool all = true;
          for (size_t k = 0; k < nd.in.size(); ++k) all = all && in_zero(k);
          z[i] = all;
          break;
        }
      }
    }
  }
}

template <typename T>
long Executor<T>::ld_of(int value) const {
  return plan_.buffers[plan_.values[value].buf].width;
}

template <typename T>
T* Executor<T>::value_ptr(int value, int row) const {
  const auto& v = plan_.values[value];
  return buf_[v.buf] + static_cast<long>(row) * plan_.buffers[v.buf].width + v.col;
}

template <typename T>
T* Executor<T>::grad_ptr(int value, int row) const {
  const auto& v = plan_.values[value];
  return gbuf_[v.buf] + static_cast<long>(row) * plan_.buffers[v.buf].width + v.col;
}

template <typename T>
const T* Executor<T>::weight(int param_index) const {
  return params_.param(param_ids_[param_index]);
}

template <typename T>
bool Executor<T>::weights_adjacent(const Step& s) const {
  const int K = plan_.fn.params[s.param].shape[1];
  const T* next = weight(s.mm_params[0]);
  for (size_t i = 0; i < s.mm_params.size(); ++i) {
    if (weight(s.mm_params[i]) != next) return false;
    next += static_cast<long>(plan_.fn.params[s.mm_params[i]].shape[0]) * K;
  }
  return true;
}

template <typename T>
const T* Executor<T>::step_weight(const Step& s) {
  if (s.mm_params.size() <= 1 || weights_adjacent(s)) return weight(s.param);
  T*& packed = packed_w_[&s - plan_.steps.data()];
  if (packed) return packed;
  const int K = plan_.fn.params[s.param].shape[1];
  packed = arena_.alloc(static_cast<size_t>(s.out_width) * K);
  int row = 0;
  for (int p : s.mm_params) {
    int out = plan_.fn.params[p].shape[0];
    be_.copy_rows(out, K, weight(p), K, packed + static_cast<long>(row) * K, K, false);
    row += out;
  }
  return packed;
}

template <typename T>
T* Executor<T>::weight_grad(int param_index) {
  return params_.grad(param_ids_[param_index]);
}

template <typename T>
void Executor<T>::gemm(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, long lda,
                       const T* b, long ldb, T beta, T* c, long ldc) {
  Timer t(be_, opts_.profile, &stats_.t_gemm);
  ++stats_.gemm_calls;
  stats_.gemm_flops += 2.0 * m * n * k;
  be_.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
void Executor<T>::fill(int rows, int width, T* dst, long ld) {
  if (rows <= 0) return;
  Timer t(be_, opts_.profile, &stats_.t_other);
  ++stats_.fill_calls;
  be_.fill_rows(rows, width, T(0), dst, ld);
}

template <typename T>
void Executor<T>::forward(const GraphBatch& batch) {
  batch_ = &batch;
  check_inputs(batch);
  if (batch.num_slots < plan_.fn.child_slots)
    fail("vertex function {} gathers {} child slots but the batch was built with {} "
         "(BatchOptions::num_slots)",
         plan_.fn.name, plan_.fn.child_slots, batch.num_slots);
  const int N = batch.num_rows, E = batch.num_edges, S = batch.num_slots;
  // Buffers for this batch.
  buf_.assign(plan_.buffers.size(), nullptr);
  gbuf_.assign(plan_.buffers.size(), nullptr);
  for (size_t i = 0; i < plan_.buffers.size(); ++i) {
    const auto& pb = plan_.buffers[i];
    size_t n = static_cast<size_t>(pb.domain == Domain::Vertex ? N : E) * pb.width;
    buf_[i] = arena_.alloc(n);
    if (opts_.training) gbuf_[i] = arena_.alloc(n);
  }
  param_row_grad_.assign(plan_.regions.size(), {});
  if (opts_.training) {
    for (size_t r = 0; r < plan_.regions.size(); ++r) {
      const auto& reg = plan_.regions[r];
      param_row_grad_[r].assign(reg.inputs.size(), nullptr);
      for (size_t k = 0; k < reg.inputs.size(); ++k) {
        const auto& nd = plan_.fn.nodes[reg.inputs[k]];
        if (nd.op != Op::ParamRow) continue;
        // One level's rows at a time (all rows for hoisted and output regions):
        // the bias gradient is summed right after each call, while in cache.
        size_t rows = reg.domain == Domain::Vertex ? N : E;
        if (reg.phase == Phase::Level) {
          size_t most = 0;
          for (int l = 0; l < batch.num_levels; ++l)
            most = std::max<size_t>(most, reg.domain == Domain::Vertex
                                              ? batch.level_end(l) - batch.level_begin(l)
                                              : batch.edge_end(l) - batch.edge_begin(l));
          rows = most;
        }
        param_row_grad_[r][k] = arena_.alloc(std::max<size_t>(rows, 1) * nd.width);
      }
    }
  }
  // Child-slot index arrays, contiguous per slot.
  slot_idx_.resize(plan_.fn.child_slots);
  for (int k = 0; k < plan_.fn.child_slots; ++k) {
    slot_idx_[k].resize(N);
    for (int r = 0; r < N; ++r) slot_idx_[k][r] = batch.slot_child[static_cast<size_t>(r) * S + k];
  }
  edge_scale_.resize(E);
  for (int r = 0; r < N; ++r) {
    int deg = batch.child_ptr[r + 1] - batch.child_ptr[r];
    for (int e = batch.child_ptr[r]; e < batch.child_ptr[r + 1]; ++e) edge_scale_[e] = T(1) / deg;
  }
  prepare_dedup(batch);
  prepare_index(batch);
  compute_zero_levels();
  compute_zero_views();
  packed_w_.assign(plan_.steps.size(), nullptr);
  const size_t V = view_steps_.size();
  viewed_.assign(static_cast<size_t>(batch.num_levels) * V, 0);
  rematerialized_.assign(V, 0);
  ++stats_.batches;
  stats_.levels += batch.num_levels;

  clear_level_views();
  for (const Step& s : plan_.steps)
    if (s.phase == Phase::Hoisted) forward_step(s, -1);
  flush_row_jobs();
  for (int l = 0; l < batch.num_levels; ++l) {
    set_level_views(l);
    for (size_t vi = 0; vi < V; ++vi) viewed_[l * V + vi] = level_view_[vi].on;
    for (const Step& s : plan_.steps)
      if (s.phase == Phase::Level) forward_step(s, l);
    flush_row_jobs();
  }
  clear_level_views();
  for (const Step& s : plan_.steps)
    if (s.phase == Phase::Output) forward_step(s, -1);
  flush_row_jobs();

  if (opts_.training) {
    for (int v : plan_.zero_fill_values) {
      const int pi = pull_of_node_[plan_.values[v].node];
      if (dedup_on_ && pi >= 0 && dedup_pull_[pi]) continue;  // never read: see Pull
      if (view_of_value_[v] >= 0) {
        fill_grad_outside_views(v);
        continue;
      }
      const auto& pv = plan_.values[v];
      int rows = plan_.buffers[pv.buf].domain == Domain::Vertex ? N : E;
      fill(rows, pv.width, grad_ptr(v, 0), ld_of(v));
    }
  }
  std::fill(push_set_.begin(), push_set_.end(), 0);
  have_forward_ = true;
}

template <typename T>
typename Executor<T>::GemmOperands Executor<T>::gemm_operands(const Step& s) {
  GemmOperands g;
  g.out = s.out_width;
  g.K = plan_.fn.params[s.param].shape[1];
  g.mv = plan_.node_value[s.node];
  g.ldm = ld_of(g.mv);
  g.ldx = plan_.buffers[s.in_buf].width;
  g.w = step_weight(s) + s.w_col;
  return g;
}

template <typename T>
void Executor<T>::queue_row_job(bool scatter, const ops::RowJob<T>& job) {
  if (!row_jobs_.empty() && row_jobs_scatter_ != scatter) flush_row_jobs();
  row_jobs_scatter_ = scatter;
  row_jobs_.push_back(job);
}

template <typename T>
void Executor<T>::flush_row_jobs() {
  if (row_jobs_.empty()) return;
  Timer t(be_, opts_.profile, &stats_.t_gather);
  ++stats_.row_job_batches;
  const int count = static_cast<int>(row_jobs_.size());
  if (row_jobs_scatter_)
    be_.scatter_add_rows_batched(row_jobs_.data(), count);
  else
    be_.gather_rows_batched(row_jobs_.data(), count);
  row_jobs_.clear();
}

template <typename T>
void Executor<T>::forward_step(const Step& s, int level) {
  if (s.kind != StepKind::Gather) flush_row_jobs();
  const GraphBatch& b = *batch_;
  const auto& nd = plan_.fn.nodes[s.node];
  Range rr = rows_of(s.domain, level);
  const int n = rr.end - rr.begin;
  if (n == 0) return;
  switch (s.kind) {
    case StepKind::Pull: {
      const int pi = pull_of_node_[s.node];
      const PullBinding& p = pulls_[pi];
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      if (dedup_on_ && dedup_pull_[pi]) {  // the distinct ids' rows only; no vertex rows
        T* x = arena_.alloc(static_cast<size_t>(dedup_u_) * nd.width);
        dedup_x_[pi] = x;
        be_.gather_rows(dedup_u_, nd.width, p.data, p.ld, dix_.dedup_ids, x, nd.width);
        if (opts_.training) dedup_dx_[pi] = arena_.alloc(static_cast<size_t>(dedup_u_) * nd.width);
        break;
      }
      be_.gather_rows(n, nd.width, p.data, p.ld, dix_.input + rr.begin, node_ptr(s.node, rr.begin),
                      ld_of(plan_.node_value[s.node]));
      break;
    }
    case StepKind::Gather: {
      if (view_of(plan_.node_value[s.node])) {  // the consumers read the children in place
        ++stats_.strided_views;
        break;
      }
      T* dst = node_ptr(s.node, rr.begin);
      long ld = ld_of(plan_.node_value[s.node]);
      if (zero_at(s.node, level)) {
        if (zero_viewed(s.node, level))
          ++stats_.zero_views;
        else
          fill(n, nd.width, dst, ld);
        break;
      }
      int sv = source_of_node_[s.node];
      ++stats_.gather_calls;
      const ops::RowJob<T> job{n, nd.width, node_ptr(sv, 0), ld_of(plan_.node_value[sv]),
                               dix_.slot[nd.slot] + rr.begin, dst, ld};
      if (be_.batch_row_jobs()) {
        queue_row_job(false, job);
        break;
      }
      Timer t(be_, opts_.profile, &stats_.t_gather);
      be_.gather_rows(job.n, job.width, job.src, job.ld_src, job.idx, job.dst, job.ld_dst);
      break;
    }
    case StepKind::EdgeChild: {
      if (view_of(plan_.node_value[s.node])) {
        ++stats_.strided_views;
        break;
      }
      int sv = source_of_node_[s.node];
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.gather_rows(n, nd.width, node_ptr(sv, 0), ld_of(plan_.node_value[sv]),
                      dix_.edge_child + rr.begin, node_ptr(s.node, rr.begin),
                      ld_of(plan_.node_value[s.node]));
      break;
    }
    case StepKind::EdgeParent: {
      int src = nd.in[0];
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.gather_rows(n, nd.width, node_ptr(src, 0), ld_of(plan_.node_value[src]),
                      dix_.edge_parent + rr.begin, node_ptr(s.node, rr.begin),
                      ld_of(plan_.node_value[s.node]));
      break;
    }
    case StepKind::ReduceEdges: {
      int src = nd.in[0];
      const int first_edge = b.child_ptr[rr.begin];  // host copy
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.segment_sum(n, nd.width, dix_.child_ptr + rr.begin, in_ptr(src, first_edge), in_ld(src),
                      node_ptr(s.node, rr.begin), ld_of(plan_.node_value[s.node]),
                      nd.reduce == vertex::Reduce::Mean, false);
      break;
    }
    case StepKind::MatMul: {
      const auto [out, K, mv, ldm, ldx, w] = gemm_operands(s);
      (void)mv;
      auto x_at = [&](int row) { return buf_[s.in_buf] + static_cast<long>(row) * ldx + s.in_col; };
      if (dedup_step(s)) {  // over the distinct ids, then one row per vertex (zero: no input)
        const int pi = dedup_pull_of_step_[&s - plan_.steps.data()];
        T* y = arena_.alloc(static_cast<size_t>(dedup_u_) * out);
        gemm(false, true, dedup_u_, out, s.k, T(1), dedup_x_[pi], s.k, w, K, T(0), y, out);
        Timer t(be_, opts_.profile, &stats_.t_gather);
        ++stats_.gather_calls;
        be_.gather_rows(n, out, y, out, dix_.dedup_pos + rr.begin, node_ptr(s.node, rr.begin), ldm);
        break;
      }
      if (level >= 0) {
        if (all_zero_at(s.part_inputs, level)) {
          ++stats_.zero_skipped;
          if (s.first_part && zero_viewed(s.node, level))
            ++stats_.zero_views;
          else if (s.first_part)
            fill(n, out, node_ptr(s.node, rr.begin), ldm);
          break;
        }
        const int x0 = s.part_inputs.size() == 1 ? s.part_inputs[0] : -1;
        const bool viewed = x0 >= 0 && view_of(plan_.node_value[x0]);  // a strided gather
        gemm(false, true, n, out, s.k, T(1), viewed ? in_ptr(x0, rr.begin) : x_at(rr.begin),
             viewed ? in_ld(x0) : ldx, w, K, s.first_part ? T(0) : T(1),
             node_ptr(s.node, rr.begin), ldm);
      } else {
        Range a = active_rows(s.part_inputs, s.domain);
        if (s.first_part) {
          fill(a.begin - rr.begin, out, node_ptr(s.node, rr.begin), ldm);
          fill(rr.end - a.end, out, node_ptr(s.node, a.end), ldm);
        }
        if (a.end > a.begin)
          gemm(false, true, a.end - a.begin, out, s.k, T(1), x_at(a.begin), ldx, w, K,
               s.first_part ? T(0) : T(1), node_ptr(s.node, a.begin), ldm);
      }
      break;
    }
    case StepKind::Copy: {
      long ldd = plan_.buffers[s.in_buf].width;
      Timer t(be_, opts_.profile, &stats_.t_gather);
      ++stats_.gather_calls;
      be_.copy_rows(n, nd.width, in_ptr(s.node, rr.begin), in_ld(s.node),
                    buf_[s.in_buf] + static_cast<long>(rr.begin) * ldd + s.in_col, ldd, false);
      break;
    }
    case StepKind::Fused: {
      const auto& reg = plan_.regions[s.region];
      in_views_.resize(reg.inputs.size());
      out_views_.resize(reg.outputs.size());
      for (size_t k = 0; k < reg.inputs.size(); ++k) {
        int j = reg.inputs[k];
        const auto& jn = plan_.fn.nodes[j];
        if (jn.op == Op::ParamRow) {
          in_views_[k] = {params_.param(param_ids_[param_of_node_[j]]), 0};
        } else if (level >= 0 && zero_viewed(j, level)) {
          in_views_[k] = {zero_row_, 0};
        } else {
          in_views_[k] = {in_ptr(j, rr.begin), in_ld(j)};
        }
      }
      for (size_t k = 0; k < reg.outputs.size(); ++k) {
        int j = reg.outputs[k];
        out_views_[k] = {node_ptr(j, rr.begin), ld_of(plan_.node_value[j])};
      }
      Timer t(be_, opts_.profile, &stats_.t_fused);
      ++stats_.fused_calls;
      be_.run_fused(reg.fwd, n, in_views_.data(), out_views_.data());
      break;
    }
  }
}

template <typename T>
ops::RowView<const T> Executor<T>::output(const std::string& name) const {
  int o = plan_.fn.find_output(name);
  if (o < 0) fail("vertex function {}: no output named '{}'", plan_.fn.name, name);
  if (!have_forward_) fail("vertex function {}: output '{}' read before forward()", plan_.fn.name, name);
  int v = plan_.node_value[plan_.fn.outputs[o].value];
  return {value_ptr(v, 0), ld_of(v)};
}

template <typename T>
int Executor<T>::output_width(const std::string& name) const {
  int o = plan_.fn.find_output(name);
  if (o < 0) fail("vertex function {}: no output named '{}'", plan_.fn.name, name);
  return plan_.fn.nodes[plan_.fn.outputs[o].value].width;
}

template <typename T>
void Executor<T>::check_vertex_rows(int node) const {
  if (plan_.node_value.at(node) < 0)
    fail("vertex function {}: node {} is not materialized", plan_.fn.name, node);
  const int pi = pull_of_node_[node];
  if (dedup_on_ && pi >= 0 && dedup_pull_[pi])
    fail("vertex function {}: pull '{}' was read once per distinct input on this batch, so it "
         "has no vertex rows (ExecOptions::dedup_pulls = false keeps them)",
         plan_.fn.name, plan_.fn.pulls[pi].name);
}

template <typename T>
ops::RowView<const T> Executor<T>::node_value(int node) const {
  check_vertex_rows(node);
  const int v = plan_.node_value[node];
  return {value_ptr(v, 0), ld_of(v)};
}

template <typename T>
ops::RowView<const T> Executor<T>::node_grad(int node) const {
  check_vertex_rows(node);
  const int v = plan_.node_value[node];
  return {grad_ptr(v, 0), ld_of(v)};
}

template <typename T>
void Executor<T>::set_push_grad(const std::string& name, const T* grad, long ld) {
  int o = plan_.fn.find_output(name);
  if (o < 0) fail("vertex function {}: no output named '{}'", plan_.fn.name, name);
  if (!opts_.training || !have_forward_)
    fail("vertex function {}: set_push_grad needs a training forward() first", plan_.fn.name);
  int node = plan_.fn.outputs[o].value;
  int v = plan_.node_value[node];
  const auto& base = plan_.values[plan_.values[v].base];
  bool assign = base.push_assign && plan_.values[v].base == v && !push_set_[o];
  Timer t(be_, opts_.profile, &stats_.t_other);
  be_.copy_rows(batch_->num_rows, plan_.fn.nodes[node].width, grad, ld, grad_ptr(v, 0), ld_of(v),
                !assign);
  push_set_[o] = 1;
}

template class Executor<float>;
template class Executor<double>;

}  // namespace copse::scheduler
