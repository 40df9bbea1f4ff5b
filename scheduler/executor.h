// Executor: runs a compiled ExecPlan over a GraphBatch, forward and backward.
//
// Forward: hoisted steps once over all rows, then the level steps for every
// level (leaves first), then the output steps once. Backward: the reverse,
// with parameter gradients of per-level GEMMs and biases computed once over
// all rows after the level loop (lazy batching). Every buffer lives in the
// caller's Arena, which the caller resets between batches.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "memory/arena.h"
#include "memory/param_store.h"
#include "ops/backend.h"
#include "scheduler/graph_batch.h"
#include "vertex/plan.h"

namespace copse::scheduler {

// What an Executor does besides the forward pass, and its optional paths.
struct ExecOptions {
  bool training = true;  // keep gradient buffers and allow backward()
  bool profile = false;  // time each kind of step (adds a clock read per step)
  // Distinct inputs once: a pull whose only consumers are hoisted GEMMs that
  // read it alone runs those GEMMs over the batch's distinct input ids and
  // gathers the results into the vertex rows (backward: the output gradient
  // is summed per id first). Taken when at most 90% of the pulled rows are
  // distinct; the results equal the per-row path up to rounding.
  bool dedup_pulls = true;
  // Zero views: a gather or GEMM output that is all zeros on a level, read
  // there only by level-phase fused programs (and by GEMM parts skipped on
  // that level whose weight gradient does not span it), is not filled with
  // zeros; the programs read a broadcast zero row instead. Its rows on that
  // level are then unspecified (node_value).
  bool zero_views = true;
};

// Counters of the work an Executor did since reset_stats() (summed over
// batches).
struct ExecStats {
  long batches = 0;  // forward() calls
  long levels = 0;  // levels run, forward
  long gemm_calls = 0;  // backend GEMM calls
  long fused_calls = 0;  // fused elementwise program calls
  long gather_calls = 0;   // gathers, scatters, segment sums, copies
  long fill_calls = 0;  // buffer fills (zeros)
  long zero_skipped = 0;   // GEMMs skipped because their inputs were all zero on a level
  long zero_views = 0;     // zero fills left out: readers got a broadcast zero row
  long row_job_batches = 0;  // batched gather / scatter-add calls (Backend::batch_row_jobs)
  long uploads = 0;        // batch index uploads (backends without host-visible memory)
  double upload_bytes = 0;  // bytes of those uploads
  // Strided path (vertex::Step::strided_view): gathers served on a level by a
  // view of the children's rows (no copy), their backward scatter-adds that
  // the consumers' direct accumulation made unnecessary, and gathers run once
  // over all rows after all so that a lazy weight gradient has its operand.
  long strided_views = 0;
  long strided_grads = 0;  // backward scatter-adds made unnecessary
  long view_rematerialized = 0;  // gathers run over all rows after all
  // Distinct-input path (ExecOptions::dedup_pulls), summed over the batches
  // that took it: rows that read a pull, and distinct ids among them.
  long dedup_rows = 0;
  long dedup_ids = 0;  // distinct ids among those rows
  double gemm_flops = 0;  // 2 m n k summed over the GEMMs
  // Seconds per kind of work (with ExecOptions::profile; the backend is
  // synchronised around each timed call, so on a GPU these are device times).
  double t_gemm = 0;    // GEMMs
  double t_fused = 0;   // fused elementwise programs
  double t_gather = 0;  // gathers, scatters, segment sums, copies
  double t_other = 0;   // fills, the head's copies, the rest
};

template <typename T>
// Runs a compiled vertex function (vertex::ExecPlan) over batches of graphs,
// level by level, forward and backward, on a backend, with the parameters of
// a store and the activations in an arena.
class Executor {
 public:
  // The plan, backend, store and arena must outlive the executor; every pull
  // must be bound (bind_pull / bind_pull_data) before forward().
  Executor(const vertex::ExecPlan& plan, ops::Backend<T>& backend, memory::ParamStore<T>& params,
           memory::Arena<T>& arena, ExecOptions opts = {});

  // Pull `name` reads rows of the parameter `table_param` ([rows, width]),
  // indexed by each vertex's input id; its gradient updates touched rows.
  void bind_pull(const std::string& name, const std::string& table_param);
  // Pull `name` reads rows of caller-owned data (no gradient).
  void bind_pull_data(const std::string& name, const T* table, long ld, int rows);

  // The forward pass over `batch` (which must outlive the backward pass); the
  // arena's memory from its last reset holds the activations.
  void forward(const GraphBatch& batch);
  // Output `name` over all N rows of the batch (row-major, ld given).
  ops::RowView<const T> output(const std::string& name) const;
  // The width of output `name`; throws naming the function if there is none.
  int output_width(const std::string& name) const;
  // Gradient of the loss with respect to output `name` ([N, width], ld).
  // Outputs without one get a zero gradient.
  void set_push_grad(const std::string& name, const T* grad, long ld);
  // The backward pass of the last forward(): parameter gradients are added to
  // the store's (embedding rows marked touched).
  void backward();

