// The per-vertex reference of the child-sum Tree-LSTM (models/cells.h),
// written from its equations on the reference tape.
#pragma once

#include <vector>

#include "tests/reference_harness.h"
#include "tests/reference_tape.h"

namespace copse::reftest {

// forget_gates = false: f_k = 1, a deliberately wrong reference.
inline RefCell child_sum_reference(int E, int H, bool forget_gates = true) {
  return [E, H, forget_gates](Tape& t, RefParams& P, const scheduler::Graph& g, int v,
                              std::vector<RefVertex>& vs) {
    auto part = [&](int a, int k) { return t.slice(a, k * H, H); };
    int x = input_row(t, P, g, v, E);
    std::vector<int> hk, terms;
    for (int c : children_of(g, v)) hk.push_back(vs[c].state.at("h"));
    int htil = t.sum(hk, H);
    int gx = t.linear(P.at("W"), nullptr, {x});
    int gh = t.linear(P.at("U"), &P.at("U.b"), {htil});
    for (int c : children_of(g, v)) {
      if (!forget_gates) {
        terms.push_back(vs[c].state.at("c"));
        continue;
      }
      int f = t.sigmoid(t.add(part(gx, 3), t.linear(P.at("Uf"), &P.at("Uf.b"), {vs[c].state.at("h")})));
      terms.push_back(t.mul(f, vs[c].state.at("c")));
    }
    int i = t.sigmoid(t.add(part(gx, 0), part(gh, 0)));
    int o = t.sigmoid(t.add(part(gx, 1), part(gh, 1)));
    int u = t.tanh(t.add(part(gx, 2), part(gh, 2)));
    terms.push_back(t.mul(i, u));
    int c = t.sum(terms, H);
    int h = t.mul(o, t.tanh(c));
    vs[v].state = {{"h", h}, {"c", c}};
    vs[v].out = {{"h", h}};
  };
}

}  // namespace copse::reftest
