// Join heads (see join_head.h), written with the vertex API.
#include "models/join_head.h"

#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"

namespace copse::models {

vertex::VertexFunction similarity_head(int hidden, int sim_hidden, int classes) {
  if (hidden <= 0 || sim_hidden <= 0 || classes <= 0)
    fail("similarity head: widths must be positive (hidden {}, sim_hidden {}, classes {})", hidden,
         sim_hidden, classes);
  vertex::VertexBuilder v("similarity", /*child_slots=*/0);
  auto l = v.pull("in0", hidden);
  auto r = v.pull("in1", hidden);
  auto prod = l * r;
  auto dist = relu(l - r) + relu(r - l);
  auto hs = sigmoid(v.linear({prod, dist}, sim_hidden, "sim.W"));
  v.push("y", v.linear({hs}, classes, "sim.out"));
  return v.build();
}

std::vector<std::string> join_head_names() { return {"similarity"}; }

vertex::VertexFunction make_join_head(const std::string& name, int hidden, int classes) {
  if (name == "similarity") return similarity_head(hidden, 50, classes);
  fail("unknown join head '{}' (valid: {})", name, fmt::join(join_head_names(), ", "));
}

std::vector<float> score_distribution(double score, int classes) {
  if (!(score >= 1 && score <= classes))
    fail("score {} is outside [1, {}]", score, classes);
  std::vector<float> p(classes, 0.f);
  const double f = std::floor(score);
  const int i = static_cast<int>(f) - 1;
  if (i + 1 >= classes) {
    p[classes - 1] = 1.f;
    return p;
  }
  p[i] = static_cast<float>(f - score + 1);
  p[i + 1] = static_cast<float>(score - f);
  return p;
}

}  // namespace copse::models
