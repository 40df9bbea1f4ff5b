// A scoped timer adding its lifetime to a counter when profiling is on
// (internal to the executor's .cpp files).
#pragma once

#include <chrono>

namespace copse::scheduler {

using Clock = std::chrono::steady_clock;
struct Timer {
  bool on;
  double* acc;
  Clock::time_point t0;
  Timer(bool enabled, double* a) : on(enabled), acc(a) {
    if (on) t0 = Clock::now();
  }
  ~Timer() {
    if (on) *acc += std::chrono::duration<double>(Clock::now() - t0).count();
  }
};

}  // namespace copse::scheduler
