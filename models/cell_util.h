// Helpers shared by the cells of the model zoo (models/*.cpp).
#pragma once

#include "vertex/builder.h"

namespace copse::models {

// 1 - sig(a) == sig(-a); -a is (a - a) - a, exact in floating point, since
// the API has no constants.
inline vertex::Value one_minus_sigmoid(const vertex::Value& a) { return sigmoid((a - a) - a); }

}  // namespace copse::models