  // Forward value / gradient of any materialized node (for tests and tools).
  ops::RowView<const T> node_value(int node) const;
  // The same for its gradient (after backward()).
  ops::RowView<const T> node_grad(int node) const;

  // The batch's index arrays in the backend's memory: the GraphBatch's own
  // vectors on the CPU, one asynchronous upload per batch on CUDA. Valid
  // from forward() until the arena is reset.
  struct BatchIndex {
    const int* input = nullptr;        // [N]
    const int* label = nullptr;        // [N]
    const int* edge_child = nullptr;   // [E]
    const int* edge_parent = nullptr;  // [E]
    const int* child_ptr = nullptr;    // [N+1]
    std::vector<const int*> slot;      // per child slot: [N] child row or -1
    const T* edge_scale = nullptr;     // [E] 1/deg(parent)
    // With the distinct-input path on this batch: the distinct input ids
    // and, per row, the position of its id among them (-1: no input).
    const int* dedup_ids = nullptr;    // [U]
    const int* dedup_pos = nullptr;    // [N]
  };
  // The last forward()'s index arrays.
  const BatchIndex& batch_index() const { return dix_; }

  // The counters since the last reset_stats().
  const ExecStats& stats() const { return stats_; }
  // Zeroes the counters.
  void reset_stats() { stats_ = ExecStats(); }
  // The plan this executor runs.
  const vertex::ExecPlan& plan() const { return plan_; }

 private:
  struct PullBinding {
    int param = -1;  // ParamStore id, or -1 for caller data
    const T* data = nullptr;
    long ld = 0;
    int rows = 0;
  };
  struct Range {
    int begin = 0, end = 0;  // rows
  };

  void check_inputs(const GraphBatch& b);
  void check_vertex_rows(int node) const;  // node_value / node_grad can be read
  // The distinct-input path: eligible pulls and GEMM steps (once), and the
  // batch's distinct ids (per batch, before prepare_index).
  void find_dedup_pulls();
  void prepare_dedup(const GraphBatch& b);
  bool dedup_step(const vertex::Step& s) const {
    return dedup_on_ && dedup_pull_of_step_[&s - plan_.steps.data()] >= 0;
  }
  void prepare_index(const GraphBatch& b);
  void compute_zero_levels();
  Range rows_of(vertex::Domain d, int level) const;  // level -1: all rows
  Range active_rows(const std::vector<int>& nodes, vertex::Domain d) const;
  // First and last level where some node of `nodes` is not known to be zero ({-1, -1}: none).
  std::pair<int, int> active_levels(const std::vector<int>& nodes) const;
  std::vector<int> gemm_parts_reading(int linear, int input) const;
  bool zero_at(int node, int level) const { return zero_[level * num_nodes_ + node] != 0; }
  // Zero views (ExecOptions::zero_views): once per plan, the fill each node's
  // memory comes from and whether all its readers could take a zero row;
  // per batch, the levels where they do.
  void find_zero_view_fillers();
  void compute_zero_views();
  bool zero_viewed(int node, int level) const {
    const int f = filler_of_node_[node];
    return f >= 0 && !zview_.empty() && zview_[static_cast<size_t>(level) * num_nodes_ + f] != 0;
  }
  bool all_zero_at(const std::vector<int>& nodes, int level) const;

  // On this level, the view that stands for a strided gather's value (see
  // vertex::Step::strided_view): row r of the level is row r - row0 of
  // val / grad with leading dimension ld.
  struct LevelView {
    bool on = false;
    T* val = nullptr;
    T* grad = nullptr;
    long ld = 0;
    int row0 = 0;
  };
  void set_level_views(int level);
  void clear_level_views();
  const LevelView* view_of(int value) const;
  StridedRun run_of(int vi, int level) const;
  // Where a step reads node j (in_ptr, in_ld) and writes its gradient
  // (in_grad_ptr): its own buffer, or this level's view.
  T* in_ptr(int node, int row) const;
  T* in_grad_ptr(int node, int row) const;
  long in_ld(int node) const;
  // The rows [a.begin, a.end) of a lazy weight gradient's operand, as spans
  // of contiguous memory; materializes viewed levels when that is cheaper.
  struct Span {
    int begin = 0, end = 0;
    const T* x = nullptr;
    long ld = 0;
  };
  void lazy_operand_spans(const vertex::Step& s, Range a, std::vector<Span>& spans);
  void fill_grad_outside_views(int value);

