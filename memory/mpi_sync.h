// MpiGradSync: bulk-synchronous (BSP) gradient exchange between the ranks of
// an MPI job, one worker per rank, every collective under a deadline.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace copse::memory {

struct MpiSyncStats {
  long clocks = 0;      // gradient exchanges completed
  double wait_s = 0;    // time blocked in collectives: waiting for the others and moving data
  double exchange_s = 0;  // time in the gradient exchanges (sync()): their waits, copies, sums
  long bytes = 0;       // gradient bytes this rank contributed (dense + its touched rows)
  long sent_bytes = 0;  // bytes this rank's part of the exchanges sends to the other ranks
};

// After sync() every rank holds the SUM over all ranks of their gradients, as
// with ThreadGradSync:
//  - dense, [0, dense_elements()): a reduce-scatter (all-to-all of slices)
//    and an all-gather, the traffic of a ring all-reduce, 2 (W-1)/W of the
//    buffer per rank; each element is summed in rank order (0 + g_0 + g_1 +
//    ...) by the rank owning its slice, so every rank gets the same bits
//    whatever algorithm MPI picks, and the same bits as ThreadGradSync with
//    as many workers;
//  - sparse rows: each rank's touched row ids and values are all-gathered and
//    every rank sums the union itself in rank order (merge_sparse_rows).
// Needs MPI initialised (MPI_THREAD_FUNNELED suffices); call from one thread.
//
// Every collective is non-blocking and polled up to `timeout`. Past it the
// call throws copse::Error
//   "rank R: no reply from the other ranks within S s during WHAT (clock C)"
// and the object is broken: the job must end (the copse CLI calls MPI_Abort);
// the buffers of the pending collective are leaked so that MPI never writes
// to freed memory.
template <typename T>
class MpiGradSync : public GradSync<T> {
 public:
  // Works on its own duplicate of MPI_COMM_WORLD (itself made under the deadline).
  explicit MpiGradSync(std::chrono::milliseconds timeout);
  ~MpiGradSync() override;
  MpiGradSync(const MpiGradSync&) = delete;
  MpiGradSync& operator=(const MpiGradSync&) = delete;

  int rank() const;
  int size() const;
  double timeout_s() const;

  void sync(ParamStore<T>& store) override;  // dense and sparse; one clock
  // The sparse rows only, for a transport that moves the dense gradients
  // itself (NCCL); it then reports its share through count().
  void sync_sparse(ParamStore<T>& store);
  // Adds a delegate's exchange to the statistics (one clock): `exchange_s`
  // in all, `wait_s` of it blocked outside this object's own collectives.
  void count(double exchange_s, double wait_s, long bytes, long sent_bytes);

  // Small collectives under the same deadline; `what` names them in errors.
  // Element-wise sum over ranks, in rank order (the same bits on every rank).
  std::vector<double> sum(const std::vector<double>& mine, const std::string& what);
  std::vector<std::uint64_t> allgather(std::uint64_t mine, const std::string& what);
  void broadcast(void* data, std::size_t bytes, int root, const std::string& what);

  MpiSyncStats stats() const;
  void reset_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

extern template class MpiGradSync<float>;
extern template class MpiGradSync<double>;

}  // namespace copse::memory
