// Whole training steps with `--device cuda` semantics on the host: the CUDA
// backend's own code on the emulated device (every kernel run by the host
// emulator, the generated ones compiled from fused_kernel_source's text,
// cuBLAS replaced by a reference GEMM, memory not host-accessible so the
// generic layers take their device paths), against the CPU backend: every
// cell's forward, all gradients and an optimizer step; and SGD steps of the
// Tree-LSTM sentiment model, its softmax head and loss included.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cuda/fused_codegen.h"
#include "cuda/host_emu/emu_device.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "ops/cpu_backend.h"
#include "tests/cell_runs.h"
#include "tests/cuda_host/emu_test_util.h"
#include "vertex/plan.h"

namespace copse {
namespace {

using emutest::close;
using emutest::Vec;
namespace emu = cuda::emu;

constexpr int kVocab = 50, kEmbed = 24, kHidden = 20;

// The generated kernels of every cell at the sizes below, one library.
const emu::HostKernelLibrary& cell_kernels() {
  static const emu::HostKernelLibrary lib = [] {
    std::vector<emu::KernelSource> src;
    std::set<std::string> seen;
    for (const std::string& name : models::cell_names()) {
      vertex::ExecPlan plan = vertex::compile(models::make_cell(name, kEmbed, kHidden), {});
      for (const auto& reg : plan.regions)
        for (const ops::FusedProgram* p : {&reg.fwd, &reg.bwd, &reg.bwd_views})
          if (!p->code.empty() && seen.insert(cuda::fused_kernel_name(*p)).second)
            src.push_back({cuda::fused_kernel_name(*p), cuda::fused_kernel_source(*p)});
    }
    return emu::HostKernelLibrary(src);
  }();
  return lib;
}

struct Emulated {
  long leaked = -1;
  std::unique_ptr<cuda::CudaBackend> be;
  explicit Emulated(bool generated) {
    emu::EmuDeviceOptions o;
    o.library = &cell_kernels();
    o.on_destroy = [this](const emu::EmuDevice& d) { leaked = d.live_count(); };
    cuda::CudaOptions co;
    co.generated_kernels = generated;
    be = emu::emulated_backend(o, co);
  }
};

// ||got - ref|| / ||ref||, for the report.
double rel_error(const Vec& got, const Vec& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

memory::OptimizerConfig optimizer_for(int i) {
  memory::OptimizerConfig oc;
  using K = memory::OptimizerConfig;
  oc.kind = i % 3 == 0 ? K::Adam : i % 3 == 1 ? K::Adagrad : K::Sgd;
  oc.lr = oc.kind == K::Sgd ? 0.2f : 0.05f;
  oc.momentum = 0.9f;
  oc.l2 = 1e-3f;
  return oc;
}

// One step of every cell: outputs, gradients, the updated parameters and
// optimizer state, generated kernels and interpreter, to 1e-5.
TEST(EmulatedCuda, EveryCellTrainingStepMatchesCpu) {
  const auto& names = models::cell_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const auto fn = models::make_cell(name, kEmbed, kHidden);
    const auto graphs = celltest::graphs_for(name, kVocab);
    const memory::OptimizerConfig oc = optimizer_for(static_cast<int>(i));
    ops::CpuBackend<float> cpu(1);
    const celltest::CellRun ref = celltest::run_cell(cpu, fn, graphs, kVocab, kEmbed, &oc);
    for (bool generated : {true, false}) {
      SCOPED_TRACE(name + (generated ? " (generated kernels)" : " (interpreter)"));
      long leaked = -1;
      {
        Emulated e(generated);
        ASSERT_FALSE(e.be->host_accessible());
        const celltest::CellRun got = celltest::run_cell(*e.be, fn, graphs, kVocab, kEmbed, &oc);
        EXPECT_TRUE(close(got.h, ref.h, 1e-5, name + " output h"));
        EXPECT_TRUE(close(got.grads, ref.grads, 1e-5, name + " gradients"));
        EXPECT_TRUE(close(got.params, ref.params, 1e-5, name + " parameters after the step"));
        EXPECT_TRUE(close(got.state, ref.state, 1e-5, name + " optimizer state"));
        EXPECT_EQ(got.uploads, 1) << "the batch's index arrays go up in one copy";
        fmt::print("  {} ({}): relative error h {:.1e}, gradients {:.1e}, parameters {:.1e}\n",
                   name, generated ? "generated" : "interpreter", rel_error(got.h, ref.h),
                   rel_error(got.grads, ref.grads), rel_error(got.params, ref.params));
        const cuda::CudaStats& st = e.be->stats();
        EXPECT_GT(st.gemms, 0);
        if (generated) {
          EXPECT_GT(st.fused_generated, 0);
          EXPECT_EQ(st.fused_interpreted, 0);
        } else {
          EXPECT_EQ(st.fused_generated, 0);
          EXPECT_GT(st.fused_interpreted, 0);
        }
        e.be.reset();
        leaked = e.leaked;
      }
      EXPECT_EQ(leaked, 0) << "device resources left when the backend went";
    }
  }
}

// Three SGD steps (momentum, L2) of the Tree-LSTM sentiment model: the
// losses and the parameters, to 1e-5.
TEST(EmulatedCuda, SentimentTrainingStepsMatchCpu) {
  ops::CpuBackend<float> cpu(1);
  std::vector<double> lc;
  const Vec pc = celltest::sentiment_training_steps(cpu, &lc);
  for (bool generated : {true, false}) {
    SCOPED_TRACE(generated ? "generated kernels" : "interpreter");
    Emulated e(generated);
    std::vector<double> lg;
    const Vec pg = celltest::sentiment_training_steps(*e.be, &lg);
    ASSERT_EQ(lg.size(), lc.size());
    for (size_t i = 0; i < lc.size(); ++i) EXPECT_NEAR(lg[i], lc[i], 1e-5 * std::fabs(lc[i]));
    EXPECT_TRUE(close(pg, pc, 1e-5, "parameters after 3 SGD steps"));
  }
}

}  // namespace
}  // namespace copse
