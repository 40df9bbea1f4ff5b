// The message of the copse::Error a call throws ("" when it throws none).
#pragma once

#include <functional>
#include <string>

#include "common/error.h"

namespace copse::testutil {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace copse::testutil
