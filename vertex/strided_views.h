// Strided views: the level gathers whose consumers can read the children's
// rows in place (vertex::Step::strided_view), decided once per function.
#pragma once

#include <vector>

#include "vertex/plan.h"

namespace copse::vertex {

// Sets Step::strided_view on every level Gather / EdgeChild step of `plan`
// (values placed, steps scheduled) that is neither a state nor an output,
// owns its buffer, and whose every reader (through slice views) is a
// level-phase fused region, an edge reduction, a copy into a GEMM operand, or
// a level GEMM part that reads it alone where it lives. Returns, per value,
// whether it is the value of such a gather.
std::vector<char> mark_strided_views(ExecPlan& plan);

}  // namespace copse::vertex
