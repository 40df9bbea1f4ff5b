// OptimizerConfig: which update rule ParamStore applies and its hyper-parameters.
// The kernels themselves are in ops/optimizer_cpu.h.
#pragma once

#include <algorithm>
#include <string>

namespace copse::memory {

// Defaults: lr 0.01 (a middle ground: typical Adam runs use 1e-3, SGD 0.1);
// momentum 0 (plain SGD); Adam betas 0.9 / 0.999; eps 1e-8, shared by Adam
// (added to sqrt(v_hat)) and Adagrad (added to sqrt(h)); no L2; no clipping.
struct OptimizerConfig {
  // The update rule.
  enum Kind { Sgd, Adagrad, Adam };
  Kind kind = Sgd;  // the update rule
  float lr = 0.01f;  // learning rate
  float momentum = 0.f;   // SGD only; 0 = plain SGD
  float beta1 = 0.9f;     // Adam
  float beta2 = 0.999f;   // Adam
  float eps = 1e-8f;      // Adam, Adagrad
  float l2 = 0.f;         // folded into the gradient: g += l2 * p
  float clip_norm = 0.f;  // global L2 norm clipping of all gradients; 0 = off

  // Throws copse::Error naming the first out-of-range field.
  void validate() const;
};

// What an update wrote, as bounds (upper bounds on |value|; whether any
// state value was negative, or -0), merged over calls. `known` is false when
// a backend does not track them (CUDA).
struct WrittenBounds {
  bool known = true;  // false: no bounds (the backend does not track them)
  double p_max = 0;  // the largest |parameter| written
  double s_max[2] = {0, 0};  // the largest |value| written to each state slot
  bool s_neg[2] = {false, false};  // whether a slot got a negative value (or -0)
  // Merges the bounds of one more update.
  void widen(double p, double s0, double s1, bool neg0, bool neg1) {
    p_max = std::max(p_max, p);
    s_max[0] = std::max(s_max[0], s0);
    s_max[1] = std::max(s_max[1], s1);
    s_neg[0] = s_neg[0] || neg0;
    s_neg[1] = s_neg[1] || neg1;
  }
  // Merges another set of bounds (unknown if either is).
  void widen(const WrittenBounds& o) {
    known = known && o.known;
    widen(o.p_max, o.s_max[0], o.s_max[1], o.s_neg[0], o.s_neg[1]);
  }
};

// Whether the update of `c` at step t can only write finite values when
// every parameter is at most b.p_max in magnitude, every state value of slot
// k at most b.s_max[k] (and not negative where the rule takes its square
// root), and every gradient at most grad_bound: each intermediate of the rule
// is bounded in real arithmetic and the bound kept below limit / 8 (limit:
// the largest value of the type), which float rounding cannot close. False
// whenever it cannot tell (unknown bounds, eps = 0): the caller then checks
// the update itself.
bool update_stays_finite(const OptimizerConfig& c, long t, const WrittenBounds& b,
                         double grad_bound, double limit);

// "sgd", "adagrad", "adam" (case-insensitive); anything else throws a
// copse::Error that lists the valid names.
OptimizerConfig::Kind parse_optimizer_kind(const std::string& name);
// The name parse_optimizer_kind() reads ("sgd", "adagrad", "adam").
const char* optimizer_kind_name(OptimizerConfig::Kind kind);

}  // namespace copse::memory
