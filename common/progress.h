// Progress: a one-line progress bar with rate and ETA, drawn on a terminal only.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace copse {

class Progress {
 public:
  // Draws on `out` only when it is a terminal (or when force is set).
  Progress(std::string label, long total, std::string unit, std::FILE* out = stderr,
           bool force = false);
  ~Progress();
  void update(long done, const std::string& extra = "");
  void finish();
  bool active() const { return active_; }

 private:
  std::string label_, unit_;
  long total_;
  std::FILE* out_;
  bool active_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace copse
