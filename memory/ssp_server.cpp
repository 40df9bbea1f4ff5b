// SspServer (see ssp_server.h).
#include "memory/ssp_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.h"

namespace copse::memory {

template <typename T>
SspServer<T>::SspServer(ParamStore<T>& master, int workers, int staleness,
                        std::chrono::milliseconds timeout)
    : master_(master),
      workers_(workers),
      clock_(workers, staleness, timeout),
      map_(ShardMap::layout(master),
           std::min(std::max(workers, 1), ShardMap::max_shards(ShardMap::layout(master)))),
      shard_mu_(map_.shards()) {
  for (int s = 0; s < map_.shards(); ++s)
    shards_.push_back(std::make_unique<SspShard<T>>(map_, s, workers, master.optimizer()));
  since_.assign(workers, std::vector<long>(map_.shards(), -1));
  rows_.assign(workers, std::vector<std::vector<int>>(map_.sparse_ids().size()));
  listed_.assign(workers, 0);
  load_shards();
}

template <typename T>
void SspServer<T>::load_shards() {
  const auto full = FlatState<T>::of(master_);
  for (int s = 0; s < map_.shards(); ++s) {
    std::lock_guard<std::mutex> lock(shard_mu_[s]);
    shards_[s]->load(full);
  }
  for (auto& v : since_) std::fill(v.begin(), v.end(), -1);
}

template <typename T>
void SspServer<T>::abort(int rank, const std::string& why) {
  clock_.abort(fmt::format("worker {} failed: {}", rank, why));
}

template <typename T>
bool SspServer<T>::push(int rank, ParamStore<T>& replica) {
  clock_.check();
  if (replica.total_elements() != master_.total_elements())
    clock_.fail(fmt::format("SSP: worker {} has a different parameter layout", rank));
  const long c = clock_.clock(rank) + 1;
  // Clipping is global over the push: the worker scales, the shards apply.
  T scale = 1;
  if (const float clip = master_.optimizer().clip_norm; clip > 0.f) {
    const double norm = replica.grad_norm();
    if (!std::isfinite(norm)) clock_.fail(fmt::format("[ParamStore::step] gradient norm is {}", norm));
    if (norm > clip) scale = static_cast<T>(clip / norm);
  }
  std::vector<std::vector<char>> msg(map_.shards());
  long bytes = 0;
  for (int s = 0; s < map_.shards(); ++s)
    bytes += encode_push(map_, s, replica, rank, c, scale, msg[s]);
  clock_.record_push(bytes);
  std::string bad;
  {
    // Every shard takes the push or none does: prepare each (in shard order,
    // holding its lock), then commit or discard them all.
    std::vector<std::unique_lock<std::mutex>> locks;
    for (int s = 0; s < map_.shards(); ++s) {
      locks.emplace_back(shard_mu_[s]);
      int w = 0;
      long k = 0;
      std::string b = shards_[s]->prepare_push(msg[s], &w, &k);
      if (bad.empty()) bad = b;
    }
    for (auto& sh : shards_) sh->commit_push(bad.empty());
  }
  if (!bad.empty()) {
    clock_.skip_push(rank, c, fmt::format("non-finite parameters after the update ({})", bad));
    return false;
  }
  clock_.push_ok();
  return true;
}

template <typename T>
void SspServer<T>::skip(int rank, const std::string& what) {
  clock_.check();
  const long c = clock_.clock(rank) + 1;
  for (int s = 0; s < map_.shards(); ++s) {
    std::lock_guard<std::mutex> lock(shard_mu_[s]);
    shards_[s]->note_applied(rank, c);
  }
  clock_.skip_push(rank, c, what);
}

template <typename T>
void SspServer<T>::read_rows(int rank, int id, std::vector<int> rows) {
  const auto& ids = map_.sparse_ids();
  const auto at = std::find(ids.begin(), ids.end(), id);
  if (at == ids.end())
    fail("SSP: read_rows: parameter {} is not an embedding table (sparse_rows)", id);
  rows_.at(rank)[at - ids.begin()] = std::move(rows);
  listed_[rank] = 1;
}

template <typename T>
void SspServer<T>::advance(int rank, ParamStore<T>& replica) {
  if (hook_) hook_(rank, clock(rank));
  const long c = clock_.tick(rank);
  clock_.wait_readable(rank, c);
  // The read: every shard's dense slice and the rows this worker needs.
  long oldest = std::numeric_limits<long>::max(), newest = 0, bytes = 0;
  std::vector<char> req, reply;
  for (int s = 0; s < map_.shards(); ++s) {
    long& since = since_[rank][s];
    const ReadRows mode = listed_[rank] ? ReadRows::Listed
                          : since < 0   ? ReadRows::All
                                        : ReadRows::Dirty;
    encode_read(map_, s, rank, c - staleness(), mode, since, &rows_[rank], req);
    {
      std::lock_guard<std::mutex> lock(shard_mu_[s]);
      const auto& applied = shards_[s]->applied();
      shards_[s]->serve_read(req, clock_.complete_through(applied), SspClock::newest(applied),
                             reply);
    }
    const ReadResult r = decode_read(map_, s, reply, replica);
    // A listed read leaves the other rows as they were: the next unlisted
    // read must return them all.
    since = mode == ReadRows::Listed ? -1 : r.version;
    oldest = std::min(oldest, r.oldest);
    newest = std::max(newest, r.newest);
    bytes += r.bytes;
  }
  listed_[rank] = 0;
  for (auto& r : rows_[rank]) r.clear();
  clock_.record_read(rank, c, oldest, newest, bytes);
}

template <typename T>
void SspServer<T>::finish(int rank) {
  clock_.finish(rank);
  std::lock_guard<std::mutex> lock(mu_);
  if (++finished_ == workers_) collect(master_);
}

template <typename T>
void SspServer<T>::start_epoch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = 0;
  }
  clock_.start_epoch();
  load_shards();
}

template <typename T>
void SspServer<T>::collect(ParamStore<T>& full) {
  auto f = FlatState<T>::of(full);
  for (int s = 0; s < map_.shards(); ++s) {
    std::lock_guard<std::mutex> lock(shard_mu_[s]);
    shards_[s]->store(f);
  }
  f.store_into(full);
}

template <typename T>
long SspServer<T>::waits() const {
  const auto w = stats().waits;
  return std::accumulate(w.begin(), w.end(), 0L);
}

template class SspServer<float>;
template class SspServer<double>;

}  // namespace copse::memory
