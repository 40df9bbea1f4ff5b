// ParamStore: all parameters, gradients and optimizer state of a model, each
// in one flat buffer (zeroing is one fill, a multi-worker sync one collective).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "memory/optimizer.h"
#include "ops/backend.h"

namespace copse::memory {

// How ParamStore::init fills a parameter.
enum class Init {
  Zeros,
  Uniform,  // U[-scale, scale]
  Normal,   // N(0, scale^2)
  Xavier,   // U[-b, b], b = gain * sqrt(6 / (fan_in + fan_out)), gain = scale > 0 ? scale : 1;
            // [out, in]: fan_in = in, fan_out = out; [n]: both n; [d0, ...]: fan_out = d0,
            // fan_in = the product of the rest
};

// A parameter: its name, shape, initialisation and whether it is an
// embedding table updated by rows.
struct ParamSpec {
  std::string name;  // unique in the store; gradients and files use it
  std::vector<int> shape;  // empty = scalar
  Init init = Init::Xavier;  // see Init
  float scale = 0.f;  // Init's scale (Uniform, Normal, Xavier's gain)
  bool sparse_rows = false;  // embedding table [rows, ...]: only touched rows get updates
};

template <typename T>
class ParamStore;

// Called by ParamStore::step() before clipping and the update, e.g. to
// all-reduce gradients between workers: the dense gradients are
// grads_flat()[0, dense_elements()), sparse ones the rows touched_rows(id).
template <typename T>
class GradSync {
 public:
  virtual ~GradSync() = default;
  // Makes the store's gradients the sum over workers (in place).
  virtual void sync(ParamStore<T>& store) = 0;
};

// Layout: dense params first, then sparse_rows params (each group in add
// order), every offset a multiple of 16 elements; padding stays zero.
//
// Every buffer lives in the backend's memory (host for the CPU backend,
// device for CUDA); allocation, fills, copies, grad_norm, clipping and the
// optimizer update all go through the backend, row lists (touched embedding
// rows) in one call each.
template <typename T>
class ParamStore {
 public:
  // Every parameter's offset is a multiple of this many elements.
  static constexpr std::size_t kAlignElements = 16;

  // An empty store in `backend`'s memory: add() parameters, then finalize().
  explicit ParamStore(ops::Backend<T>& backend);
  ~ParamStore();
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  int add(const ParamSpec& spec);           // before finalize; duplicate name throws; returns id
  int find(const std::string& name) const;  // -1 if absent
  int id(const std::string& name) const;    // throws, naming close and known names
  void finalize();                          // allocates; params and grads start at zero
  // Whether finalize() has run.
  bool finalized() const { return finalized_; }

  // The number of parameters (ids 0 .. size() - 1, in add order).
  int size() const { return static_cast<int>(specs_.size()); }
  // The spec parameter `id` was added with.
  const ParamSpec& spec(int id) const;
  // Its number of elements (the product of the shape).
  std::size_t numel(int id) const;
  std::size_t offset(int id) const;  // elements from params_flat() (same for grads_flat())
  int rows(int id) const;            // shape[0] (1 for a scalar)
  int row_width(int id) const;       // numel / rows

  // Its values (backend memory, numel(id) elements, row-major).
  T* param(int id);
  // The same, read-only.
  const T* param(int id) const;
  // Its gradient (backend memory, laid out as param(id)).
  T* grad(int id);
  // The same, read-only.
  const T* grad(int id) const;
  // The backend whose memory holds every buffer.
  ops::Backend<T>& backend() { return backend_; }
  // Every parameter in one buffer [total_elements()] (see the layout above).
  T* params_flat() { return params_; }
  // Every gradient in one buffer, laid out as params_flat().
  T* grads_flat() { return grads_; }
  // Elements of each flat buffer, alignment padding included.
  std::size_t total_elements() const { return total_; }
  // Elements of the dense parameters: [0, dense_elements()) of each flat buffer.
  std::size_t dense_elements() const { return dense_; }

  // Deterministic from seed: each parameter draws from its own std::mt19937_64
  // seeded by (seed, name), so adding a parameter does not change the others.
  void init(std::uint64_t seed);

  void set_optimizer(const OptimizerConfig& cfg);  // (re)allocates zeroed optimizer state
  // The optimizer set by set_optimizer().
  const OptimizerConfig& optimizer() const { return cfg_; }
  // Whether set_optimizer() has been called.
  bool has_optimizer() const { return has_optimizer_; }
  // Changes the optimizer's learning rate (its state is kept).
  void set_learning_rate(float lr);
  // The dense parameters' L2 weight decay is the optimizer's l2 times
  // `scale` (sparse rows keep the full l2). An SSP shard applies W pushes
  // per clock, one optimizer step each: scale 1/W decays the dense
  // parameters once per clock, as one bulk-synchronous step does.
  void set_dense_l2_scale(float scale) { dense_l2_scale_ = scale; }
  // The exchange prepare_step() calls first (not owned; nullptr: none).
  void set_grad_sync(GradSync<T>* sync) { sync_ = sync; }

  // Records rows of a sparse_rows param that received gradient this step
  // (duplicates fine; out-of-range rows throw).
  void touch_rows(int id, const int* rows, int n);
  // The distinct rows touched since the last step() or zero_grads(), sorted.
  const std::vector<int>& touched_rows(int id);

