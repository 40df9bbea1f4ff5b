// MpiSspServer (see mpi_ssp.h). Two communicators: requests to the shards
// (read only by the progress thread) and replies to the workers (read only
// by the worker's thread, which also runs the collectives there).
#include "memory/mpi_ssp.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <list>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <mpi.h>

#include "common/error.h"
#include "memory/shard_map.h"
#include "memory/ssp_clock.h"
#include "memory/ssp_shard.h"

namespace copse::memory {

namespace {

enum Tag : int { kPush = 1, kSkip = 2, kFinish = 3, kRead = 4, kAbort = 5, kAck = 11, kReply = 12 };
constexpr long kMaxSleepUs = 500;  // longest idle sleep of a poll (progress thread, waits)

struct Note {  // kSkip: value = clock; kFinish: value = epoch
  std::int32_t worker, pad;
  std::int64_t value;
};

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("[MpiSspServer] {}: {}", call, std::string(msg, len));
}

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

int as_count(std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX))
    fail("[MpiSspServer] a message of {} elements is more than MPI sends at once", n);
  return static_cast<int>(n);
}

// Sleeps a little longer each idle round, up to kMaxSleepUs.
struct Backoff {
  long us = 0;
  void idle() {
    if (us == 0) {
      sched_yield();
      us = 5;
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(us));
    us = std::min(us * 2, kMaxSleepUs);
  }
  void reset() { us = 0; }
};

}  // namespace

template <typename T>
struct MpiSspServer<T>::Impl {
  MPI_Comm req = MPI_COMM_NULL, rep = MPI_COMM_NULL;
  int rank = 0, size = 1;
  std::chrono::milliseconds timeout;
  std::size_t total = 0;
  float clip = 0.f;
  std::unique_ptr<ShardMap> map;
  std::unique_ptr<SspClock> clock;
  std::unique_ptr<SspShard<T>> shard;
  std::mutex shard_mu;
  std::thread progress;
  std::atomic<bool> stop{false};
  bool closed = false, broken = false;

  // Progress thread only.
  struct Pending {
    int source;
    long need, epoch;
    std::vector<char> request;
  };
  std::vector<Pending> pending;
  struct Out {
    MPI_Request req = MPI_REQUEST_NULL;
    std::vector<char> buf;
  };
  std::list<Out> sends;

  // The worker's thread only.
  long my_clock = 0;
  std::vector<long> since;                  // [shards]
  std::vector<std::vector<int>> rows;       // [tables]
  bool listed = false;
  std::vector<std::vector<char>> out, in;   // [shards]
  std::vector<MPI_Request> out_req;

  // Polls `reqs` (a collective, or sends) until done or the deadline.
  void wait_requests(MPI_Request* reqs, int n, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Backoff b;
    for (;;) {
      int done = 0;
      check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (done) return;
      if (std::chrono::steady_clock::now() >= deadline) {
        broken = true;
        clock->fail(fmt::format("rank {}: no reply from the other ranks within {:g} s during {}",
                                rank, timeout.count() / 1000.0, what));
      }
      b.idle();
    }
  }

  // Sends out[s] with `tag` to every shard and receives every shard's reply
  // (`reply_tag`) into in[s].
  void exchange(int tag, int reply_tag, const std::string& what, long c) {
    out_req.assign(size, MPI_REQUEST_NULL);
    for (int s = 0; s < size; ++s)
      check(MPI_Isend(out[s].data(), as_count(out[s].size()), MPI_BYTE, s, tag, req, &out_req[s]),
            "MPI_Isend");
    std::vector<char> got(size, 0);
    int left = size;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Backoff b;
    while (left > 0) {
      clock->check();
      bool any = false;
      for (int s = 0; s < size; ++s) {
        if (got[s]) continue;
        int flag = 0;
        MPI_Status st;
        check(MPI_Iprobe(s, reply_tag, rep, &flag, &st), "MPI_Iprobe");
        if (!flag) continue;
        int n = 0;
        check(MPI_Get_count(&st, MPI_BYTE, &n), "MPI_Get_count");
        in[s].resize(n);
        check(MPI_Recv(in[s].data(), n, MPI_BYTE, s, reply_tag, rep, MPI_STATUS_IGNORE), "MPI_Recv");
        got[s] = 1;
        --left;
        any = true;
      }
      if (any) {
        b.reset();
        continue;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        broken = true;
        std::string silent;
        for (int s = 0; s < size; ++s)
          if (!got[s]) silent += fmt::format("{}{}", silent.empty() ? "" : ", ", s);
        clock->fail(fmt::format("rank {}: no reply from rank(s) {} within {:g} s during {} (clock {})",
                                rank, silent, timeout.count() / 1000.0, what, c));
      }
      b.idle();
    }
    wait_requests(out_req.data(), size, what);
  }

