// ThreadGradSync (see thread_sync.h).
#include "memory/thread_sync.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"

namespace copse::memory {

template <typename T>
class ThreadGradSync<T>::Endpoint : public GradSync<T> {
 public:
  Endpoint(ThreadGradSync* group, int rank) : group_(group), rank_(rank) {}
  void sync(ParamStore<T>& store) override { group_->sync(rank_, store); }

 private:
  ThreadGradSync* group_;
  int rank_;
};

template <typename T>
ThreadGradSync<T>::ThreadGradSync(int workers, std::chrono::milliseconds timeout)
    : workers_(workers), timeout_(timeout) {
  if (workers < 1) fail("gradient sync: need at least one worker, got {}", workers);
  for (int r = 0; r < workers; ++r) endpoints_.push_back(std::make_unique<Endpoint>(this, r));
  stores_.assign(workers, nullptr);
  stats_.assign(workers, Stats());
  arrived_at_.assign(workers, -1);
}

template <typename T>
ThreadGradSync<T>::~ThreadGradSync() = default;

template <typename T>
GradSync<T>* ThreadGradSync<T>::endpoint(int rank) {
  if (rank < 0 || rank >= workers_) fail("gradient sync: no worker {}", rank);
  return endpoints_[rank].get();
}

template <typename T>
void ThreadGradSync<T>::abort(int rank, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!aborted_) {
    aborted_ = true;
    abort_reason_ = fmt::format("worker {} failed: {}", rank, why);
  }
  cv_.notify_all();
}

template <typename T>
typename ThreadGradSync<T>::Stats ThreadGradSync<T>::stats(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.at(rank);
}

template <typename T>
void ThreadGradSync<T>::reset_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.assign(workers_, Stats());
}

// Waits until every worker has arrived at the current generation.
template <typename T>
void ThreadGradSync<T>::barrier(int rank) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) throw Error(abort_reason_);
  const long gen = generation_;
  arrived_at_[rank] = gen;
  if (++arrived_ == workers_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  } else {
    bool ok = cv_.wait_for(lock, timeout_, [&] { return generation_ != gen || aborted_; });
    if (aborted_) throw Error(abort_reason_);
    if (!ok) {
      std::string missing;
      for (int r = 0; r < workers_; ++r)
        if (arrived_at_[r] != gen) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      aborted_ = true;
      abort_reason_ = fmt::format("gradient sync: worker(s) {} did not answer within {} ms",
                                  missing, timeout_.count());
      cv_.notify_all();
      throw Error(abort_reason_);
    }
  }
  stats_[rank].wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename T>
void ThreadGradSync<T>::sync(int rank, ParamStore<T>& store) {
  if (workers_ == 1) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_[0].clocks;
    return;
  }
  std::vector<int> sparse;
  for (int i = 0; i < store.size(); ++i)
    if (store.spec(i).sparse_rows) {
      sparse.push_back(i);
      store.touched_rows(i);  // sort + dedupe our own list before others read it
    }
  stores_[rank] = &store;
  barrier(rank);
  // Layouts must agree.
  if (rank == 0) {
    for (int r = 1; r < workers_; ++r)
      if (stores_[r]->total_elements() != store.total_elements() ||
          stores_[r]->dense_elements() != store.dense_elements())
        abort(0, fmt::format("worker {} has a different parameter layout", r));
    unions_.assign(sparse.size(), {});
    for (size_t s = 0; s < sparse.size(); ++s) {
      auto& u = unions_[s];
      for (int r = 0; r < workers_; ++r) {
        const auto& rows = stores_[r]->touched_rows(sparse[s]);
        u.insert(u.end(), rows.begin(), rows.end());
      }
      std::sort(u.begin(), u.end());
      u.erase(std::unique(u.begin(), u.end()), u.end());
    }
  }
  barrier(rank);
  // Dense: this worker sums its slice over all workers (in worker order) and
  // writes the sum back to everyone.
  const size_t dense = store.dense_elements();
  const size_t chunk = (dense + workers_ - 1) / workers_;
  const size_t b = std::min(dense, chunk * rank), e = std::min(dense, b + chunk);
  for (size_t k = b; k < e; ++k) {
    T sum = 0;
    for (int r = 0; r < workers_; ++r) sum += stores_[r]->grads_flat()[k];
    for (int r = 0; r < workers_; ++r) stores_[r]->grads_flat()[k] = sum;
  }
  long bytes = static_cast<long>(dense * sizeof(T));
  // Sparse rows: this worker's share of the union.
  for (size_t s = 0; s < sparse.size(); ++s) {
    const int id = sparse[s];
    const int w = store.row_width(id);
    const auto& u = unions_[s];
    const size_t per = (u.size() + workers_ - 1) / workers_;
    const size_t rb = std::min(u.size(), per * rank), re = std::min(u.size(), rb + per);
    for (size_t q = rb; q < re; ++q)
      for (int c = 0; c < w; ++c) {
        const size_t at = static_cast<size_t>(u[q]) * w + c;
        T sum = 0;
        for (int r = 0; r < workers_; ++r) sum += stores_[r]->grad(id)[at];
        for (int r = 0; r < workers_; ++r) stores_[r]->grad(id)[at] = sum;
      }
    bytes += static_cast<long>(store.touched_rows(id).size() * w * sizeof(T));
  }
  barrier(rank);
  for (size_t s = 0; s < sparse.size(); ++s)
    store.touch_rows(sparse[s], unions_[s].data(), static_cast<int>(unions_[s].size()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_[rank].bytes += bytes;
    ++stats_[rank].clocks;
  }
  // Nobody may start the next clock (and rewrite unions_) before all have read them.
  barrier(rank);
}

template class ThreadGradSync<float>;
template class ThreadGradSync<double>;

}  // namespace copse::memory
