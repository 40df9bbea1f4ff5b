// ExecPlan: a vertex function compiled once into forward and backward steps.
//
// Compilation (vertex/compile.cpp): classify nodes (hoisted: depend only on
// pulls and parameters, run once over all rows before the level loop;
// level: depend on children, run per level; output: feed only pushes, run
// once after the loop), form maximal convex elementwise regions and give each
// a FusedProgram and a derived backward FusedProgram, lay the inputs of every
// GEMM side by side so one GEMM serves all of them, and decide for every
// gradient buffer whether its contributions overwrite or accumulate.
#pragma once

#include <string>
#include <vector>

#include "ops/fused_program.h"
#include "vertex/ir.h"

namespace copse::vertex {

// When a step runs: once over all rows before the level loop (it reads no
// child), once per level, or once over all rows after the loop.
enum class Phase { Hoisted = 0, Level = 1, Output = 2 };
// "hoisted", "level", "output".
const char* phase_name(Phase p);

// A buffer of rows (N vertex rows or E edge rows per batch) x width columns.
struct PlanBuffer {
  Domain domain = Domain::Vertex;  // vertex rows or edge rows
  int width = 0;                   // columns
  std::string name;                // for debugging: a value's, or "<param>.merged" / ".in<k>"
};

// Where a node's value lives: columns [col, col+width) of a buffer. Gradients
// live in a twin buffer with the same layout.
struct PlanValue {
  int node = -1;   // the node whose value this is
  int buf = -1;    // index into ExecPlan::buffers
  int col = 0;     // first column in the buffer
  int width = 0;   // columns
  int base = -1;            // the value that owns the memory (itself, or for a view its base)
  bool grad_zero_fill = false;  // gradient zeroed before backward, all contributions add
  bool push_assign = false;     // set_push_grad overwrites (it is the first contributor)
};

// What a step does: a source op, one GEMM (part), a fused elementwise
// region, or a copy into a GEMM's input columns.
enum class StepKind { Pull, Gather, EdgeChild, EdgeParent, ReduceEdges, MatMul, Fused, Copy };
// The kind's lower-case name, for to_string().
const char* step_kind_name(StepKind k);

// One step of the schedule the executor runs (forward; backward in reverse).
struct Step {
  StepKind kind = StepKind::Fused;  // what it does
  Phase phase = Phase::Level;       // when it runs
  Domain domain = Domain::Vertex;   // over vertex rows or edge rows
  int node = -1;  // the node produced (MatMul: the matmul node; Copy: the source node)
  // MatMul: one GEMM over the part's inputs, which sit side by side at
  // columns [in_col, in_col+k) of buffer in_buf; uses W columns [w_col, w_col+k).
  int param = -1;
  int w_col = 0;                  // MatMul: first weight column of this part
  int k = 0;                      // MatMul: the part's inner dimension
  int in_buf = -1;                // MatMul: the inputs' buffer (Copy: the destination)
  int in_col = 0;                 // MatMul: the inputs' first column (Copy: the destination's)
  std::vector<int> part_inputs;   // MatMul: the input nodes of this part
  // GEMM merging: linears over the same inputs share one GEMM. Their outputs
  // sit side by side in one buffer and their weights are stacked by rows
  // ([sum of outs, K]); mm_nodes[0] == node. out_width = sum of their widths.
  std::vector<int> mm_nodes;
  std::vector<int> mm_params;  // the merged linears' weights (indices into fn.params)
  int out_width = 0;           // the merged outputs' total width
  bool first_part = true;       // the first part writes M (beta 0), later parts add
  bool grad_accumulate = false; // backward: d(inputs) += (else =)
  // Gather / EdgeChild: on a level where the children form a StridedRun
  // (scheduler/graph_batch.h), the consumers read the children's rows in
  // place (a strided view) and write their gradients straight into the
  // children's gradient rows, so nothing is copied or scattered. Set when
  // every consumer can take a view: level-phase fused regions, copies, edge
  // reductions, and GEMM parts that read this value alone where it lives;
  // the value is then neither a state nor an output. On a viewed level every
  // writer of its gradient adds (Region::bwd_views for fused programs); on
  // the other levels the gradient is written as the compiler decided.
  bool strided_view = false;
  // Fused
  int region = -1;
  // Copy: node's value copied into columns [in_col, ...) of in_buf.
};

// A fused elementwise region: nodes of one phase and domain run as one
// program per call, forward and backward.
struct Region {
  Phase phase = Phase::Level;      // when it runs
  Domain domain = Domain::Vertex;  // over which rows
  std::vector<int> nodes;    // in topological order
  std::vector<int> inputs;   // nodes read (values, views or ParamRows)
  std::vector<int> outputs;  // region nodes that are materialized
  ops::FusedProgram fwd;     // inputs: values of `inputs`; outputs: values of `outputs`
  // bwd inputs: values of `inputs`, then gradients of `outputs`.
  // bwd outputs: gradients of `inputs` (for a ParamRow: one row per row, summed later).
  ops::FusedProgram bwd;
  std::vector<bool> input_grad_accumulate;  // per input: bwd adds into the gradient
  // bwd, except that the inputs read through a Step::strided_view gather add
  // into their gradients: for the levels where one of them is viewed (empty
  // when the region reads no such gather).
  ops::FusedProgram bwd_views;
  // Per input: for a bias row (ParamRow) whose per-row gradient would be an
  // exact copy of input k's gradient (the bias added to a GEMM output), k;
  // else -1. bwd and bwd_views then do not write that output, and the
  // executor sums input k's gradient rows of the call into the bias gradient.
  std::vector<int> bias_grad_from;
};

// A compiled vertex function: where every value lives, the fused regions and
// the schedule (what scheduler::Executor runs).
struct ExecPlan {
  VertexFunction fn;               // the function compiled
  std::vector<Phase> node_phase;   // per node
  std::vector<int> node_value;     // per node: index into values, -1 if not materialized
  std::vector<int> node_region;    // per node: region, -1 if none
  std::vector<PlanBuffer> buffers;  // the activation buffers of a batch
  std::vector<PlanValue> values;    // materialized node values
  std::vector<Region> regions;      // fused elementwise regions
  std::vector<Step> steps;         // forward order: all Hoisted, then Level, then Output
  std::vector<int> zero_fill_values;  // values whose gradient is zeroed before backward
  // Weights of merged GEMMs, each group to be stored consecutively (see
  // Step::mm_params); add_plan_params follows this order.
  std::vector<std::vector<int>> param_groups;

  // MatMul steps in phase p.
  int num_gemm_steps(Phase p) const;
  // The function (VertexFunction::to_string), then one line per step, for debugging.
  std::string to_string() const;
};

// Switches for the compiler's optimisations (all on by default).
struct CompileOptions {
  bool fuse = true;  // false: every elementwise node is its own region (for tests)
  bool merge_gemms = true;  // false: one GEMM per linear even when inputs are shared
  bool strided_views = true;  // false: every gather copies (Step::strided_view never set)
  bool optimize_programs = true;  // false: fused programs as derived (ops::optimize_fused skipped)
};

// Compiles `fn` (as built by VertexBuilder::build()): phases, fusion, GEMM
// merging, buffer layout, strided views, the schedule. Throws only for a bug
// of the compiler (copse::InternalError; copse::Error from FusedProgram::finalize).
ExecPlan compile(const VertexFunction& fn, const CompileOptions& opts = {});

}  // namespace copse::vertex
