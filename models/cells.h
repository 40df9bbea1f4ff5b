// The model zoo: recurrent cells for trees, sequences and DAGs, each written
// once with the vertex API. Every cell pulls "word" [embed] and pushes "h"
// [hidden], so models::SentimentModel can train any of them.
#pragma once

#include <string>
#include <vector>

#include "vertex/builder.h"

namespace copse::models {

// Child-sum Tree-LSTM (Tai et al. 2015) over any number of children:
//   h~ = sum_k h_k
//   [i o u] = W_iou x + U h~ + b                (W: [4H, E] shared with f, U: [3H, H])
//   f_k = sig(W_f x + U_f h_k + b_f)            (one per edge: over_children)
//   c = sig(i)*tanh(u) + sum_k f_k*c_k ;  h = sig(o)*tanh(c)
// Params: W [4H, E] (rows i o u f), U [3H, H], U.b [3H], Uf [H, H], Uf.b [H].
vertex::VertexFunction child_sum_tree_lstm(int embed, int hidden);

// N-ary Tree-GRU over `slots` ordered children (after Zhou et al. 2016 and the
// Cavs evaluation), children read with gather(k, "h") (zeros if absent):
//   [r_1 .. r_N z] = sig(W_rz x + U_rz [h_1; ..; h_N] + b_rz)   (a reset gate per child)
//   h^ = tanh(W_h x + U_h [r_1*h_1; ..; r_N*h_N] + b_h)
//   h  = z*hbar + (1-z)*h^,  hbar = mean of the children's h (0 at a leaf)
// (1-z) is sig(-a_z), with -a written a-a-a (exact; the API has no constants).
// Params: W [(N+2)H, E] (rows r_1..r_N z h), U [(N+1)H, N*H], U.b, Uh [H, N*H], Uh.b.
vertex::VertexFunction nary_tree_gru(int embed, int hidden, int slots = 2);

// Tree-FC (the Cavs evaluation's fully connected tree cell):
//   h = act(W [x; sum_k h_k] + b),  act = tanh, or relu with use_relu.
// Params: W [H, E+H], W.b [H].
vertex::VertexFunction tree_fc(int embed, int hidden, bool use_relu = false);

// Sequence LSTM over a chain (one child slot: the previous vertex):
//   [i f o u] = W x + U h_prev + b ;  c = sig(i)*tanh(u) + sig(f)*c_prev ;  h = sig(o)*tanh(c)
// Params: W [4H, E], U [4H, H], U.b [4H].
vertex::VertexFunction seq_lstm(int embed, int hidden);

// Two stacked LSTM layers in one vertex function (states h1 c1 h2 c2): layer 1
// reads x and h1_prev, layer 2 reads h1 and h2_prev; pushes "h" = h2.
// Params: W1 [4H, E], U1 [4H, H], U1.b, W2 [4H, H], U2 [4H, H], U2.b.
vertex::VertexFunction seq_lstm2(int embed, int hidden);

// Sequence GRU (the cuDNN/PyTorch form) over a chain:
//   [z r n]_x = W x + W.b ;  [z r n]_h = U h_prev + U.b
//   z = sig(z_x + z_h), r = sig(r_x + r_h), n = tanh(n_x + r*n_h)
//   h = (1-z)*n + z*h_prev            ((1-z) as sig(-a_z), exact)
// Params: W [3H, E], W.b [3H], U [3H, H], U.b [3H].
vertex::VertexFunction seq_gru(int embed, int hidden);

// Gated message passing over DAGs (any number of children, shared children):
//   a_k = sig(P x + Ue h_k + Ue.b) * h_k        (per-edge gated message)
//   m   = mean_k a_k                            (0 at a leaf)
//   [g a] = W [x; m] + W.b
//   h = sig(g)*tanh(a) + (1-sig(g))*m          ((1-sig(g)) as sig(-g), exact)
// |h| <= 1 whatever the depth: h is a convex mix of tanh(a) and a mean of gated h_k.
// Params: P [H, E], Ue [H, H], Ue.b [H], W [2H, E+H], W.b [2H].
vertex::VertexFunction dag_gated(int embed, int hidden);

// Registry: tree-lstm (models::tree_lstm_cell), child-sum-lstm, tree-gru
// (2 slots), tree-fc (tanh), lstm, gru, lstm2, dag-gated.
std::vector<std::string> cell_names();
// Throws copse::Error listing the valid names for an unknown one.
vertex::VertexFunction make_cell(const std::string& name, int embed, int hidden);

}  // namespace copse::models
