// The host CUDA emulator's runtime (see emulator.h): the two schedules of a
// block's lanes, their barriers, warp shuffles and atomics. A shared library,
// so that kernels compiled at run time and loaded with dlopen bind to the
// same runtime as the program.
#include "cuda/host_emu/emulator.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cuda/host_emu/cuda_host_prelude.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace copse::cuda::emu {

namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxWarps = kMaxThreadsPerBlock / kWarpSize;

class Block;

struct Lane {
  LaneInfo info;
  Block* block = nullptr;
  int index = 0;  // linear thread index in the block
  int warp = 0;
  unsigned shuffles = 0;  // shuffles so far: their parity picks the exchange buffer
  // Fibers.
  enum class State { Ready, AtWarpBarrier, AtBlockBarrier, Done } state = State::Ready;
  ucontext_t ctx{};
  void* fake_stack = nullptr;  // ASan's, while switched away
};

thread_local Lane* tls_lane = nullptr;

Lane& current() {
  if (!tls_lane) throw std::runtime_error("[cuda emu] device function called outside a launch");
  return *tls_lane;
}

// One block being run. The schedules differ in what a lane does when it must
// wait for others (a barrier) or may let others go first (an atomic).
class Block {
 public:
  virtual ~Block() = default;
  virtual void sync_warp(Lane& l) = 0;
  virtual void sync_block(Lane& l) = 0;
  virtual void atomic_point(Lane& l) = 0;

  // Shuffles: each lane writes its value, the warp meets, each reads its
  // source. Two buffers used in turn: a lane can only be one shuffle ahead.
  std::uint64_t exchange[kMaxWarps][2][kWarpSize] = {};
};

// ---- Threads --------------------------------------------------------------

// A barrier whose participants may leave (a thread that returns no longer
// counts, as on a GPU). Waiters sleep on the generation (a futex), so the
// last arrival wakes them all with one call and none retakes the mutex.
class Barrier {
 public:
  void reset(int n) {
    expected_ = n;
    arrived_ = 0;
  }
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned gen = gen_.load(std::memory_order_relaxed);
    if (++arrived_ >= expected_) return open(lock);
    lock.unlock();
    while (gen_.load(std::memory_order_acquire) == gen) gen_.wait(gen, std::memory_order_acquire);
  }
  void leave() {
    std::unique_lock<std::mutex> lock(m_);
    --expected_;
    if (arrived_ > 0 && arrived_ >= expected_) open(lock);
  }

 private:
  void open(std::unique_lock<std::mutex>& lock) {
    arrived_ = 0;
    gen_.fetch_add(1, std::memory_order_release);
    lock.unlock();
    gen_.notify_all();
  }
  std::mutex m_;
  int expected_ = 0, arrived_ = 0;
  std::atomic<unsigned> gen_{0};
};

class ThreadBlock final : public Block {
 public:
  explicit ThreadBlock(int threads) {
    block_.reset(threads);
    for (int w = 0; w * kWarpSize < threads; ++w)
      warps_[w].reset(std::min(kWarpSize, threads - w * kWarpSize));
  }
  void sync_warp(Lane& l) override { warps_[l.warp].arrive_and_wait(); }
  void sync_block(Lane&) override { block_.arrive_and_wait(); }
  void atomic_point(Lane&) override {}
  void leave(Lane& l) {
    warps_[l.warp].leave();
    block_.leave();
  }

 private:
  Barrier block_;
  Barrier warps_[kMaxWarps];
};