  void reply(int dest, int tag, std::vector<char> buf) {
    sends.emplace_back();
    Out& o = sends.back();
    o.buf = std::move(buf);
    check(MPI_Isend(o.buf.data(), as_count(o.buf.size()), MPI_BYTE, dest, tag, rep, &o.req),
          "MPI_Isend");
  }

  void ack(int dest, const std::string& bad) {
    std::vector<char> a(sizeof(std::int32_t) + bad.size());
    const std::int32_t ok = bad.empty();
    std::memcpy(a.data(), &ok, sizeof ok);
    std::memcpy(a.data() + sizeof ok, bad.data(), bad.size());
    reply(dest, kAck, std::move(a));
  }

  void serve_read(int source, const std::vector<char>& request, long epoch) {
    std::vector<char> buf;
    {
      std::lock_guard<std::mutex> lock(shard_mu);
      const auto& applied = shard->applied();
      shard->serve_read(request, clock->complete_through(applied, epoch), SspClock::newest(applied),
                        buf);
    }
    reply(source, kReply, std::move(buf));
  }

  void serve_pending() {
    for (auto it = pending.begin(); it != pending.end();) {
      if (clock->ready(it->need, it->epoch)) {
        serve_read(it->source, it->request, it->epoch);
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
  }

  void handle(int tag, int source, std::vector<char>& msg) {
    auto note = [&] {
      if (msg.size() != sizeof(Note)) fail("SSP: rank {}: a malformed note from rank {}", rank, source);
      Note n;
      std::memcpy(&n, msg.data(), sizeof n);
      return n;
    };
    switch (tag) {
      case kPush: {
        if (push_worker(msg) != source)
          fail("SSP: rank {}: rank {} pushed for worker {}", rank, source, push_worker(msg));
        int w = 0;
        long k = 0;
        std::string bad;
        {
          std::lock_guard<std::mutex> lock(shard_mu);
          bad = shard->apply_push(msg, &w, &k);
        }
        clock->set_clock(w, k);
        ack(source, bad);
        serve_pending();
        break;
      }
      case kSkip: {
        const Note n = note();
        {
          std::lock_guard<std::mutex> lock(shard_mu);
          shard->note_applied(n.worker, n.value);
        }
        clock->set_clock(n.worker, n.value);
        ack(source, "");
        serve_pending();
        break;
      }
      case kFinish: {
        const Note n = note();
        clock->finish(n.worker, n.value);
        ack(source, "");
        serve_pending();
        break;
      }
      case kRead: {
        const ReadHeader h = read_header(msg);
        if (clock->ready(h.need, h.epoch))
          serve_read(source, msg, h.epoch);
        else
          pending.push_back({source, h.need, h.epoch, msg});
        break;
      }
      case kAbort:
        clock->abort(std::string(msg.begin(), msg.end()));
        break;
      default:
        fail("SSP: rank {}: unknown message tag {} from rank {}", rank, tag, source);
    }
  }

  void serve() {
    std::vector<char> msg;
    Backoff b;
    try {
      while (!stop.load()) {
        for (auto it = sends.begin(); it != sends.end();) {
          int done = 0;
          check(MPI_Test(&it->req, &done, MPI_STATUS_IGNORE), "MPI_Test");
          it = done ? sends.erase(it) : std::next(it);
        }
        int flag = 0;
        MPI_Status st;
        check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, req, &flag, &st), "MPI_Iprobe");
        if (!flag) {
          b.idle();
          continue;
        }
        b.reset();
        int n = 0;
        check(MPI_Get_count(&st, MPI_BYTE, &n), "MPI_Get_count");
        msg.resize(n);
        check(MPI_Recv(msg.data(), n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, req, MPI_STATUS_IGNORE),
              "MPI_Recv");
        handle(st.MPI_TAG, st.MPI_SOURCE, msg);
      }
    } catch (const std::exception& e) {
      clock->abort(fmt::format("rank {}: shard {}: {}", rank, rank, e.what()));
    }
  }
};

