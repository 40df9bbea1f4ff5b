// The binary constituency Tree-LSTM cell (Tai et al. 2015), written once with
// the vertex API.
#pragma once

#include "vertex/builder.h"

namespace copse::models {

// Leaves read a word vector x, internal vertices their two children:
//   [i o u]        = W x                      (W: [3H, E], leaves only)
//   [i o u fl fr] += U [h_l; h_r] + b         (U: [5H, 2H], b: [5H])
//   c = sig(i)*tanh(u) + sig(fl)*c_l + sig(fr)*c_r
//   h = sig(o)*tanh(c)
// Scatters h and c to the parent and pushes h to the loss head.
vertex::VertexFunction tree_lstm_cell(int embed, int hidden);

}  // namespace copse::models
