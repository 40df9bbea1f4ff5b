// SspShard and its messages (see ssp_shard.h). A message is a flat byte
// string: a fixed header, then the dense pieces in the map's order, then per
// embedding table a row count, the global row ids and their values.
#include "memory/ssp_shard.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace copse::memory {

namespace {

struct Writer {
  std::vector<char>& out;
  template <typename X>
  void put(const X& x) {
    put_n(&x, 1);
  }
  template <typename X>
  void put_n(const X* x, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + n * sizeof(X));
    if (n) std::memcpy(out.data() + at, x, n * sizeof(X));
  }
};

struct Reader {
  const std::vector<char>& in;
  std::size_t at = 0;
  template <typename X>
  X get() {
    X x;
    get_n(&x, 1);
    return x;
  }
  template <typename X>
  void get_n(X* x, std::size_t n) {
    const char* p = take(n * sizeof(X));
    if (n) std::memcpy(x, p, n * sizeof(X));
  }
  const char* take(std::size_t bytes) {
    if (in.size() - at < bytes)
      fail("SSP: malformed message ({} bytes, needed {} at {})", in.size(), bytes, at);
    const char* p = in.data() + at;
    at += bytes;
    return p;
  }
};

struct PushHeader {
  std::int32_t worker, pad;
  std::int64_t clock;
};
struct RequestHeader {
  std::int32_t worker, mode;
  std::int64_t need, epoch, since;
};
struct ReplyHeader {
  std::int64_t oldest, newest, version;
};

}  // namespace

template <typename T>
FlatState<T> FlatState<T>::of(const ParamStore<T>& store) {
  FlatState<T> f;
  f.params = store.get_flat_host(-1);
  for (int k = 0; k < store.optimizer_state_slots(); ++k) f.state.push_back(store.get_flat_host(k));
  f.step_count = store.step_count();
  f.optimizer_steps = store.optimizer_steps();
  return f;
}

template <typename T>
void FlatState<T>::store_into(ParamStore<T>& store) const {
  store.set_flat_host(-1, params);
  if (static_cast<int>(state.size()) != store.optimizer_state_slots())
    fail("SSP: {} optimizer state slots, the store has {}", state.size(),
         store.optimizer_state_slots());
  for (int k = 0; k < store.optimizer_state_slots(); ++k) store.set_flat_host(k, state[k]);
  store.set_step_counts(step_count, optimizer_steps);
}

template <typename T>
SspShard<T>::SspShard(const ShardMap& map, int shard, int workers, OptimizerConfig cfg)
    : map_(map), shard_(shard), backend_(std::make_unique<ops::CpuBackend<T>>(1)) {
  store_ = std::make_unique<ParamStore<T>>(*backend_);
  for (const auto& pc : map.pieces(shard))
    store_->add({map.params()[pc.id].name, {static_cast<int>(pc.end - pc.begin)}, Init::Zeros, 0.f,
                 false});
  for (int id : map.sparse_ids()) {
    const auto& p = map.params()[id];
    own_sparse_.push_back(
        store_->add({p.name, {map.local_rows(id, shard), p.width}, Init::Zeros, 0.f, true}));
    row_version_.emplace_back(map.local_rows(id, shard), 0);
  }
  store_->finalize();
  cfg.clip_norm = 0.f;
  store_->set_optimizer(cfg);
  // A clock is `workers` pushes, each an optimizer step: the dense
  // parameters decay once per clock in all, as under BSP.
  store_->set_dense_l2_scale(1.f / static_cast<float>(workers));
  applied_.assign(workers, 0);
}

template <typename T>
void SspShard<T>::load(const FlatState<T>& full) {
  auto own = FlatState<T>::of(*store_);
  if (full.state.size() != own.state.size())
    fail("SSP: the store has {} optimizer state slots, the shard {}", full.state.size(),
         own.state.size());
  auto copy = [&](const std::vector<T>& src, std::vector<T>& dst) {
    const auto& pieces = map_.pieces(shard_);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const auto& pc = pieces[i];
      const std::size_t from = map_.params()[pc.id].offset + pc.begin;
      std::copy(src.begin() + from, src.begin() + from + (pc.end - pc.begin),
                dst.begin() + store_->offset(static_cast<int>(i)));
    }
    for (std::size_t k = 0; k < own_sparse_.size(); ++k) {
      const auto& p = map_.params()[map_.sparse_ids()[k]];
      const std::size_t w = p.width;
      for (int l = 0; l < map_.local_rows(map_.sparse_ids()[k], shard_); ++l) {
        const std::size_t from = p.offset + static_cast<std::size_t>(map_.global_row(shard_, l)) * w;
        std::copy(src.begin() + from, src.begin() + from + w,
                  dst.begin() + store_->offset(own_sparse_[k]) + l * w);
      }
    }
  };
  copy(full.params, own.params);
  for (std::size_t k = 0; k < own.state.size(); ++k) copy(full.state[k], own.state[k]);
  own.step_count = full.step_count;
  own.optimizer_steps = full.optimizer_steps;
  own.store_into(*store_);
  ++version_;
  for (auto& v : row_version_) std::fill(v.begin(), v.end(), version_);
}