template <typename T>
MpiSspServer<T>::MpiSspServer(const ParamStore<T>& initial, int staleness,
                              std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) fail("SSP over MPI: MPI is not initialised");
  int provided = 0;
  check(MPI_Query_thread(&provided), "MPI_Query_thread");
  if (provided < MPI_THREAD_MULTIPLE)
    fail("SSP over MPI needs MPI_THREAD_MULTIPLE (MPI_Init_thread); this process has level {}",
         provided);
  if (staleness < 0) fail("--staleness must be >= 0, got {}", staleness);
  m.timeout = timeout;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &m.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &m.size), "MPI_Comm_size");
  m.clock = std::make_unique<SspClock>(m.size, staleness, timeout, "rank",
                                       fmt::format("rank {}: ", m.rank));
  MPI_Request dup[2];
  check(MPI_Comm_idup(MPI_COMM_WORLD, &m.req, &dup[0]), "MPI_Comm_idup");
  check(MPI_Comm_idup(MPI_COMM_WORLD, &m.rep, &dup[1]), "MPI_Comm_idup");
  m.wait_requests(dup, 2, "the SSP start-up");
  // Every rank must run the same staleness on the same layout.
  m.map = std::make_unique<ShardMap>(ShardMap::layout(initial), 1);
  long mine[2] = {staleness, static_cast<long>(m.map->fingerprint() >> 1)};
  std::vector<long> all(2 * m.size);
  MPI_Request r;
  check(MPI_Iallgather(mine, 2, MPI_LONG, all.data(), 2, MPI_LONG, m.rep, &r), "MPI_Iallgather");
  m.wait_requests(&r, 1, "the SSP start-up");
  for (int q = 0; q < m.size; ++q) {
    if (all[2 * q] != staleness)
      fail("--staleness differs across ranks (rank {}: {}, rank {}: {})", m.rank, staleness, q,
           all[2 * q]);
    if (all[2 * q + 1] != mine[1])
      fail("SSP: the parameter layout differs across ranks (rank {} and rank {})", m.rank, q);
  }
  m.map = std::make_unique<ShardMap>(ShardMap::layout(initial), m.size);
  m.total = initial.total_elements();
  m.clip = initial.optimizer().clip_norm;
  m.shard = std::make_unique<SspShard<T>>(*m.map, m.rank, m.size, initial.optimizer());
  m.shard->load(FlatState<T>::of(initial));
  m.since.assign(m.size, -1);
  m.rows.assign(m.map->sparse_ids().size(), {});
  m.out.resize(m.size);
  m.in.resize(m.size);
  m.progress = std::thread([&m] { m.serve(); });
}

template <typename T>
MpiSspServer<T>::~MpiSspServer() {
  Impl& m = *impl_;
  m.stop = true;
  if (m.progress.joinable()) m.progress.join();
  if (m.closed) {
    MPI_Comm_free(&m.req);
    MPI_Comm_free(&m.rep);
  } else {
    // Replies may still be pending on their buffers and the communicators:
    // both are left to the end of the job (leaked on purpose).
    new std::list<typename Impl::Out>(std::move(m.sends));
  }
}

template <typename T>
int MpiSspServer<T>::rank() const {
  return impl_->rank;
}

template <typename T>
int MpiSspServer<T>::size() const {
  return impl_->size;
}

namespace {
void check_worker(int w, int rank) {
  if (w != rank) fail("SSP over MPI: rank {} runs worker {}, not {}", rank, rank, w);
}
}  // namespace