// Reused OS threads: run(n, job) runs job(0) ... job(n - 1) on n of them.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void run(int n, void (*job)(void*, int), void* ctx) {
    std::unique_lock<std::mutex> lock(m_);
    while (static_cast<int>(threads_.size()) < n) {
      const int i = static_cast<int>(threads_.size());
      threads_.emplace_back([this, i] { work(i); });
    }
    job_ = job;
    ctx_ = ctx;
    active_ = remaining_ = n;
    ++gen_;
    start_.notify_all();
    done_.wait(lock, [&] { return remaining_ == 0; });
  }

 private:
  void work(int i) {
    unsigned long seen = 0;
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      start_.wait(lock, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      if (i >= active_) continue;
      auto* job = job_;
      void* ctx = ctx_;
      lock.unlock();
      job(ctx, i);
      lock.lock();
      if (--remaining_ == 0) done_.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable start_, done_;
  std::vector<std::thread> threads_;
  void (*job_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  int active_ = 0, remaining_ = 0;
  unsigned long gen_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

// ---- Fibers ---------------------------------------------------------------

constexpr std::size_t kFiberStack = 256 * 1024;

// Stacks kept for the next launch (mapped once, touched pages only).
std::vector<void*>& fiber_stacks(int n) {
  static std::vector<void*> stacks;
  while (static_cast<int>(stacks.size()) < n) {
    void* p = mmap(nullptr, kFiberStack, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("[cuda emu] cannot map a fiber stack");
    stacks.push_back(p);
  }
  return stacks;
}

class FiberBlock final : public Block {
 public:
  FiberBlock(std::vector<Lane>& lanes, int threads, std::uint64_t seed)
      : lanes_(lanes), rng_(seed), block_expected_(threads) {
    for (int w = 0; w * kWarpSize < threads; ++w)
      warp_expected_[w] = std::min(kWarpSize, threads - w * kWarpSize);
  }

  // Runs every lane to its end; false if some lanes wait on a barrier that
  // the others can no longer reach.
  bool run(void (*body)(void*), void* ctx) {
    body_ = body;
    ctx_ = ctx;
    const int n = static_cast<int>(lanes_.size());
    std::vector<void*>& stacks = fiber_stacks(n);
    for (int i = 0; i < n; ++i) {
      Lane& l = lanes_[i];
      getcontext(&l.ctx);
      l.ctx.uc_stack.ss_sp = stacks[i];
      l.ctx.uc_stack.ss_size = kFiberStack;
      l.ctx.uc_link = &scheduler_;
      makecontext(&l.ctx, &FiberBlock::entry, 0);
      ready_.push_back(i);
    }
    while (!ready_.empty()) {
      const std::size_t k = rng_() % ready_.size();
      Lane& l = lanes_[ready_[k]];
      ready_[k] = ready_.back();
      ready_.pop_back();
      tls_lane = &l;
      current_ = this;
      switch_to(l);
    }
    tls_lane = nullptr;
    for (const Lane& l : lanes_)
      if (l.state != Lane::State::Done) return false;
    return true;
  }

  void sync_warp(Lane& l) override {
    l.state = Lane::State::AtWarpBarrier;
    if (++warp_arrived_[l.warp] >= warp_expected_[l.warp]) release_warp(l.warp);
    yield(l);
  }
  void sync_block(Lane& l) override {
    l.state = Lane::State::AtBlockBarrier;
    if (++block_arrived_ >= block_expected_) release_block();
    yield(l);
  }
  void atomic_point(Lane& l) override {
    ready_.push_back(l.index);
    yield(l);
  }

  std::exception_ptr error;

 private:
  static void entry() {
    FiberBlock& b = *current_;
    Lane& l = *tls_lane;
    b.arrived(l);
    try {
      b.body_(b.ctx_);
    } catch (...) {
      if (!b.error) b.error = std::current_exception();
    }
    l.state = Lane::State::Done;
    if (--b.warp_expected_[l.warp] <= b.warp_arrived_[l.warp] && b.warp_arrived_[l.warp] > 0)
      b.release_warp(l.warp);
    if (--b.block_expected_ <= b.block_arrived_ && b.block_arrived_ > 0) b.release_block();
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(nullptr, b.sched_bottom_, b.sched_size_);
#endif
    // Returning resumes the scheduler (uc_link).
  }
  void release_warp(int w) {
    warp_arrived_[w] = 0;
    for (int i = w * kWarpSize; i < std::min<int>((w + 1) * kWarpSize, lanes_.size()); ++i)
      if (lanes_[i].state == Lane::State::AtWarpBarrier) make_ready(lanes_[i]);
  }
  void release_block() {
    block_arrived_ = 0;
    for (Lane& l : lanes_)
      if (l.state == Lane::State::AtBlockBarrier) make_ready(l);
  }
  void make_ready(Lane& l) {
    l.state = Lane::State::Ready;
    ready_.push_back(l.index);
  }
  void switch_to(Lane& l) {
#if defined(__SANITIZE_ADDRESS__)
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, l.ctx.uc_stack.ss_sp, l.ctx.uc_stack.ss_size);
    swapcontext(&scheduler_, &l.ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    swapcontext(&scheduler_, &l.ctx);
#endif
  }
  void yield(Lane& l) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&l.fake_stack, sched_bottom_, sched_size_);
    swapcontext(&l.ctx, &scheduler_);
    arrived(l);
#else
    swapcontext(&l.ctx, &scheduler_);
#endif
  }
  // A lane's side of a switch into it (ASan learns the scheduler's stack).
  void arrived(Lane& l) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(l.fake_stack, &sched_bottom_, &sched_size_);
#else
    (void)l;
#endif
  }

  static thread_local FiberBlock* current_;
  std::vector<Lane>& lanes_;
  std::mt19937_64 rng_;
  ucontext_t scheduler_{};
  const void* sched_bottom_ = nullptr;
  std::size_t sched_size_ = 0;
  std::vector<int> ready_;
  void (*body_)(void*) = nullptr;
  void* ctx_ = nullptr;
  int warp_expected_[kMaxWarps] = {}, warp_arrived_[kMaxWarps] = {};
  int block_expected_ = 0, block_arrived_ = 0;
};

thread_local FiberBlock* FiberBlock::current_ = nullptr;

// ---- launch ---------------------------------------------------------------

std::mutex launch_mutex;  // one launch at a time in this process
std::atomic<long> launch_count{0};

std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct ThreadJob {
  std::vector<Lane>* lanes;
  ThreadBlock* block;
  void (*body)(void*);
  void* ctx;
  std::mutex error_mutex;
  std::exception_ptr error;
};

void run_thread_lane(void* p, int i) {
  auto& job = *static_cast<ThreadJob*>(p);
  Lane& l = (*job.lanes)[i];
  tls_lane = &l;
  try {
    job.body(job.ctx);
  } catch (...) {
    std::lock_guard<std::mutex> lock(job.error_mutex);
    if (!job.error) job.error = std::current_exception();
  }
  tls_lane = nullptr;
  job.block->leave(l);
}

}  // namespace

