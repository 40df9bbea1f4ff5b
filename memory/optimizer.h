// OptimizerConfig: which update rule ParamStore applies and its hyper-parameters.
// The kernels themselves are in ops/optimizer_cpu.h.
#pragma once

#include <string>

namespace copse::memory {

// Defaults: lr 0.01 (a middle ground: typical Adam runs use 1e-3, SGD 0.1);
// momentum 0 (plain SGD); Adam betas 0.9 / 0.999; eps 1e-8, shared by Adam
// (added to sqrt(v_hat)) and Adagrad (added to sqrt(h)); no L2; no clipping.
struct OptimizerConfig {
  enum Kind { Sgd, Adagrad, Adam } kind = Sgd;
  float lr = 0.01f;
  float momentum = 0.f;   // SGD only; 0 = plain SGD
  float beta1 = 0.9f;     // Adam
  float beta2 = 0.999f;   // Adam
  float eps = 1e-8f;      // Adam, Adagrad
  float l2 = 0.f;         // folded into the gradient: g += l2 * p
  float clip_norm = 0.f;  // global L2 norm clipping of all gradients; 0 = off

  // Throws copse::Error naming the first out-of-range field.
  void validate() const;
};

// "sgd", "adagrad", "adam" (case-insensitive); anything else throws a
// copse::Error that lists the valid names.
OptimizerConfig::Kind parse_optimizer_kind(const std::string& name);
const char* optimizer_kind_name(OptimizerConfig::Kind kind);

}  // namespace copse::memory