template <typename T>
bool MpiSspServer<T>::push(int w, ParamStore<T>& replica) {
  Impl& m = *impl_;
  check_worker(w, m.rank);
  m.clock->check();
  if (replica.total_elements() != m.total)
    m.clock->fail(fmt::format("rank {}: SSP: the replica has a different parameter layout", m.rank));
  const long c = m.my_clock + 1;
  T scale = 1;
  if (m.clip > 0.f) {
    const double norm = replica.grad_norm();
    if (!std::isfinite(norm))
      m.clock->fail(fmt::format("rank {}: [ParamStore::step] gradient norm is {}", m.rank, norm));
    if (norm > m.clip) scale = static_cast<T>(m.clip / norm);
  }
  long bytes = 0;
  for (int s = 0; s < m.size; ++s) bytes += encode_push(*m.map, s, replica, m.rank, c, scale, m.out[s]);
  m.clock->record_push(bytes);
  m.exchange(kPush, kAck, "a push", c);
  std::string bad;
  for (int s = 0; s < m.size && bad.empty(); ++s) {
    std::int32_t ok = 0;
    if (m.in[s].size() < sizeof ok) fail("SSP: rank {}: a malformed acknowledgement", m.rank);
    std::memcpy(&ok, m.in[s].data(), sizeof ok);
    if (!ok) bad = std::string(m.in[s].begin() + sizeof ok, m.in[s].end()) + fmt::format(" on shard {}", s);
  }
  if (!bad.empty()) {
    m.clock->skip_push(m.rank, c, fmt::format("non-finite parameters after the update ({})", bad));
    return false;
  }
  m.clock->push_ok();
  return true;
}

template <typename T>
void MpiSspServer<T>::skip(int w, const std::string& what) {
  Impl& m = *impl_;
  check_worker(w, m.rank);
  m.clock->check();
  const long c = m.my_clock + 1;
  for (int s = 0; s < m.size; ++s) {
    const Note n{m.rank, 0, c};
    m.out[s].assign(reinterpret_cast<const char*>(&n), reinterpret_cast<const char*>(&n) + sizeof n);
  }
  m.exchange(kSkip, kAck, "a skipped push", c);
  m.clock->skip_push(m.rank, c, what);
}

template <typename T>
void MpiSspServer<T>::read_rows(int w, int id, std::vector<int> rows) {
  Impl& m = *impl_;
  check_worker(w, m.rank);
  const auto& ids = m.map->sparse_ids();
  const auto at = std::find(ids.begin(), ids.end(), id);
  if (at == ids.end()) fail("SSP: read_rows: parameter {} is not an embedding table (sparse_rows)", id);
  m.rows[at - ids.begin()] = std::move(rows);
  m.listed = true;
}

template <typename T>
void MpiSspServer<T>::advance(int w, ParamStore<T>& replica) {
  Impl& m = *impl_;
  check_worker(w, m.rank);
  const long c = ++m.my_clock;
  m.clock->wait_readable(m.rank, c);
  const long need = c - m.clock->staleness(), epoch = m.clock->epoch();
  std::vector<ReadRows> mode(m.size);
  for (int s = 0; s < m.size; ++s) {
    mode[s] = m.listed ? ReadRows::Listed : m.since[s] < 0 ? ReadRows::All : ReadRows::Dirty;
    encode_read(*m.map, s, m.rank, need, epoch, mode[s], m.since[s], &m.rows, m.out[s]);
  }
  m.exchange(kRead, kReply, "a read", c);
  long oldest = std::numeric_limits<long>::max(), newest = 0, bytes = 0;
  for (int s = 0; s < m.size; ++s) {
    const ReadResult r = decode_read(*m.map, s, m.in[s], replica);
    m.since[s] = mode[s] == ReadRows::Listed ? -1 : r.version;
    oldest = std::min(oldest, r.oldest);
    newest = std::max(newest, r.newest);
    bytes += r.bytes;
  }
  m.listed = false;
  for (auto& r : m.rows) r.clear();
  m.clock->record_read(m.rank, c, oldest, newest, bytes);
}

template <typename T>
void MpiSspServer<T>::finish(int w) {
  Impl& m = *impl_;
  check_worker(w, m.rank);
  const Note n{m.rank, 0, m.clock->epoch()};
  for (int s = 0; s < m.size; ++s)
    m.out[s].assign(reinterpret_cast<const char*>(&n), reinterpret_cast<const char*>(&n) + sizeof n);
  m.exchange(kFinish, kAck, "the end of an epoch", m.my_clock);
}

