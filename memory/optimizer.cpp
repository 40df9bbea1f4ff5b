// Parsing and validation of OptimizerConfig.
#include "memory/optimizer.h"

#include <algorithm>
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

bool update_stays_finite(const OptimizerConfig& c, long t, const WrittenBounds& b,
                         double grad_bound, double limit) {
  if (!b.known || !(grad_bound >= 0) || !(c.eps > 0.f) || t < 1) return false;
  const double lr = c.lr, l2 = c.l2, eps = c.eps, P = b.p_max, S0 = b.s_max[0], S1 = b.s_max[1];
  const double gi = grad_bound + l2 * P;  // |g + l2 p|
  double worst = std::max({gi, P, S0, S1, l2 * P});
  switch (c.kind) {
    case OptimizerConfig::Sgd: {
      const double v = c.momentum * S0 + gi;  // |mu v + g'| (v = g' without momentum)
      worst = std::max({worst, v, lr * v, P + lr * v});
      break;
    }
    case OptimizerConfig::Adagrad: {
      if (b.s_neg[0]) return false;  // sqrt(h) of a negative h
      // h' = h + g'^2 and |g'| / (sqrt(h') + eps) <= |g'| / eps.
      const double h = S0 + gi * gi;
      worst = std::max({worst, gi * gi, h, lr * gi, lr * gi / eps, P + lr * gi / eps});
      break;
    }
    case OptimizerConfig::Adam: {
      if (b.s_neg[1]) return false;
      const double c1 = 1.0 / (1.0 - std::pow(static_cast<double>(c.beta1), t));
      const double c2 = 1.0 / (1.0 - std::pow(static_cast<double>(c.beta2), t));
      const double m = c.beta1 * S0 + gi, v = c.beta2 * S1 + gi * gi;  // (1 - beta) <= 1
      const double step = lr * m * c1 / eps;
      worst = std::max({worst, gi * gi, m, v, m * c1, v * c2, lr * m * c1, step, P + step});
      break;
    }
  }
  return worst < limit / 8;  // false for inf and NaN too
}

}  // namespace copse::memory
