// Parsing and validation of OptimizerConfig.
#include "memory/optimizer.h"

#include <cctype>
#include <cmath>

#include "common/error.h"

namespace copse::memory {

namespace {

constexpr OptimizerConfig::Kind kKinds[] = {OptimizerConfig::Sgd, OptimizerConfig::Adagrad,
                                            OptimizerConfig::Adam};

}  // namespace

const char* optimizer_kind_name(OptimizerConfig::Kind kind) {
  switch (kind) {
    case OptimizerConfig::Sgd: return "sgd";
    case OptimizerConfig::Adagrad: return "adagrad";
    case OptimizerConfig::Adam: return "adam";
  }
  return "?";
}

OptimizerConfig::Kind parse_optimizer_kind(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (OptimizerConfig::Kind k : kKinds)
    if (lower == optimizer_kind_name(k)) return k;
  fail("[optimizer] unknown optimizer '{}'; valid names: sgd, adagrad, adam", name);
}

void OptimizerConfig::validate() const {
  if (!(lr > 0.f) || !std::isfinite(lr)) fail("[optimizer] lr must be > 0, got {}", lr);
  if (!(momentum >= 0.f && momentum < 1.f))
    fail("[optimizer] momentum must be in [0, 1), got {}", momentum);
  if (!(beta1 >= 0.f && beta1 < 1.f)) fail("[optimizer] beta1 must be in [0, 1), got {}", beta1);
  if (!(beta2 >= 0.f && beta2 < 1.f)) fail("[optimizer] beta2 must be in [0, 1), got {}", beta2);
  if (!(eps > 0.f)) fail("[optimizer] eps must be > 0, got {}", eps);
  if (!(l2 >= 0.f)) fail("[optimizer] l2 must be >= 0, got {}", l2);
  if (!(clip_norm >= 0.f)) fail("[optimizer] clip_norm must be >= 0 (0 = off), got {}", clip_norm);
}

}  // namespace copse::memory
