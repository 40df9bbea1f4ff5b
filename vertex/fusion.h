// Fusion: turns an elementwise region into a forward FusedProgram and derives
// its backward program by reverse-mode differentiation, once per function.
#pragma once

#include "vertex/plan.h"

namespace copse::vertex {

// Fills region.fwd and region.bwd (see Region in plan.h for their calling
// convention). Needs region.inputs/outputs/input_grad_accumulate.
void build_region_programs(Region& region, const VertexFunction& fn, const ExecPlan& plan,
                           size_t region_index);

}  // namespace copse::vertex
