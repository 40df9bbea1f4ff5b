// SspClock (see ssp_clock.h).
#include "memory/ssp_clock.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace copse::memory {

SspClock::SspClock(int workers, int staleness, std::chrono::milliseconds timeout,
                   std::string label, std::string prefix)
    : workers_(workers),
      staleness_(staleness),
      timeout_(timeout),
      label_(std::move(label)),
      prefix_(std::move(prefix)) {
  if (workers < 1) copse::fail("SSP: need at least one worker, got {}", workers);
  if (staleness < 0) copse::fail("SSP: staleness must be >= 0, got {}", staleness);
  clock_.assign(workers, 0);
  finish_epoch_.assign(workers, -1);
  stats_.waits.assign(workers, 0);
  stats_.wait_s.assign(workers, 0.0);
}

long SspClock::tick(int w) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  const long c = ++clock_.at(w);
  ++stats_.clocks;
  cv_.notify_all();
  return c;
}

void SspClock::set_clock(int w, long clock) {
  std::lock_guard<std::mutex> lock(mu_);
  long& mine = clock_.at(w);
  if (clock > mine) {
    stats_.clocks += clock - mine;
    mine = clock;
    cv_.notify_all();
  }
}

void SspClock::finish(int w, long epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  finish_epoch_.at(w) = std::max(finish_epoch_.at(w), epoch < 0 ? epoch_ : epoch);
  cv_.notify_all();
}

void SspClock::start_epoch() {
  std::lock_guard<std::mutex> lock(mu_);
  ++epoch_;
  cv_.notify_all();
}

long SspClock::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return epoch_;
}

bool SspClock::finished(int w) const {
  std::lock_guard<std::mutex> lock(mu_);
  return !active_locked(w);
}

long SspClock::min_clock_locked() const {
  long m = std::numeric_limits<long>::max();
  for (int r = 0; r < workers_; ++r)
    if (active_locked(r)) m = std::min(m, clock_[r]);
  return m == std::numeric_limits<long>::max() ? 0 : m;
}

void SspClock::wait_readable(int w, long c) {
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  const long need = c - staleness_;
  auto ready_now = [&] {
    if (aborted_) return true;
    for (int r = 0; r < workers_; ++r)
      if (active_locked(r) && clock_[r] < need) return false;
    return true;
  };
  if (!ready_now()) {
    ++stats_.waits[w];
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = cv_.wait_for(lock, timeout_, ready_now);
    stats_.wait_s[w] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ok) {
      std::string slow;
      for (int r = 0; r < workers_; ++r)
        if (active_locked(r) && clock_[r] < need)
          slow += fmt::format("{}{} (clock {})", slow.empty() ? "" : ", ", r, clock_[r]);
      fail_locked(fmt::format("{}SSP: {} {} at clock {} waited {} ms for {}(s) {}", prefix_, label_,
                              w, c, timeout_.count(), label_, slow));
    }
  }
  if (aborted_) throw Error(abort_reason_);
  const long lead = c - min_clock_locked();
  stats_.max_lead = std::max(stats_.max_lead, lead);
  ++stats_.lead_histogram[lead];
}

bool SspClock::ready(long need) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (int r = 0; r < workers_; ++r)
    if (active_locked(r) && clock_[r] < need) return false;
  return true;
}

long SspClock::complete_through(const std::vector<long>& applied) const {
  std::lock_guard<std::mutex> lock(mu_);
  long m = std::numeric_limits<long>::max();
  for (int r = 0; r < workers_; ++r)
    if (active_locked(r)) m = std::min(m, applied.at(r));
  return m == std::numeric_limits<long>::max() ? newest(applied) : m;
}

long SspClock::newest(const std::vector<long>& applied) {
  long m = 0;
  for (long a : applied) m = std::max(m, a);
  return m;
}

void SspClock::record_read(int w, long c, long oldest, long newest_clock, long bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  (void)w;
  ++stats_.reads;
  ++stats_.oldest_histogram[c - oldest];
  ++stats_.newest_histogram[c - newest_clock];
  if (c - oldest > staleness_) ++stats_.violations;
  stats_.bytes_pulled += bytes;
}

void SspClock::record_push(long bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.bytes_pushed += bytes;
}

void SspClock::set_nonfinite_policy(bool skip, int max_consecutive) {
  std::lock_guard<std::mutex> lock(mu_);
  skip_nonfinite_ = skip;
  max_skipped_ = max_consecutive;
}

void SspClock::skip_push(int w, long clock, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  const std::string where = fmt::format("{}SSP: {} {} at clock {}: {}", prefix_, label_, w, clock, what);
  if (!skip_nonfinite_) fail_locked(where + "; training stopped");
  ++stats_.skipped;
  if (max_skipped_ > 0 && ++consecutive_skips_ >= max_skipped_)
    fail_locked(fmt::format("{}training diverged: {} pushes in a row were skipped (the last, {})",
                            prefix_, consecutive_skips_, where));
}

void SspClock::push_ok() {
  std::lock_guard<std::mutex> lock(mu_);
  consecutive_skips_ = 0;
}

void SspClock::abort(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!aborted_) {
    aborted_ = true;
    abort_reason_ = why;
  }
  cv_.notify_all();
}

bool SspClock::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

void SspClock::check() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
}

void SspClock::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_locked(why);
}

void SspClock::fail_locked(const std::string& why) {
  if (!aborted_) {
    aborted_ = true;
    abort_reason_ = why;
  }
  cv_.notify_all();
  throw Error(abort_reason_);
}

long SspClock::clock(int w) const {
  std::lock_guard<std::mutex> lock(mu_);
  return clock_.at(w);
}

long SspClock::min_clock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return min_clock_locked();
}

SspStats SspClock::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace copse::memory
