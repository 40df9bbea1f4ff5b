// Fusion: turns an elementwise region into a forward FusedProgram and derives
// its backward program by reverse-mode differentiation, once per function.
#pragma once

#include "vertex/plan.h"

namespace copse::vertex {

// Fills region.fwd and region.bwd (see Region in plan.h for their calling
// convention). Needs region.inputs/outputs/input_grad_accumulate. With
// `optimize`, both go through ops::optimize_fused once the backward program
// is derived (from the forward program as written).
void build_region_programs(Region& region, const VertexFunction& fn, const ExecPlan& plan,
                           size_t region_index, bool optimize);

}  // namespace copse::vertex
