// The NCCL transport's decisions (cuda/nccl_plan.h), checked without a GPU:
// local ranks from host hashes, one GPU per rank, and how the all-reduce
// reaches gradients in each kind of memory.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "cuda/nccl_plan.h"

namespace copse {
namespace {

using cuda::GradPlan;
using cuda::MemoryKind;

TEST(NcclPlan, LocalRanksCountTheRanksOfTheSameHost) {
  // Ranks 0, 2, 3 on host 7, rank 1 and 4 on host 9.
  const std::vector<std::uint64_t> hosts = {7, 9, 7, 7, 9};
  const int want_index[] = {0, 0, 1, 2, 1};
  const int want_count[] = {3, 2, 3, 3, 2};
  for (int r = 0; r < 5; ++r) {
    const cuda::LocalRanks l = cuda::local_ranks(hosts, r);
    EXPECT_EQ(l.index, want_index[r]) << "rank " << r;
    EXPECT_EQ(l.count, want_count[r]) << "rank " << r;
  }
  const cuda::LocalRanks one = cuda::local_ranks({42}, 0);
  EXPECT_EQ(one.index, 0);
  EXPECT_EQ(one.count, 1);
}

TEST(NcclPlan, OneGpuPerRankOrAStartUpError) {
  for (int gpus = 1; gpus <= 4; ++gpus)
    for (int ranks = 1; ranks <= gpus; ++ranks)
      for (int local = 0; local < ranks; ++local) {
        const cuda::NcclDevice d = cuda::nccl_device_for(local, ranks, gpus, "node1");
        EXPECT_TRUE(d.error.empty()) << d.error;
        EXPECT_EQ(d.device, local);
      }
  // Two ranks on one GPU: NCCL would refuse the communicator; every rank of
  // that machine says why.
  for (int local : {0, 1}) {
    const cuda::NcclDevice d = cuda::nccl_device_for(local, 2, 1, "gpu-box");
    EXPECT_EQ(d.device, -1);
    EXPECT_EQ(d.error,
              "--transport nccl needs one GPU per rank on each machine: 2 ranks, 1 GPUs on "
              "gpu-box");
  }
  EXPECT_EQ(cuda::nccl_device_for(4, 5, 4, "h").error,
            "--transport nccl needs one GPU per rank on each machine: 5 ranks, 4 GPUs on h");
}

TEST(NcclPlan, DeviceGradientsInPlaceHostOnesThroughTheDevice) {
  // The CUDA backend's buffers: in place, on the communicator's GPU only.
  GradPlan p = cuda::nccl_grad_plan(MemoryKind::Device, 1, 1);
  EXPECT_TRUE(p.in_place);
  EXPECT_FALSE(p.bounce);
  p = cuda::nccl_grad_plan(MemoryKind::Managed, 0, 0);
  EXPECT_TRUE(p.in_place);
  EXPECT_FALSE(p.bounce);
  try {
    cuda::nccl_grad_plan(MemoryKind::Device, 0, 1);
    ADD_FAILURE() << "device memory of another GPU accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gradients are on GPU 0, this rank's NCCL communicator "
                                         "on GPU 1"),
              std::string::npos)
        << e.what();
  }
  // The CPU backend's pageable buffer: through the pinned bounce buffer, so
  // that the copy back cannot block past the deadline; pinned memory as is.
  p = cuda::nccl_grad_plan(MemoryKind::Pageable, -1, 0);
  EXPECT_FALSE(p.in_place);
  EXPECT_TRUE(p.bounce);
  p = cuda::nccl_grad_plan(MemoryKind::Pinned, -1, 0);
  EXPECT_FALSE(p.in_place);
  EXPECT_FALSE(p.bounce);
}

}  // namespace
}  // namespace copse
