// bench_seq_lstm: copse's sequence LSTM (models::seq_lstm over each sentence
// as a chain, level-batched) against cuDNN's LSTM (benchmarks/cudnn_lstm.h)
// on the same variable-length batches padded to their longest sentence, on
// one GPU: forward + backward (data and weights) per batch, loss = softmax
// cross-entropy of the last hidden state of every sentence (copse's
// sentiment head), no optimizer step. Before timing, both start from copse's
// parameters and must agree on the first batch: every sentence's final h,
// the loss and every gradient to 1e-4 relative (norm-wise), or nothing is
// timed (exit 3). Without a GPU it prints "needs a GPU: <reason>" and exits 0.
#include <fmt/format.h>
#include <omp.h>
#include <sys/utsname.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "benchmarks/bench_util.h"
#include "benchmarks/cudnn_lstm.h"
#include "common/error.h"
#include "cuda/cuda_backend.h"
#include "models/cells.h"
#include "models/sentiment_model.h"
#include "models/sequence_reader.h"
#include "models/synthetic_treebank.h"
#include "models/vocab.h"
#include "ops/device.h"

using namespace copse;
using bench::cuda_check;
using bench::CudnnLstm;
using bench::DeviceBuffer;

namespace {

using copse::bench::now_s;
using copse::bench::cpu_model;

constexpr double kTol = 1e-4;

// ||a - b|| / ||b|| over [begin, end) of both (||a - b|| when b is zero).
double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (!std::isfinite(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? rel_err(a.data(), b.data(), a.size()) : INFINITY;
}

// The batches both systems see: batch k holds sentences order[(k*B + j) % n].
struct Batches {
  const std::vector<models::LabeledTree>* seqs;
  std::vector<int> order;
  int B;
  std::vector<const models::LabeledTree*> get(long k) const {
    std::vector<const models::LabeledTree*> out;
    for (int j = 0; j < B; ++j) out.push_back(&(*seqs)[order[(k * B + j) % order.size()]]);
    return out;
  }
};

// The cuDNN side: its own copies of copse's initial embeddings, LSTM weights
// and head; the glue around the LSTM (embedding gather, head GEMMs, softmax
// cross-entropy, embedding scatter) runs on copse's CUDA backend (cuBLAS
// without TF32), on the same stream as cuDNN.
class CudnnModel {
 public:
  CudnnModel(cuda::CudaBackend& be, memory::ParamStore<float>& ps, int classes, int max_len)
      : be_(be),
        V_(ps.rows(ps.id("embed"))),
        E_(ps.row_width(ps.id("embed"))),
        H_(ps.row_width(ps.id("out.W"))),
        C_(classes),
        B_(0),
        max_len_(max_len) {
    auto copy = [&](const char* name, DeviceBuffer& dst) {
      std::vector<float> h = ps.get_host(ps.id(name));
      dst.resize(sizeof(float) * h.size());
      be_.upload(dst.get(), h.data(), sizeof(float) * h.size());
    };
    copy("embed", embed_);
    copy("out.W", out_w_);
    copy("out.b", out_b_);
    W_ = ps.get_host(ps.id("W"));
    U_ = ps.get_host(ps.id("U"));
    b_ = ps.get_host(ps.id("U.b"));
    d_embed_.resize(sizeof(float) * std::size_t(V_) * E_);
    d_out_w_.resize(sizeof(float) * std::size_t(C_) * H_);
    d_out_b_.resize(sizeof(float) * C_);
  }

  void set_batch_size(int B) {
    B_ = B;
    lstm_ = std::make_unique<CudnnLstm>(be_.stream(), E_, H_, B, max_len_);
    lstm_->set_weights(W_, U_, b_);
    const std::size_t cells = std::size_t(B) * max_len_;
    x_.resize(sizeof(float) * cells * E_);   // [B, T, E]
    dx_.resize(sizeof(float) * cells * E_);  // [B, T, E]
    y_.resize(sizeof(float) * cells * H_);   // [B, T, H]
    hy_.resize(sizeof(float) * B * H_);      // [B, H]
    dhy_.resize(sizeof(float) * B * H_);     // [B, H]
    logits_.resize(sizeof(float) * B * C_);  // [B, C]
    dlogits_.resize(sizeof(float) * B * C_);
    pack_dev_.resize(sizeof(int) * (B + cells));  // labels [B], word ids [B, T]
  }

  // One forward + backward over the batch; returns the summed loss (the
  // gradients are of the loss times 1/B, as copse's).
  double step(const std::vector<const models::LabeledTree*>& batch) {
    const int B = B_;
    lengths_.resize(B);
    int T = 0;
    for (int b = 0; b < B; ++b) T = std::max(T, lengths_[b] = batch[b]->num_vertices());
    pack_.assign(B + std::size_t(B) * T, -1);  // -1: padding (gathers zeros, scatters nothing)
    for (int b = 0; b < B; ++b) {
      const auto& g = batch[b]->graph;
      const int n = g.num_vertices();
      pack_[b] = g.label[n - 1];  // the chain's last vertex carries the sentence label
      std::copy(g.input.begin(), g.input.end(), pack_.begin() + B + std::size_t(b) * T);
    }
    be_.upload_async(pack_dev_.get(), pack_.data(), sizeof(int) * pack_.size());
    const int* labels = pack_dev_.i();
    const int* words = pack_dev_.i() + B;
    lstm_->set_batch(lengths_);
    lstm_->zero_grads();
    cuda_check(cudaMemsetAsync(d_embed_.get(), 0, d_embed_.bytes(), be_.stream()),
               "cudaMemsetAsync (embedding gradient)");
    const int rows = B * T;
    be_.gather_rows(rows, E_, embed_.f(), E_, words, x_.f(), E_);
    lstm_->forward(x_.f(), y_.f(), hy_.f());
    // logits = hy Wo^T + bo ; dWo = dlogits^T hy ; dbo = colsum(dlogits) ; dhy = dlogits Wo
    be_.copy_rows(B, C_, out_b_.f(), 0, logits_.f(), C_, false);
    be_.gemm(false, true, B, C_, H_, 1.f, hy_.f(), H_, out_w_.f(), H_, 1.f, logits_.f(), C_);
    const double loss = be_.softmax_xent(B, C_, logits_.f(), C_, labels, 1.0f / B, dlogits_.f(), C_,
                                         nullptr, nullptr);
    be_.gemm(true, false, C_, H_, B, 1.f, dlogits_.f(), C_, hy_.f(), H_, 0.f, d_out_w_.f(), H_);
    be_.colsum(B, C_, dlogits_.f(), C_, d_out_b_.f(), false);
    be_.gemm(false, false, B, H_, C_, 1.f, dlogits_.f(), C_, out_w_.f(), H_, 0.f, dhy_.f(), H_);
    lstm_->backward(x_.f(), y_.f(), dhy_.f(), dx_.f());
    be_.scatter_add_rows(rows, E_, dx_.f(), E_, words, d_embed_.f(), E_);
    return loss;
  }

  int padded_length() const { return lstm_->padded_length(); }

  std::vector<float> download(const DeviceBuffer& d, std::size_t n) {
    std::vector<float> h(n);
    be_.download(h.data(), d.get(), sizeof(float) * n);
    return h;
  }
  std::vector<float> final_h() { return download(hy_, std::size_t(B_) * H_); }
  std::vector<float> grad_embed() { return download(d_embed_, std::size_t(V_) * E_); }
  std::vector<float> grad_out_w() { return download(d_out_w_, std::size_t(C_) * H_); }
  std::vector<float> grad_out_b() { return download(d_out_b_, C_); }
  CudnnLstm::Grads lstm_grads() { return lstm_->grads(); }

 private:
  cuda::CudaBackend& be_;
  int V_, E_, H_, C_, B_, max_len_;
  std::vector<float> W_, U_, b_;
  std::unique_ptr<CudnnLstm> lstm_;
  DeviceBuffer embed_, out_w_, out_b_, d_embed_, d_out_w_, d_out_b_;
  DeviceBuffer x_, dx_, y_, hy_, dhy_, logits_, dlogits_, pack_dev_;
  std::vector<int> lengths_, pack_;
};

struct Timing {
  long batches = 0, seqs = 0, tokens = 0, padded_cells = 0;
  double seconds = 0;
  double seqs_per_s() const { return seqs / seconds; }
  double tokens_per_s() const { return tokens / seconds; }
  double ms_per_batch() const { return 1e3 * seconds / batches; }
};

// Three warm-up batches, then batches until `seconds` have passed (at least
// three); the device is synchronised before the clock starts and stops.
template <typename Step>
Timing time_batches(ops::Backend<float>& be, const Batches& batches, double seconds, Step step) {
  long k = 1;  // batch 0 was the check
  for (int w = 0; w < 3; ++w) step(batches.get(k++));
  Timing t;
  be.sync();
  const double t0 = now_s();
  while (now_s() - t0 < seconds || t.batches < 3) {
    auto b = batches.get(k++);
    int T = 0;
    for (auto* s : b) t.tokens += s->num_vertices(), T = std::max(T, s->num_vertices());
    t.padded_cells += long(T) * batches.B;
    const double loss = step(b);
    if (!std::isfinite(loss)) fail("non-finite loss in the benchmark");
    ++t.batches;
    t.seqs += batches.B;
  }
  be.sync();
  t.seconds = now_s() - t0;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_seq_lstm: copse's sequence LSTM against cuDNN's on variable-length batches"};
  std::string data;
  int embed = 128, hidden = 128, batch = 64, threads = 1;
  double seconds = 5;
  app.add_option("--data", data,
                 "PTB file (e.g. SST train.txt), read as word chains; "
                 "default: synthetic treebank");
  app.add_option("--embed", embed)->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--seconds", seconds, "timed seconds per system")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (batch building)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);
  try {
    if (batch <= 0 || embed <= 0 || hidden <= 0)
      fail("--batch, --embed, --hidden must be positive");
    std::vector<models::LabeledTree> seqs;
    if (data.empty()) {
      for (auto& t : models::make_synthetic_treebank(4000, 1))
        seqs.push_back(models::ptb_to_chain(t));
    } else {
      seqs = models::read_ptb_as_chains(data);
    }
    models::Vocab vocab;  // as `copse train --model lstm`: first appearance after <unk>
    for (auto& t : seqs)
      for (const auto& w : t.token)
        if (!w.empty()) vocab.add(w);
    long tokens = 0;
    int max_len = 0;
    for (auto& t : seqs) {
      models::assign_all_inputs(vocab, t);
      tokens += t.num_vertices();
      max_len = std::max(max_len, t.num_vertices());
    }
    struct utsname u;
    uname(&u);
    fmt::print(
        "bench_seq_lstm | data {} ({} sentences, {} tokens, mean length {:.1f}, max {}) | "
        "embed {} hidden {} batch {} | forward + backward, no optimizer step\n"
        "machine: {} ({} cores), {} {}\n",
        data.empty() ? "synthetic" : data, seqs.size(), tokens, double(tokens) / seqs.size(),
        max_len, embed, hidden, batch, cpu_model(), std::thread::hardware_concurrency(), u.sysname,
        u.release);
    if (ops::gpu_count() == 0) {
      fmt::print("needs a GPU: {}\n", ops::gpu_description(0));
      return 0;
    }
    int cuda_rt = 0;
    cuda_check(cudaRuntimeGetVersion(&cuda_rt), "cudaRuntimeGetVersion");
    fmt::print("gpu: {} | CUDA runtime {}.{} | cuDNN {} (built against {}) | fp32, no TF32\n",
               ops::gpu_description(0), cuda_rt / 1000, (cuda_rt % 1000) / 10, cudnnGetVersion(),
               CUDNN_VERSION);

    ops::DeviceOptions dopt;
    dopt.device = "cuda";
    dopt.threads = threads;
    auto be_owner = ops::make_backend(dopt);
    auto& be = dynamic_cast<cuda::CudaBackend&>(*be_owner);
    models::SentimentConfig cfg;
    cfg.vocab = vocab.size();
    cfg.embed = embed;
    cfg.hidden = hidden;
    models::SentimentModel<float> model(models::seq_lstm(embed, hidden), cfg, be);
    auto& ps = model.params();
    ps.init(1);
    CudnnModel cd(be, ps, cfg.classes, max_len);
    cd.set_batch_size(batch);

    Batches batches{&seqs, std::vector<int>(seqs.size()), batch};
    std::iota(batches.order.begin(), batches.order.end(), 0);
    std::mt19937_64 rng(7);
    std::shuffle(batches.order.begin(), batches.order.end(), rng);
    scheduler::BatchOptions bo;
    bo.num_slots = std::max(1, model.plan().fn.child_slots);
    std::vector<const scheduler::Graph*> graphs;
    auto copse_step = [&](const std::vector<const models::LabeledTree*>& b) {
      graphs.clear();
      for (auto* s : b) graphs.push_back(&s->graph);
      auto gb = scheduler::make_batch(graphs, bo);
      ps.zero_grads();
      return model.train_batch(gb, 1.0f / batch);
    };
    auto cudnn_step = [&](const std::vector<const models::LabeledTree*>& b) { return cd.step(b); };

    // ---- the check: batch 0 through both, from the same parameters.
    {
      auto b0 = batches.get(0);
      graphs.clear();
      for (auto* s : b0) graphs.push_back(&s->graph);
      auto gb = scheduler::make_batch(graphs, bo);
      ps.zero_grads();
      const double loss_c = model.train_batch(gb, 1.0f / batch);
      auto hv = model.train_executor().output("h");  // [N, H] (ld), level-major rows
      std::vector<float> h_all(std::size_t(gb.num_rows - 1) * hv.ld + hidden);
      be.download(h_all.data(), hv.ptr, sizeof(float) * h_all.size());
      std::vector<float> h_c(std::size_t(batch) * hidden);
      for (int g = 0; g < batch; ++g) {
        const int r = gb.root_rows[gb.root_ptr[g]];  // a chain's root is its last word
        std::copy_n(h_all.begin() + std::size_t(r) * hv.ld, hidden,
                    h_c.begin() + std::size_t(g) * hidden);
      }
      auto grad = [&](const char* name) {
        const int id = ps.id(name);
        std::vector<float> v(ps.numel(id));
        be.download(v.data(), ps.grad(id), sizeof(float) * v.size());
        return v;
      };
      const double loss_d = cd.step(b0);
      const std::vector<float> h_d = cd.final_h();
      const CudnnLstm::Grads lg = cd.lstm_grads();
      double worst_seq = 0;
      for (int g = 0; g < batch; ++g)
        worst_seq = std::max(worst_seq, rel_err(h_d.data() + std::size_t(g) * hidden,
                                                h_c.data() + std::size_t(g) * hidden, hidden));
      const std::vector<float> gU_b = grad("U.b");
      const std::vector<std::pair<std::string, double>> errs{
          {"loss", std::fabs(loss_d - loss_c) / std::max(std::fabs(loss_c), 1e-30)},
          {"h", rel_err(h_d, h_c)},
          {"h(worst sentence)", worst_seq},
          {"W", rel_err(lg.W, grad("W"))},
          {"U", rel_err(lg.U, grad("U"))},
          {"U.b(recurrent bias)", rel_err(lg.b_rec, gU_b)},
          {"U.b(input bias)", rel_err(lg.b_in, gU_b)},
          {"embed", rel_err(cd.grad_embed(), grad("embed"))},
          {"out.W", rel_err(cd.grad_out_w(), grad("out.W"))},
          {"out.b", rel_err(cd.grad_out_b(), grad("out.b"))}};
      double worst = 0;
      std::string detail;
      for (const auto& [k, v] : errs) {
        worst = std::isfinite(v) ? std::max(worst, v) : INFINITY;
        detail += fmt::format(" {}={:.2e}", k, v);
      }
      const bool ok = worst <= kTol;
      fmt::print(
          "[check] cudnn vs copse on the first batch (loss {:.6f} vs {:.6f}, padded to {}): "
          "{} max rel err {:.2e} (tol {:g}) |{}\n",
          loss_d / batch, loss_c / batch, cd.padded_length(), ok ? "ok" : "FAILED", worst, kTol,
          detail);
      if (!ok) {
        fmt::print("cudnn: FAILED the same-function check; not timed\n");
        return 3;
      }
    }

    const Timing tc = time_batches(be, batches, seconds, copse_step);
    const Timing td = time_batches(be, batches, seconds, cudnn_step);
    fmt::print("\n{:<8} {:>10} {:>12} {:>10} {:>8} {:>7}\n", "system", "seqs/s", "tokens/s",
               "ms/batch", "batches", "secs");
    auto row = [](const char* name, const Timing& t) {
      fmt::print("{:<8} {:>10.0f} {:>12.0f} {:>10.3f} {:>8} {:>7.2f}\n", name, t.seqs_per_s(),
                 t.tokens_per_s(), t.ms_per_batch(), t.batches, t.seconds);
    };
    row("copse", tc);
    row("cudnn", td);
    const double ratio = tc.seqs_per_s() / td.seqs_per_s();
    fmt::print(
        "copse / cudnn: {:.2f}x | cuDNN's padded batches: {:.1f}% of the cells are "
        "padding\n",
        ratio, 100.0 * (1.0 - double(td.tokens) / td.padded_cells));
    nlohmann::json j;
    j["copse_seqs_per_s"] = tc.seqs_per_s();
    j["cudnn_seqs_per_s"] = td.seqs_per_s();
    j["copse_tokens_per_s"] = tc.tokens_per_s();
    j["cudnn_tokens_per_s"] = td.tokens_per_s();
    j["copse_ms_per_batch"] = tc.ms_per_batch();
    j["cudnn_ms_per_batch"] = td.ms_per_batch();
    j["ratio"] = ratio;
    j["config"] = {{"data", data.empty() ? "synthetic" : data},
                   {"embed", embed},
                   {"hidden", hidden},
                   {"batch", batch},
                   {"seconds", seconds},
                   {"gpu", ops::gpu_description(0)},
                   {"cudnn", cudnnGetVersion()}};
    fmt::print("\n{}\n", j.dump());
  } catch (const Error& e) {
    fmt::print(stderr, "bench_seq_lstm: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
