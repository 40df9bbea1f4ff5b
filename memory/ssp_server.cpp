// SspServer (see ssp_server.h).
#include "memory/ssp_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace copse::memory {

template <typename T>
SspServer<T>::SspServer(ParamStore<T>& master, int workers, int staleness,
                        std::chrono::milliseconds timeout)
    : master_(master), workers_(workers), staleness_(staleness), timeout_(timeout) {
  if (workers < 1) fail("SSP: need at least one worker, got {}", workers);
  if (staleness < 0) fail("SSP: staleness must be >= 0, got {}", staleness);
  clock_.assign(workers, 0);
  finished_.assign(workers, 0);
}

template <typename T>
void SspServer<T>::fail_locked(const std::string& why) {
  aborted_ = true;
  abort_reason_ = why;
  cv_.notify_all();
  throw Error(why);
}

template <typename T>
void SspServer<T>::abort(int rank, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!aborted_) {
    aborted_ = true;
    abort_reason_ = fmt::format("worker {} failed: {}", rank, why);
  }
  cv_.notify_all();
}

// Applies the replica's gradients to the master as one optimizer step.
template <typename T>
bool SspServer<T>::push(int rank, ParamStore<T>& replica) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  if (replica.total_elements() != master_.total_elements())
    fail_locked(fmt::format("SSP: worker {} has a different parameter layout", rank));
  master_.zero_grads();
  const size_t dense = master_.dense_elements();
  std::copy(replica.grads_flat(), replica.grads_flat() + dense, master_.grads_flat());
  long bytes = static_cast<long>(dense * sizeof(T));
  for (int id = 0; id < master_.size(); ++id) {
    if (!master_.spec(id).sparse_rows) continue;
    const auto& rows = replica.touched_rows(id);
    const int w = master_.row_width(id);
    for (int r : rows)
      std::copy(replica.grad(id) + static_cast<size_t>(r) * w,
                replica.grad(id) + static_cast<size_t>(r + 1) * w,
                master_.grad(id) + static_cast<size_t>(r) * w);
    master_.touch_rows(id, rows.data(), static_cast<int>(rows.size()));
    bytes += static_cast<long>(rows.size() * w * sizeof(T));
  }
  bytes_ += bytes;
  const std::string bad = master_.prepare_step();
  if (!bad.empty()) {
    master_.discard_step();
    skip_locked(rank, fmt::format("non-finite parameters after the update ({})", bad));
    return false;
  }
  master_.apply_step();
  consecutive_skips_ = 0;
  return true;
}

template <typename T>
void SspServer<T>::skip(int rank, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  skip_locked(rank, what);
}

template <typename T>
void SspServer<T>::skip_locked(int rank, const std::string& what) {
  const std::string where =
      fmt::format("SSP: worker {} at clock {}: {}", rank, clock_[rank] + 1, what);
  if (!skip_nonfinite_) fail_locked(where + "; training stopped");
  ++skipped_;
  if (max_skipped_ > 0 && ++consecutive_skips_ >= max_skipped_)
    fail_locked(fmt::format("training diverged: {} pushes in a row were skipped (the last, {})",
                            consecutive_skips_, where));
}

template <typename T>
long SspServer<T>::skipped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return skipped_;
}

template <typename T>
long SspServer<T>::min_clock_locked() const {
  long m = std::numeric_limits<long>::max();
  for (int r = 0; r < workers_; ++r)
    if (!finished_[r]) m = std::min(m, clock_[r]);
  return m == std::numeric_limits<long>::max() ? 0 : m;
}

template <typename T>
void SspServer<T>::advance(int rank, ParamStore<T>& replica) {
  if (hook_) hook_(rank, clock(rank));
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  const long c = ++clock_[rank];
  cv_.notify_all();
  auto ready = [&] { return aborted_ || min_clock_locked() >= c - staleness_; };
  if (!ready()) {
    ++waits_;
    if (!cv_.wait_for(lock, timeout_, ready)) {
      std::string slow;
      for (int r = 0; r < workers_; ++r)
        if (!finished_[r] && clock_[r] < c - staleness_)
          slow += fmt::format("{}{} (clock {})", slow.empty() ? "" : ", ", r, clock_[r]);
      fail_locked(fmt::format("SSP: worker {} at clock {} waited {} ms for worker(s) {}", rank, c,
                              timeout_.count(), slow));
    }
  }
  if (aborted_) throw Error(abort_reason_);
  const long lead = c - min_clock_locked();
  max_lead_ = std::max(max_lead_, lead);
  ++histogram_[lead];
  // Read: the master's parameters into the replica.
  std::copy(master_.params_flat(), master_.params_flat() + master_.total_elements(),
            replica.params_flat());
}

template <typename T>
void SspServer<T>::finish(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  finished_[rank] = 1;
  cv_.notify_all();
}

template <typename T>
void SspServer<T>::start_epoch() {
  std::lock_guard<std::mutex> lock(mu_);
  std::fill(finished_.begin(), finished_.end(), 0);
}

template <typename T>
long SspServer<T>::clock(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  return clock_.at(rank);
}

template <typename T>
long SspServer<T>::min_clock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return min_clock_locked();
}

template <typename T>
long SspServer<T>::max_lead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_lead_;
}

template <typename T>
long SspServer<T>::waits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waits_;
}

template <typename T>
std::map<long, long> SspServer<T>::staleness_histogram() const {
  std::lock_guard<std::mutex> lock(mu_);
  return histogram_;
}

template <typename T>
long SspServer<T>::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

template class SspServer<float>;
template class SspServer<double>;

}  // namespace copse::memory
