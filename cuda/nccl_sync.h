// The NCCL transport of `copse train --transport nccl`: dense gradients
// all-reduced on the GPUs, bootstrapped and helped (embedding rows) by MPI.
// Host-only header; cuda/nccl_sync.cpp, built with NCCL (registered as "nccl"
// by cuda/register.cpp; without it `--transport nccl` says why).
#pragma once

#include <memory>

#include "memory/mpi_sync.h"
#include "memory/param_store.h"

namespace copse::cuda {

// A GradSync for this rank of an MPI job on one GPU (device: this rank's
// index among the ranks on its machine; more ranks than GPUs on a machine is
// a start-up error, "--transport nccl needs one GPU per rank on each machine:
// R ranks, G GPUs on HOST", since NCCL refuses two ranks on one GPU):
//  - bootstrap: rank 0 makes the ncclUniqueId, `mpi` broadcasts it, every
//    rank calls ncclCommInitRank;
//  - dense gradients: ncclAllReduce (sum) of [0, dense_elements()). In host
//    memory (the CPU backend) they are copied to a device buffer and back,
//    through a pinned bounce buffer when pageable; in device memory (the CUDA
//    backend, one rank: `--device cuda` trains one worker) the all-reduce is
//    in place, its stream ordered after the backend's compute stream by an
//    event (decisions: cuda/nccl_plan.h);
//  - embedding rows: as touched rows through mpi.sync_sparse() (host);
//  - every wait polls under mpi's deadline, and no call before it blocks
//    until the all-reduce is done; past it the communicator is aborted and
//    copse::Error says which rank gave up and when.
// The sums are identical on every rank (NCCL's ring), not bit-equal to the
// host transports' rank-order sums.
// Throws copse::Error without NCCL in this build or without a usable GPU.
std::unique_ptr<memory::GradSync<float>> make_nccl_grad_sync(memory::MpiGradSync<float>& mpi);

}  // namespace copse::cuda