  // Dense params: one fill over [0, dense_elements()); sparse params: only
  // the rows touched since the last zero_grads().
  void zero_grads();
  // Global L2 norm over dense grads and touched rows of sparse params.
  double grad_norm();
  // One optimizer step in two halves, so that several workers can agree on
  // whether to take it. prepare_step(): GradSync (if set); clipping (if
  // clip_norm > 0 and the norm exceeds it, grads are scaled in place by
  // clip_norm / norm); then the non-finite check of the update (dense params
  // and touched rows of sparse params, parameters and optimizer state),
  // which writes nothing. Returns "" when every value the update would write
  // is finite, else the name of the parameter the first bad value (its own
  // or its optimizer state's) belongs to. Then exactly one of:
  // apply_step(): the update; increments step_count() and optimizer_steps().
  // discard_step(): no update; parameters, optimizer state and both counters
  //   stay as they were, as if the batch had never been seen.
  // Both clear the touched rows (they are still zeroed by the next
  // zero_grads()).
  //
  // grad_bound >= 0 promises that no gradient of this step exceeds it in
  // magnitude (after the exchange; e.g. the sum of the workers' gradient
  // norms, which bounds every entry of the summed gradient). The store then
  // skips the element-wise check when bounds on its parameters and state
  // (kept from what every update wrote, memory/optimizer.h) prove the update
  // finite: in ordinary training every step, at no cost. Where they cannot
  // (values near overflow, a backend that does not report bounds, no
  // grad_bound) the element-wise check runs.
  std::string prepare_step(double grad_bound = -1);
  // Off, prepare_step() checks nothing (and always returns ""): only for
  // measuring what the check costs (bench_treelstm --no-update-check).
  void set_update_check(bool on) { check_updates_ = on; }
  // Parameters or state were written other than through this store (e.g.
  // through params_flat()): the bounds above are forgotten.
  void note_external_write() { bounds_.known = false; }
  // How many prepare_step() calls ran the element-wise check (the rest were
  // proven finite by the bounds).
  long elementwise_checks() const { return elementwise_checks_; }
  // The second half of a step: the update (see prepare_step).
  void apply_step();
  // The second half of a step: no update (see prepare_step).
  void discard_step();
  // prepare_step() and apply_step(); throws copse::Error naming the
  // parameter when the update is not finite (having written nothing).
  void step();
  // Optimizer steps applied so far (apply_step / step).
  long step_count() const { return step_count_; }

  // Checkpoint copies; set_host checks the size.
  std::vector<float> get_host(int id) const;
  // Sets parameter `id` from host values (numel(id) of them).
  void set_host(int id, const std::vector<float>& values);

  // Training state for checkpoints: the flat parameter buffer and each flat
  // optimizer-state slot ([total_elements()] each), and the step counters.
  int optimizer_state_slots() const { return state_slots_; }
  std::vector<T> get_flat_host(int which) const;  // which: -1 params, k >= 0 state slot k
  // Sets what get_flat_host(which) returns (the same size).
  void set_flat_host(int which, const std::vector<T>& values);
  // Updates since the last set_optimizer() (the t of the rule's bias correction).
  long optimizer_steps() const { return optimizer_steps_; }
  // Restores both counters (from a checkpoint).
  void set_step_counts(long step_count, long optimizer_steps);

 private:
  struct SparseRows {
    std::vector<int> touched;  // since the last step / zero_grads
    bool unique = true;        // touched is sorted and distinct
    std::vector<int> stale;    // touched before the last step, still to be zeroed
  };

  void check_id(int id, const char* where) const;
  void check_finalized(const char* where) const;
  void fill(T* dst, std::size_t n, T value);
  void scale_grads(T s);
  void release();
  void finish_step();  // the touched-row bookkeeping of apply/discard_step
  void widen_params(const std::vector<T>& values);  // bounds_ after a host upload
  std::string describe_nonfinite(const typename ops::Backend<T>::NonFinite& at);

  ops::Backend<T>& backend_;
  std::vector<ParamSpec> specs_;
  std::vector<std::size_t> numel_, offset_;
  std::vector<SparseRows> sparse_;  // indexed by id; used for sparse_rows params
  std::vector<int> sparse_ids_;
  bool finalized_ = false;
  std::size_t total_ = 0, dense_ = 0;
  T* params_ = nullptr;  // [total_]
  T* grads_ = nullptr;   // [total_]
  T* state_ = nullptr;   // [state_slots_, total_]: SGD momentum v; Adagrad h; Adam m, v
  int state_slots_ = 0;
  bool has_optimizer_ = false;
  // The optimizer of the dense buffer: cfg_ with its l2 scaled.
  OptimizerConfig dense_config() const {
    OptimizerConfig c = cfg_;
    c.l2 *= dense_l2_scale_;
    return c;
  }
  OptimizerConfig cfg_;
  float dense_l2_scale_ = 1.f;  // see set_dense_l2_scale()
  long step_count_ = 0;
  long optimizer_steps_ = 0;  // since set_optimizer: Adam's t
  GradSync<T>* sync_ = nullptr;
  bool prepared_ = false;
  bool check_updates_ = true;
  WrittenBounds bounds_;  // on every parameter and state value
  long elementwise_checks_ = 0;  // prepare_step() ran; apply_step() or discard_step() is due
};

}  // namespace copse::memory
