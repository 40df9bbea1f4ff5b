// MpiGradSync (see mpi_sync.h).
#include "memory/mpi_sync.h"

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <mpi.h>

#include "common/error.h"
#include "memory/sparse_merge.h"

namespace copse::memory {

namespace {

// How long a wait polls (yielding the core) before it starts to sleep.
constexpr int kSpinMs = 2;

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

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("[MpiGradSync] {}: {}", call, std::string(msg, len));
}

int as_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    fail("[MpiGradSync] {} has {} elements, more than one MPI message holds ({})", what, n,
         INT_MAX);
  return static_cast<int>(n);
}

}  // namespace

template <typename T>
struct MpiGradSync<T>::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  std::chrono::milliseconds timeout;
  MpiSyncStats stats;
  long clock = 0;  // exchanges completed since construction (named in errors)
  bool broken = false;
  bool layout_checked = false;
  std::vector<int> sparse;  // ids of the sparse_rows parameters

  // Staging buffers: a pending collective only ever touches these.
  std::vector<T> full, part, mine;  // dense: [n], [W, slice], [slice]
  std::vector<int> counts, displs, rcounts, rdispls;
  std::vector<int> my_counts, all_counts;  // sparse: [S], [W, S]
  std::vector<int> my_ids, all_ids;
  std::vector<T> my_vals, all_vals;
  std::vector<double> small_mine, small;  // sum(): [k], [W, k]
  std::uint64_t hash_mine = 0;
  std::vector<std::uint64_t> hashes;      // [W]
  std::vector<unsigned char> bytes;       // broadcast()
  std::vector<int> urows;
  std::vector<T> uvals;

  // Polls the requests until done or the deadline; counts the time waited.
  void wait(MPI_Request* reqs, int n, const std::string& what) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto deadline = t0 + timeout;
    const auto spin_until = t0 + std::chrono::milliseconds(kSpinMs);
    long sleep_us = 10;
    for (;;) {
      int done = 0;
      check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (done) break;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        broken = true;
        fail("rank {}: no reply from the other ranks within {:g} s during {} (clock {})", rank,
             timeout.count() / 1000.0, what, clock + 1);
      }
      // Poll and yield at first (a reply is usually close, and a rank
      // sharing the core gets it), then sleep: a long wait (a peer still
      // computing, rank 0 writing a checkpoint) leaves the cores alone.
      if (now < spin_until) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
        sleep_us = std::min(sleep_us * 2, 200L);
      }
    }
    stats.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void usable(const char* where) const {
    if (broken) fail("[MpiGradSync::{}] an earlier collective failed; the job must end", where);
  }

  void check_layout(ParamStore<T>& store) {
    sparse.clear();
    std::uint64_t h = 0xcbf29ce484222325ULL;
    auto mix = [&](std::uint64_t v) { h = (h ^ v) * 0x100000001b3ULL; };
    mix(store.total_elements());
    mix(store.dense_elements());
    for (int i = 0; i < store.size(); ++i) {
      mix(store.numel(i));
      mix(store.offset(i));
      if (store.spec(i).sparse_rows) {
        sparse.push_back(i);
        mix(static_cast<std::uint64_t>(store.row_width(i)));
      }
    }
    hash_mine = h;
    hashes.assign(size, 0);
    MPI_Request req;
    check(MPI_Iallgather(&hash_mine, 1, MPI_UINT64_T, hashes.data(), 1, MPI_UINT64_T, comm, &req),
          "MPI_Iallgather");
    wait(&req, 1, "the parameter layout check");
    for (int r = 0; r < size; ++r)
      if (hashes[r] != hashes[0])
        fail(
            "rank {}'s parameters are laid out differently from rank 0's (same model and "
            "options on every rank?)",
            r);
    layout_checked = true;
  }

  // Dense: rank q owns the slice [begin(q), begin(q) + len(q)); an all-to-all
  // hands every rank the W copies of its slice, it sums them in rank order,
  // and an all-gather returns the sums to everyone.
  void exchange_dense(ParamStore<T>& store) {
    const std::size_t n = store.dense_elements();
    if (n == 0) return;
    as_count(n, "the dense gradient");
    const std::size_t chunk = (n + size - 1) / size;
    auto begin = [&](int q) { return std::min(n, chunk * q); };
    auto len = [&](int q) { return static_cast<int>(std::min(n, begin(q) + chunk) - begin(q)); };
    const int own = len(rank);
    counts.resize(size);
    displs.resize(size);
    rcounts.assign(size, own);
    rdispls.resize(size);
    for (int q = 0; q < size; ++q) {
      counts[q] = len(q);
      displs[q] = static_cast<int>(begin(q));
      rdispls[q] = q * own;
    }
    T* g = store.grads_flat();
    full.assign(g, g + n);
    part.resize(static_cast<std::size_t>(size) * own);
    MPI_Request req;
    check(MPI_Ialltoallv(full.data(), counts.data(), displs.data(), mpi_type<T>(), part.data(),
                         rcounts.data(), rdispls.data(), mpi_type<T>(), comm, &req),
          "MPI_Ialltoallv");
    wait(&req, 1, "gradient sync");
    mine.assign(own, T(0));
    for (int p = 0; p < size; ++p) {
      const T* src = part.data() + static_cast<std::size_t>(p) * own;
      for (int k = 0; k < own; ++k) mine[k] += src[k];
    }
    check(MPI_Iallgatherv(mine.data(), own, mpi_type<T>(), full.data(), counts.data(),
                          displs.data(), mpi_type<T>(), comm, &req),
          "MPI_Iallgatherv");
    wait(&req, 1, "gradient sync");
    std::copy(full.begin(), full.end(), g);
    stats.bytes += static_cast<long>(n * sizeof(T));
    stats.sent_bytes +=
        static_cast<long>((n - own + static_cast<std::size_t>(size - 1) * own) * sizeof(T));
  }

  // Sparse: all-gather the row counts, then the row ids and values of every
  // rank; each rank merges them (rank order) into the union of rows.
  void exchange_sparse(ParamStore<T>& store) {
    const int S = static_cast<int>(sparse.size());
    if (S == 0) return;
    my_counts.assign(S, 0);
    my_ids.clear();
    my_vals.clear();
    for (int s = 0; s < S; ++s) {
      const int id = sparse[s];
      const std::vector<int>& rows = store.touched_rows(id);
      const std::size_t w = store.row_width(id);
      my_counts[s] = static_cast<int>(rows.size());
      my_ids.insert(my_ids.end(), rows.begin(), rows.end());
      const T* g = store.grad(id);
      for (int r : rows) my_vals.insert(my_vals.end(), g + r * w, g + (r + 1) * w);
    }
    all_counts.assign(static_cast<std::size_t>(size) * S, 0);
    MPI_Request reqs[2];
    check(
        MPI_Iallgather(my_counts.data(), S, MPI_INT, all_counts.data(), S, MPI_INT, comm, &reqs[0]),
        "MPI_Iallgather");
    wait(reqs, 1, "gradient sync (embedding rows)");
    // Per rank: ids and values it sends, and where they land.
    std::vector<std::size_t> id_at(size + 1, 0), val_at(size + 1, 0);
    for (int r = 0; r < size; ++r) {
      std::size_t ids = 0, vals = 0;
      for (int s = 0; s < S; ++s) {
        ids += all_counts[r * S + s];
        vals += static_cast<std::size_t>(all_counts[r * S + s]) * store.row_width(sparse[s]);
      }
      id_at[r + 1] = id_at[r] + ids;
      val_at[r + 1] = val_at[r] + vals;
    }
    as_count(id_at[size], "the touched embedding rows of all ranks");
    as_count(val_at[size], "the embedding row gradients of all ranks");
    counts.resize(size);
    displs.resize(size);
    rcounts.resize(size);
    rdispls.resize(size);
    for (int r = 0; r < size; ++r) {
      counts[r] = static_cast<int>(id_at[r + 1] - id_at[r]);
      displs[r] = static_cast<int>(id_at[r]);
      rcounts[r] = static_cast<int>(val_at[r + 1] - val_at[r]);
      rdispls[r] = static_cast<int>(val_at[r]);
    }
    all_ids.resize(id_at[size]);
    all_vals.resize(val_at[size]);
    check(MPI_Iallgatherv(my_ids.data(), counts[rank], MPI_INT, all_ids.data(), counts.data(),
                          displs.data(), MPI_INT, comm, &reqs[0]),
          "MPI_Iallgatherv");
    check(MPI_Iallgatherv(my_vals.data(), rcounts[rank], mpi_type<T>(), all_vals.data(),
                          rcounts.data(), rdispls.data(), mpi_type<T>(), comm, &reqs[1]),
          "MPI_Iallgatherv");
    wait(reqs, 2, "gradient sync (embedding rows)");
    // Merge parameter by parameter.
    std::vector<std::size_t> id_pos(id_at.begin(), id_at.end() - 1);
    std::vector<std::size_t> val_pos(val_at.begin(), val_at.end() - 1);
    std::vector<SparseRowsView<T>> views(size);
    for (int s = 0; s < S; ++s) {
      const int id = sparse[s], w = store.row_width(id);
      for (int r = 0; r < size; ++r) {
        const int c = all_counts[r * S + s];
        views[r] = {all_ids.data() + id_pos[r], c, all_vals.data() + val_pos[r]};
        id_pos[r] += c;
        val_pos[r] += static_cast<std::size_t>(c) * w;
      }
      merge_sparse_rows(views, w, urows, uvals);
      T* g = store.grad(id);
      for (std::size_t u = 0; u < urows.size(); ++u)
        std::copy(uvals.begin() + u * w, uvals.begin() + (u + 1) * w,
                  g + static_cast<std::size_t>(urows[u]) * w);
      store.touch_rows(id, urows.data(), static_cast<int>(urows.size()));
    }
    stats.bytes += static_cast<long>(my_vals.size() * sizeof(T));
    stats.sent_bytes += static_cast<long>(size - 1) *
                        static_cast<long>(S * sizeof(int) + my_ids.size() * sizeof(int) +
                                          my_vals.size() * sizeof(T));
  }
};

