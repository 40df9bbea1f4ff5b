// A scoped timer adding its lifetime to a counter when profiling is on
// (internal to the executor's .cpp files). It synchronises the backend on
// entry and exit, so work queued on a GPU is charged to the call that queued it.
#pragma once

#include <chrono>

#include "ops/backend.h"

namespace copse::scheduler {

using Clock = std::chrono::steady_clock;
struct Timer {
  template <typename T>
  Timer(ops::Backend<T>& be, bool enabled, double* a) : on(enabled), acc(a) {
    if (!on) return;
    be.sync();
    sync = [](void* b) { static_cast<ops::Backend<T>*>(b)->sync(); };
    backend = &be;
    t0 = Clock::now();
  }
  ~Timer() {
    if (!on) return;
    sync(backend);
    *acc += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool on;
  double* acc;
  void (*sync)(void*) = nullptr;
  void* backend = nullptr;
  Clock::time_point t0;
};

}  // namespace copse::scheduler
