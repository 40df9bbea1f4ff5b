// Join heads: the head of a model whose examples are several graphs (a
// sentence pair: two). A join head is a vertex function run once per
// example: it pulls "in0" .. "in{k-1}" [hidden], the cell's push "h" at the
// chosen vertex of each of the example's k graphs (their roots unless the
// example says otherwise), and pushes "y" [width], the head's output
// (logits for a softmax loss, the prediction for a squared one).
#pragma once

#include <string>
#include <vector>

#include "vertex/builder.h"

namespace copse::models {

// The similarity head of Tai et al. (2015) over two vectors:
//   hx = h_L * h_R,  h+ = |h_L - h_R|  (written relu(h_L - h_R) + relu(h_R - h_L))
//   h_s = sig(W [hx; h+] + b)          (W: "sim.W" [sim_hidden, 2 hidden], "sim.W.b")
//   y = W_p h_s + b_p                  ("sim.out" [classes, sim_hidden], "sim.out.b")
// y are the logits of the score classes (SICK: 5, the scores 1..5).
vertex::VertexFunction similarity_head(int hidden, int sim_hidden, int classes);

// Registry: "similarity" (similarity_head with sim_hidden 50, Tai et al.'s
// setting). Throws copse::Error listing the valid names for an unknown one.
std::vector<std::string> join_head_names();
// The join head `name` for cells of width `hidden` and `classes` outputs.
vertex::VertexFunction make_join_head(const std::string& name, int hidden, int classes);

// The sparse target distribution of Tai et al. for a score y in [1, classes]:
// p[floor(y)] = floor(y) - y + 1, p[floor(y) + 1] = y - floor(y) (scores 1..K
// at indices 0..K-1). Throws naming the score when it is out of range.
std::vector<float> score_distribution(double score, int classes);

}  // namespace copse::models