long launches() { return launch_count.load(); }

namespace {
std::mutex names_mutex;
std::set<std::string>& names() {
  static std::set<std::string> s;
  return s;
}
}  // namespace

void note_kernel(const std::string& name) {
  std::lock_guard<std::mutex> lock(names_mutex);
  names().insert(name);
}

std::vector<std::string> kernels_launched() {
  std::lock_guard<std::mutex> lock(names_mutex);
  return {names().begin(), names().end()};
}

void launch(const Options& opts, Dim3 grid, Dim3 block, std::size_t smem_bytes, SharedMemory smem,
            void (*body)(void*), void* ctx) {
  const unsigned long threads = static_cast<unsigned long>(block.x) * block.y * block.z;
  const unsigned long blocks = static_cast<unsigned long>(grid.x) * grid.y * grid.z;
  if (threads == 0 || blocks == 0)
    throw std::runtime_error(
        "[cuda emu] launch with an empty grid or block (invalid configuration)");
  if (threads > kMaxThreadsPerBlock)
    throw std::runtime_error("[cuda emu] launch of " + std::to_string(threads) +
                             " threads per block (at most 1024)");
  if (grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    throw std::runtime_error("[cuda emu] grid too large");
  if (smem_bytes > kMaxDynamicSmem || smem_bytes > smem.capacity)
    throw std::runtime_error("[cuda emu] launch asks for " + std::to_string(smem_bytes) +
                             " bytes of dynamic shared memory; " +
                             std::to_string(std::min(kMaxDynamicSmem, smem.capacity)) +
                             " available");
  std::lock_guard<std::mutex> lock(launch_mutex);
  ++launch_count;
  Schedule schedule = opts.schedule;
#if defined(__SANITIZE_THREAD__)
  schedule = Schedule::Threads;  // ThreadSanitizer does not follow swapcontext
#endif
  const int n = static_cast<int>(threads);
  std::vector<Lane> lanes(n);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        if (smem_bytes) std::memset(smem.base, 0xff, smem_bytes);  // NaN
        std::unique_ptr<Block> b;
        ThreadBlock* tb = nullptr;
        FiberBlock* fb = nullptr;
        if (schedule == Schedule::Threads)
          b.reset(tb = new ThreadBlock(n));
        else
          b.reset(fb = new FiberBlock(lanes, n,
                                      mix(opts.seed ^ mix(bx + 65536ull * (by + 65536ull * bz)))));
        for (int i = 0; i < n; ++i) {
          Lane& l = lanes[i];
          l = Lane();
          l.block = b.get();
          l.index = i;
          l.warp = i / kWarpSize;
          l.info.block_dim = block;
          l.info.grid_dim = grid;
          l.info.block_idx = Dim3(bx, by, bz);
          l.info.thread_idx = Dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
        }
        std::exception_ptr error;
        if (tb) {
          ThreadJob job{&lanes, tb, body, ctx, {}, {}};
          pool().run(n, &run_thread_lane, &job);
          error = job.error;
        } else {
          const bool finished = fb->run(body, ctx);
          error = fb->error;
          if (!error && !finished)
            throw std::runtime_error(
                "[cuda emu] deadlock: threads wait at a __syncthreads or __syncwarp that the "
                "others of their block or warp never reach");
        }
        if (error) std::rethrow_exception(error);
      }
}