template <typename T>
void SspShard<T>::store(FlatState<T>& full) const {
  const auto own = FlatState<T>::of(*store_);
  auto copy = [&](const std::vector<T>& src, std::vector<T>& dst) {
    const auto& pieces = map_.pieces(shard_);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const auto& pc = pieces[i];
      const auto from = src.begin() + store_->offset(static_cast<int>(i));
      std::copy(from, from + (pc.end - pc.begin),
                dst.begin() + map_.params()[pc.id].offset + pc.begin);
    }
    for (std::size_t k = 0; k < own_sparse_.size(); ++k) {
      const auto& p = map_.params()[map_.sparse_ids()[k]];
      const std::size_t w = p.width;
      for (int l = 0; l < map_.local_rows(map_.sparse_ids()[k], shard_); ++l) {
        const auto from = src.begin() + store_->offset(own_sparse_[k]) + l * w;
        std::copy(from, from + w,
                  dst.begin() + p.offset + static_cast<std::size_t>(map_.global_row(shard_, l)) * w);
      }
    }
  };
  copy(own.params, full.params);
  for (std::size_t k = 0; k < own.state.size(); ++k) copy(own.state[k], full.state[k]);
  full.step_count = own.step_count;
  full.optimizer_steps = own.optimizer_steps;
}

template <typename T>
std::string SspShard<T>::prepare_push(const std::vector<char>& msg, int* worker, long* clock) {
  Reader rd{msg};
  const auto h = rd.get<PushHeader>();
  if (h.worker < 0 || h.worker >= static_cast<int>(applied_.size()))
    fail("SSP: shard {}: a push from unknown worker {}", shard_, h.worker);
  *worker = h.worker;
  *clock = h.clock;
  store_->zero_grads();
  const auto& pieces = map_.pieces(shard_);
  for (std::size_t i = 0; i < pieces.size(); ++i)
    rd.get_n(store_->grad(static_cast<int>(i)), pieces[i].end - pieces[i].begin);
  for (std::size_t k = 0; k < own_sparse_.size(); ++k) {
    const int id = own_sparse_[k];
    const int w = store_->row_width(id);
    const auto n = rd.get<std::int32_t>();
    local_.resize(n);
    rd.get_n(local_.data(), n);
    for (auto& r : local_) {
      if (r < 0 || map_.owner(r) != shard_ || map_.local_row(r) >= store_->rows(id))
        fail("SSP: shard {}: row {} of '{}' is not this shard's", shard_, r, store_->spec(id).name);
      r = map_.local_row(r);
    }
    for (int r : local_) rd.get_n(store_->grad(id) + static_cast<std::size_t>(r) * w, w);
    store_->touch_rows(id, local_.data(), n);
  }
  note_applied(h.worker, h.clock);
  return store_->prepare_step();
}

template <typename T>
void SspShard<T>::commit_push(bool apply) {
  if (!apply) {
    store_->discard_step();
    return;
  }
  // The rows this step writes, before apply_step() clears the touched lists.
  ++version_;
  for (std::size_t k = 0; k < own_sparse_.size(); ++k)
    for (int r : store_->touched_rows(own_sparse_[k])) row_version_[k][r] = version_;
  store_->apply_step();
}

template <typename T>
void SspShard<T>::note_applied(int w, long clock) {
  applied_.at(w) = std::max(applied_.at(w), clock);
}

template <typename T>
void SspShard<T>::serve_read(const std::vector<char>& request, long oldest, long newest,
                             std::vector<char>& reply) const {
  Reader rd{request};
  const auto h = rd.get<RequestHeader>();
  reply.clear();
  Writer wr{reply};
  wr.put(ReplyHeader{oldest, newest, version_});
  const auto& pieces = map_.pieces(shard_);
  for (std::size_t i = 0; i < pieces.size(); ++i)
    wr.put_n(store_->param(static_cast<int>(i)), pieces[i].end - pieces[i].begin);
  std::vector<std::int32_t> rows;
  for (std::size_t k = 0; k < own_sparse_.size(); ++k) {
    const int id = own_sparse_[k];
    const int lrows = store_->rows(id), w = store_->row_width(id);
    rows.clear();
    if (h.mode == static_cast<std::int32_t>(ReadRows::Listed)) {
      const auto n = rd.get<std::int32_t>();
      rows.resize(n);
      rd.get_n(rows.data(), n);
      for (int r : rows)
        if (r < 0 || map_.owner(r) != shard_ || map_.local_row(r) >= lrows)
          fail("SSP: shard {}: row {} of '{}' is not this shard's", shard_, r,
               store_->spec(id).name);
    } else {
      for (int l = 0; l < lrows; ++l)
        if (h.mode == static_cast<std::int32_t>(ReadRows::All) || row_version_[k][l] > h.since)
          rows.push_back(map_.global_row(shard_, l));
    }
    wr.put(static_cast<std::int32_t>(rows.size()));
    wr.put_n(rows.data(), rows.size());
    for (int r : rows)
      wr.put_n(store_->param(id) + static_cast<std::size_t>(map_.local_row(r)) * w, w);
  }
}