  T* value_ptr(int value, int row) const;
  T* grad_ptr(int value, int row) const;
  long ld_of(int value) const;
  T* node_ptr(int node, int row) const { return value_ptr(plan_.node_value[node], row); }
  T* node_grad_ptr(int node, int row) const { return grad_ptr(plan_.node_value[node], row); }
  const T* weight(int param_index) const;
  // The stacked weight [sum of outs, K] of a (possibly merged) GEMM step:
  // the parameters themselves when they are adjacent, else a packed copy.
  const T* step_weight(const vertex::Step& s);
  bool weights_adjacent(const vertex::Step& s) const;
  T* weight_grad(int param_index);

  // The operands of a GEMM step: M [rows, out_width] (ld ldm), the part's
  // input block X (ld ldx), the stacked weight columns of the part (ld K).
  struct GemmOperands {
    int out = 0, K = 0, mv = -1;
    long ldm = 0, ldx = 0;
    const T* w = nullptr;
  };
  GemmOperands gemm_operands(const vertex::Step& s);
  void forward_step(const vertex::Step& s, int level);
  void backward_step(const vertex::Step& s, int level);
  void lazy_param_grads(const vertex::Step& s);
  void gemm(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, long lda, const T* b,
            long ldb, T beta, T* c, long ldc);
  void fill(int rows, int width, T* dst, long ld);
  // Gathers (or scatter-adds) of consecutive Gather steps, queued when the
  // backend batches them and issued as one call before the next other step.
  void queue_row_job(bool scatter, const ops::RowJob<T>& job);
  void flush_row_jobs();

  const vertex::ExecPlan& plan_;
  ops::Backend<T>& be_;
  memory::ParamStore<T>& params_;
  memory::Arena<T>& arena_;
  ExecOptions opts_;
  ExecStats stats_;

  int num_nodes_ = 0;
  std::vector<int> param_ids_;         // per fn param: ParamStore id
  std::vector<PullBinding> pulls_;     // per fn pull
  std::vector<int> pull_of_node_;      // node -> pull index
  std::vector<int> source_of_node_;    // gather/edge_child node -> the scattered state's node
  std::vector<int> param_of_node_;     // linear/param_row node -> index into fn.params

  // Per batch.
  const GraphBatch* batch_ = nullptr;
  std::vector<T*> buf_, gbuf_;             // per plan buffer
  // per region, per input: a bias input's gradient rows for one call (a level, or all
  // rows for hoisted and output regions), summed into the bias right after it; or null
  std::vector<std::vector<T*>> param_row_grad_;
  std::vector<std::vector<int>> slot_idx_;      // per slot: [N] child row or -1
  std::vector<T> edge_scale_;                  // [E] 1/deg(parent) for mean reductions
  BatchIndex dix_;
  std::vector<char> index_pack_;               // host staging of the index upload
  std::vector<char> zero_;                     // [L * nodes]
  std::vector<int> pull_rows_per_level_;
  std::vector<int> touched_;
  std::vector<char> push_set_;
  std::vector<T*> packed_w_;                   // per step: packed merged weights, this batch
  // Strided gathers, numbered vi = 0..V-1.
  std::vector<int> view_steps_;                // [V] their steps
  std::vector<int> view_of_value_;             // per value: vi of its base's gather, or -1
  std::vector<LevelView> level_view_;          // [V] this level's views
  std::vector<char> viewed_;                   // [L * V] the view was on at level l (forward)
  std::vector<char> rematerialized_;           // [V] gathered over all rows for backward
  std::vector<Span> spans_;
  bool have_forward_ = false;

  std::vector<int> filler_of_node_;            // gather / GEMM node that fills its memory, or -1
  std::vector<char> zview_ok_;                 // per filler node: no reader needs the zeros
  std::vector<std::vector<int>> zview_parts_;  // per filler node: GEMM steps reading it
  std::vector<char> zview_;                    // [L * nodes] per filler: left unfilled on level l
  T* zero_row_ = nullptr;                      // this batch: a row of zeros, widest node

  // Distinct-input path. Per pull / per step: eligible (the pull's index) or -1.
  std::vector<int> dedup_pull_of_step_;        // GEMM steps that read only the pull
  std::vector<char> dedup_pull_;               // per pull: eligible
  bool dedup_on_ = false;                      // this batch
  int dedup_u_ = 0;                            // distinct ids this batch
  std::vector<int> dedup_ids_, dedup_pos_;     // host copies of the index arrays
  std::vector<int> dedup_stamp_;               // per table row: position + 1 this batch, else 0
  std::vector<T*> dedup_x_, dedup_dx_;         // per pull: [U, width] rows of the ids, gradient
  std::vector<char> dedup_dx_set_;             // per pull: dedup_dx_ written this backward
  std::vector<T*> dedup_dm_;                   // per step: [U, out] output gradient summed per id

  std::vector<ops::RowJob<T>> row_jobs_;
  bool row_jobs_scatter_ = false;

  // Reused call arguments for fused programs.
  std::vector<ops::RowView<const T>> in_views_;
  std::vector<ops::RowView<T>> out_views_;
};

}  // namespace copse::scheduler