template <typename T>
void MpiSspServer<T>::start_epoch() {
  impl_->clock->start_epoch();
}

template <typename T>
void MpiSspServer<T>::abort(int w, const std::string& why) {
  Impl& m = *impl_;
  const std::string reason = fmt::format("rank {} failed: {}", w, why);
  m.clock->abort(reason);
  // Best effort: the job is ending (the caller's MPI_Abort).
  std::vector<MPI_Request> r(m.size, MPI_REQUEST_NULL);
  auto* keep = new std::string(reason);  // leaked: the sends may outlive this call
  for (int s = 0; s < m.size; ++s)
    if (s != m.rank)
      MPI_Isend(keep->data(), as_count(keep->size()), MPI_CHAR, s, kAbort, m.req, &r[s]);
}

template <typename T>
void MpiSspServer<T>::collect(ParamStore<T>& full) {
  Impl& m = *impl_;
  MPI_Request r;
  check(MPI_Ibarrier(m.rep, &r), "MPI_Ibarrier");
  m.wait_requests(&r, 1, "collecting the shards");
  // Every rank has finished: no push is in flight. Each element is one
  // shard's; the others contribute 0.
  auto f = FlatState<T>::of(full);
  std::fill(f.params.begin(), f.params.end(), T(0));
  for (auto& s : f.state) std::fill(s.begin(), s.end(), T(0));
  {
    std::lock_guard<std::mutex> lock(m.shard_mu);
    m.shard->store(f);
  }
  std::vector<MPI_Request> reqs(1 + f.state.size());
  check(MPI_Iallreduce(MPI_IN_PLACE, f.params.data(), as_count(f.params.size()), mpi_type<T>(),
                       MPI_SUM, m.rep, &reqs[0]),
        "MPI_Iallreduce");
  m.wait_requests(reqs.data(), 1, "collecting the shards");
  for (std::size_t k = 0; k < f.state.size(); ++k) {
    check(MPI_Iallreduce(MPI_IN_PLACE, f.state[k].data(), as_count(f.state[k].size()),
                         mpi_type<T>(), MPI_SUM, m.rep, &reqs[1 + k]),
          "MPI_Iallreduce");
    m.wait_requests(&reqs[1 + k], 1, "collecting the shards");
  }
  long counts[2] = {f.step_count, f.optimizer_steps};
  check(MPI_Iallreduce(MPI_IN_PLACE, counts, 2, MPI_LONG, MPI_MAX, m.rep, &r), "MPI_Iallreduce");
  m.wait_requests(&r, 1, "collecting the shards");
  f.step_count = counts[0];
  f.optimizer_steps = counts[1];
  f.store_into(full);
}

template <typename T>
void MpiSspServer<T>::set_nonfinite_policy(bool skip, int max_consecutive) {
  impl_->clock->set_nonfinite_policy(skip, max_consecutive);
}

template <typename T>
long MpiSspServer<T>::clock(int w) const {
  return impl_->clock->clock(w);
}

template <typename T>
SspStats MpiSspServer<T>::stats() const {
  return impl_->clock->stats();
}

template <typename T>
void MpiSspServer<T>::reload(const ParamStore<T>& full) {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.shard_mu);
    m.shard->load(FlatState<T>::of(full));
  }
  std::fill(m.since.begin(), m.since.end(), -1);
  MPI_Request r;
  check(MPI_Ibarrier(m.rep, &r), "MPI_Ibarrier");
  m.wait_requests(&r, 1, "reloading the shards");
}

template <typename T>
void MpiSspServer<T>::close() {
  Impl& m = *impl_;
  if (m.closed) return;
  MPI_Request r;
  check(MPI_Ibarrier(m.rep, &r), "MPI_Ibarrier");
  m.wait_requests(&r, 1, "the end of the run");
  m.stop = true;
  m.progress.join();
  for (auto& o : m.sends) check(MPI_Wait(&o.req, MPI_STATUS_IGNORE), "MPI_Wait");
  m.sends.clear();
  m.closed = true;
}

template class MpiSspServer<float>;
template class MpiSspServer<double>;

}  // namespace copse::memory