template <typename T>
long encode_push(const ShardMap& map, int s, ParamStore<T>& replica, int w, long clock, T scale,
                 std::vector<char>& out) {
  out.clear();
  Writer wr{out};
  wr.put(PushHeader{w, 0, clock});
  long bytes = 0;
  std::vector<T> buf;
  auto put_scaled = [&](const T* g, std::size_t n) {
    if (scale == T(1)) {
      wr.put_n(g, n);
    } else {
      buf.assign(g, g + n);
      for (auto& v : buf) v *= scale;
      wr.put_n(buf.data(), n);
    }
    bytes += static_cast<long>(n * sizeof(T));
  };
  for (const auto& pc : map.pieces(s)) put_scaled(replica.grad(pc.id) + pc.begin, pc.end - pc.begin);
  std::vector<std::int32_t> rows;
  for (int id : map.sparse_ids()) {
    rows.clear();
    for (int r : replica.touched_rows(id))
      if (map.owner(r) == s) rows.push_back(r);
    const int width = replica.row_width(id);
    wr.put(static_cast<std::int32_t>(rows.size()));
    wr.put_n(rows.data(), rows.size());
    for (int r : rows) put_scaled(replica.grad(id) + static_cast<std::size_t>(r) * width, width);
    bytes += static_cast<long>(rows.size() * sizeof(std::int32_t));
  }
  return bytes;
}

void encode_read(const ShardMap& map, int s, int w, long need, long epoch, ReadRows mode,
                 long since, const std::vector<std::vector<int>>* rows, std::vector<char>& out) {
  out.clear();
  Writer wr{out};
  wr.put(RequestHeader{w, static_cast<std::int32_t>(mode), need, epoch, since});
  if (mode != ReadRows::Listed) return;
  std::vector<std::int32_t> mine;
  for (std::size_t k = 0; k < map.sparse_ids().size(); ++k) {
    mine.clear();
    if (rows && k < rows->size())
      for (int r : (*rows)[k])
        if (r >= 0 && map.owner(r) == s) mine.push_back(r);
    std::sort(mine.begin(), mine.end());
    mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
    wr.put(static_cast<std::int32_t>(mine.size()));
    wr.put_n(mine.data(), mine.size());
  }
}

ReadHeader read_header(const std::vector<char>& request) {
  Reader rd{request};
  const auto h = rd.get<RequestHeader>();
  return {h.worker, static_cast<long>(h.need), static_cast<long>(h.epoch)};
}

int push_worker(const std::vector<char>& msg) {
  Reader rd{msg};
  return rd.get<PushHeader>().worker;
}

template <typename T>
ReadResult decode_read(const ShardMap& map, int s, const std::vector<char>& reply,
                       ParamStore<T>& replica) {
  Reader rd{reply};
  const auto h = rd.get<ReplyHeader>();
  ReadResult res{h.oldest, h.newest, h.version, 0};
  for (const auto& pc : map.pieces(s)) {
    rd.get_n(replica.param(pc.id) + pc.begin, pc.end - pc.begin);
    res.bytes += static_cast<long>((pc.end - pc.begin) * sizeof(T));
  }
  std::vector<std::int32_t> rows;
  for (int id : map.sparse_ids()) {
    const auto n = rd.get<std::int32_t>();
    rows.resize(n);
    rd.get_n(rows.data(), n);
    const int width = replica.row_width(id);
    for (int r : rows) {
      if (r < 0 || r >= replica.rows(id)) fail("SSP: a read returned row {} of '{}'", r, replica.spec(id).name);
      rd.get_n(replica.param(id) + static_cast<std::size_t>(r) * width, width);
    }
    res.bytes += static_cast<long>(n * (sizeof(std::int32_t) + width * sizeof(T)));
  }
  replica.note_external_write();
  return res;
}

template class SspShard<float>;
template class SspShard<double>;
template long encode_push(const ShardMap&, int, ParamStore<float>&, int, long, float,
                          std::vector<char>&);
template long encode_push(const ShardMap&, int, ParamStore<double>&, int, long, double,
                          std::vector<char>&);
template ReadResult decode_read(const ShardMap&, int, const std::vector<char>&,
                                ParamStore<float>&);
template ReadResult decode_read(const ShardMap&, int, const std::vector<char>&,
                                ParamStore<double>&);
template struct FlatState<float>;
template struct FlatState<double>;

}  // namespace copse::memory