// ---- what device code calls (cuda_host_prelude.h) -------------------------

const LaneInfo& lane_info() { return current().info; }

void syncwarp(unsigned mask) {
  if (mask != 0xffffffffu)
    throw std::runtime_error("[cuda emu] __syncwarp with a partial mask is not emulated");
  Lane& l = current();
  l.block->sync_warp(l);
}

void syncthreads() {
  Lane& l = current();
  l.block->sync_block(l);
}

std::uint64_t shuffle(unsigned mask, std::uint64_t bits, int arg, ShuffleMode mode, int width) {
  if (mask != 0xffffffffu || width != kWarpSize)
    throw std::runtime_error("[cuda emu] only full-warp shuffles are emulated");
  Lane& l = current();
  const int me = l.index % kWarpSize;
  int src = me;
  switch (mode) {
    case ShuffleMode::Xor:
      src = me ^ arg;
      break;
    case ShuffleMode::Down:
      src = me + arg < kWarpSize ? me + arg : me;
      break;
    case ShuffleMode::Up:
      src = me - arg >= 0 ? me - arg : me;
      break;
    case ShuffleMode::Index:
      src = arg & (kWarpSize - 1);
      break;
  }
  src &= kWarpSize - 1;
  std::uint64_t* buf = l.block->exchange[l.warp][l.shuffles++ & 1];
  buf[me] = bits;
  l.block->sync_warp(l);
  return buf[src];
}

namespace {

// Atomics are relaxed, as on a GPU: no ordering of other memory.
template <typename T, typename Op>
T rmw(T* p, Op op) {
  Lane& l = current();
  l.block->atomic_point(l);  // Fibers: another lane may go first
  std::atomic_ref<T> a(*p);
  T old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, op(old), std::memory_order_relaxed)) {
  }
  return old;
}

}  // namespace

float atomic_add(float* p, float v) {
  return rmw(p, [v](float x) { return x + v; });
}
double atomic_add(double* p, double v) {
  return rmw(p, [v](double x) { return x + v; });
}
int atomic_add(int* p, int v) {
  return rmw(p, [v](int x) { return x + v; });
}
int atomic_cas(int* p, int compare, int v) {
  return rmw(p, [compare, v](int x) { return x == compare ? v : x; });
}
int atomic_min(int* p, int v) {
  return rmw(p, [v](int x) { return v < x ? v : x; });
}
unsigned long long atomic_min(unsigned long long* p, unsigned long long v) {
  return rmw(p, [v](unsigned long long x) { return v < x ? v : x; });
}
int atomic_max(int* p, int v) {
  return rmw(p, [v](int x) { return v > x ? v : x; });
}

}  // namespace copse::cuda::emu