template <typename T>
MpiGradSync<T>::MpiGradSync(std::chrono::milliseconds timeout) : impl_(std::make_unique<Impl>()) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) fail("[MpiGradSync] MPI is not initialised (run under mpirun)");
  if (timeout.count() <= 0) fail("[MpiGradSync] timeout must be positive");
  impl_->timeout = timeout;
  MPI_Request req;
  check(MPI_Comm_idup(MPI_COMM_WORLD, &impl_->comm, &req), "MPI_Comm_idup");
  impl_->wait(&req, 1, "start-up");
  check(MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(impl_->comm, &impl_->rank), "MPI_Comm_rank");
  check(MPI_Comm_size(impl_->comm, &impl_->size), "MPI_Comm_size");
  impl_->stats = MpiSyncStats();
}

template <typename T>
MpiGradSync<T>::~MpiGradSync() {
  if (impl_->broken) {
    // A collective may still be pending on these buffers until MPI_Abort.
    static_cast<void>(impl_.release());
    return;
  }
  int finalized = 1;
  MPI_Finalized(&finalized);
  if (!finalized && impl_->comm != MPI_COMM_NULL && MPI_Comm_free(&impl_->comm) != MPI_SUCCESS)
    std::fprintf(stderr, "copse: [MpiGradSync] MPI_Comm_free failed\n");
}

