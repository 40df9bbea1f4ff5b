// What the NCCL transport (cuda/nccl_sync.cpp) decides, without CUDA or NCCL
// calls: which GPU a rank takes, and how the all-reduce reaches the gradient
// buffer. Plain C++, so that the host tests check it (tests/test_nccl_plan.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"

namespace copse::cuda {

// This rank's index among the ranks on its machine, and how many there are,
// from every rank's host hash (hosts[r] for rank r).
struct LocalRanks {
  int index = 0;
  int count = 1;
};
inline LocalRanks local_ranks(const std::vector<std::uint64_t>& hosts, int rank) {
  COPSE_ASSERT(rank >= 0 && rank < static_cast<int>(hosts.size()));
  LocalRanks l;
  l.index = 0;
  l.count = 0;
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    if (hosts[r] != hosts[rank]) continue;
    ++l.count;
    if (r < rank) ++l.index;
  }
  return l;
}

// The GPU of a rank: its index among the ranks of its machine. NCCL refuses
// a communicator in which two ranks share a GPU, so more ranks than GPUs on
// a machine is a start-up error (`error` set, the same on each of its ranks).
struct NcclDevice {
  int device = -1;
  std::string error;
};
inline NcclDevice nccl_device_for(int local_rank, int local_ranks, int gpus,
                                  const std::string& host) {
  NcclDevice d;
  if (local_ranks > gpus)
    d.error = fmt::format(
        "--transport nccl needs one GPU per rank on each machine: {} ranks, {} GPUs on {}",
        local_ranks, gpus, host);
  else
    d.device = local_rank;
  return d;
}

// Where the gradient buffer lives (cudaPointerGetAttributes' memory type).
enum class MemoryKind { Pageable, Pinned, Device, Managed };

// How the all-reduce reaches the gradients:
//  - in place: device (or managed) memory of the communicator's GPU, the
//    parameters of the CUDA backend; the all-reduce waits for the backend's
//    compute stream, which wrote them;
//  - otherwise host memory (the CPU backend) copied to a device buffer and
//    back; pageable memory through a pinned bounce buffer, so that no copy
//    blocks the host (a device-to-host copy into pageable memory returns only
//    once it is done, i.e. after the all-reduce, out of the deadline's reach).
struct GradPlan {
  bool in_place = false;
  bool bounce = false;
};
// Throws copse::Error for device memory of another GPU than `comm_device`.
inline GradPlan nccl_grad_plan(MemoryKind kind, int buffer_device, int comm_device) {
  GradPlan p;
  switch (kind) {
    case MemoryKind::Device:
    case MemoryKind::Managed:
      if (kind == MemoryKind::Device && buffer_device != comm_device)
        fail(
            "[nccl transport] the gradients are on GPU {}, this rank's NCCL communicator on GPU {}",
            buffer_device, comm_device);
      p.in_place = true;
      break;
    case MemoryKind::Pinned:
      break;
    case MemoryKind::Pageable:
      p.bounce = true;
      break;
  }
  return p;
}

}  // namespace copse::cuda