template <typename T>
int MpiGradSync<T>::rank() const {
  return impl_->rank;
}

template <typename T>
int MpiGradSync<T>::size() const {
  return impl_->size;
}

template <typename T>
double MpiGradSync<T>::timeout_s() const {
  return impl_->timeout.count() / 1000.0;
}

template <typename T>
void MpiGradSync<T>::sync(ParamStore<T>& store) {
  impl_->usable("sync");
  const auto t0 = std::chrono::steady_clock::now();
  if (!impl_->layout_checked) impl_->check_layout(store);
  if (impl_->size > 1) {
    impl_->exchange_dense(store);
    impl_->exchange_sparse(store);
  }
  impl_->stats.exchange_s +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++impl_->stats.clocks;
  ++impl_->clock;
}

template <typename T>
void MpiGradSync<T>::sync_sparse(ParamStore<T>& store) {
  impl_->usable("sync_sparse");
  if (!impl_->layout_checked) impl_->check_layout(store);
  if (impl_->size > 1) impl_->exchange_sparse(store);
}

template <typename T>
void MpiGradSync<T>::count(double exchange_s, double wait_s, long bytes, long sent_bytes) {
  impl_->stats.exchange_s += exchange_s;
  impl_->stats.wait_s += wait_s;
  impl_->stats.bytes += bytes;
  impl_->stats.sent_bytes += sent_bytes;
  ++impl_->stats.clocks;
  ++impl_->clock;
}

template <typename T>
std::vector<double> MpiGradSync<T>::sum(const std::vector<double>& mine, const std::string& what) {
  impl_->usable("sum");
  const int k = as_count(mine.size(), "a sum");
  impl_->small_mine = mine;
  auto& all = impl_->small;
  all.assign(static_cast<std::size_t>(impl_->size) * k, 0.0);
  MPI_Request req;
  check(MPI_Iallgather(impl_->small_mine.data(), k, MPI_DOUBLE, all.data(), k, MPI_DOUBLE,
                       impl_->comm, &req),
        "MPI_Iallgather");
  impl_->wait(&req, 1, what);
  std::vector<double> out(k, 0.0);
  for (int r = 0; r < impl_->size; ++r)
    for (int j = 0; j < k; ++j) out[j] += all[static_cast<std::size_t>(r) * k + j];
  return out;
}

template <typename T>
std::vector<std::uint64_t> MpiGradSync<T>::allgather(std::uint64_t mine, const std::string& what) {
  impl_->usable("allgather");
  impl_->hash_mine = mine;
  auto& all = impl_->hashes;
  all.assign(impl_->size, 0);
  MPI_Request req;
  check(MPI_Iallgather(&impl_->hash_mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T,
                       impl_->comm, &req),
        "MPI_Iallgather");
  impl_->wait(&req, 1, what);
  return all;
}

template <typename T>
void MpiGradSync<T>::broadcast(void* data, std::size_t bytes, int root, const std::string& what) {
  impl_->usable("broadcast");
  auto& buf = impl_->bytes;
  const auto* src = static_cast<const unsigned char*>(data);
  buf.assign(src, src + bytes);
  MPI_Request req;
  check(MPI_Ibcast(buf.data(), as_count(bytes, "a broadcast"), MPI_BYTE, root, impl_->comm, &req),
        "MPI_Ibcast");
  impl_->wait(&req, 1, what);
  std::copy(buf.begin(), buf.end(), static_cast<unsigned char*>(data));
}

template <typename T>
MpiSyncStats MpiGradSync<T>::stats() const {
  return impl_->stats;
}

template <typename T>
void MpiGradSync<T>::reset_stats() {
  impl_->stats = MpiSyncStats();
}

template class MpiGradSync<float>;
template class MpiGradSync<double>;

}  // namespace copse::memory
