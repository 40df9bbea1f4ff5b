// The sparse half of the MPI gradient exchange without MPI: merge_sparse_rows
// sums each row in worker order, bit for bit like ThreadGradSync.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "memory/param_store.h"
#include "memory/sparse_merge.h"
#include "memory/thread_sync.h"
#include "ops/cpu_backend.h"

using namespace copse;

namespace {

struct Sent {
  std::vector<int> rows;
  std::vector<float> values;  // [rows, width]
};

std::vector<memory::SparseRowsView<float>> views(const std::vector<Sent>& sent) {
  std::vector<memory::SparseRowsView<float>> v;
  for (const auto& s : sent)
    v.push_back({s.rows.data(), static_cast<int>(s.rows.size()), s.values.data()});
  return v;
}

// Values whose sum depends on the order of the additions.
float awkward(std::mt19937& rng) {
  const float scale[] = {1e-3f, 1.f, 1e4f, 3e7f};
  return std::uniform_real_distribution<float>(-1.f, 1.f)(rng) * scale[rng() % 4];
}

// W workers touch random subsets of `table` rows.
std::vector<Sent> random_sends(int workers, int table, int width, std::mt19937& rng) {
  std::vector<Sent> sent(workers);
  for (auto& s : sent) {
    for (int r = 0; r < table; ++r)
      if (rng() % 3 == 0) s.rows.push_back(r);
    for (size_t k = 0; k < s.rows.size() * width; ++k) s.values.push_back(awkward(rng));
  }
  return sent;
}

TEST(SparseMerge, SumsEachRowInWorkerOrderOverTheUnion) {
  std::mt19937 rng(7);
  const int table = 40, width = 5;
  for (int workers : {1, 2, 3, 4}) {
    auto sent = random_sends(workers, table, width, rng);
    // Reference: dense tables, zero where a worker did not touch a row,
    // summed as ThreadGradSync does: ((0 + d_0) + d_1) + ...
    std::vector<float> ref(table * width, 0.f);
    std::vector<char> touched(table, 0);
    for (const auto& s : sent)
      for (size_t k = 0; k < s.rows.size(); ++k) touched[s.rows[k]] = 1;
    for (int r = 0; r < table; ++r)
      for (int c = 0; c < width; ++c) {
        float sum = 0.f;
        for (const auto& s : sent) {
          float d = 0.f;
          for (size_t k = 0; k < s.rows.size(); ++k)
            if (s.rows[k] == r) d = s.values[k * width + c];
          sum += d;
        }
        ref[r * width + c] = sum;
      }
    std::vector<int> rows;
    std::vector<float> values;
    memory::merge_sparse_rows(views(sent), width, rows, values);
    std::vector<int> want;
    for (int r = 0; r < table; ++r)
      if (touched[r]) want.push_back(r);
    ASSERT_EQ(rows, want) << workers << " workers";
    ASSERT_EQ(values.size(), rows.size() * width);
    for (size_t u = 0; u < rows.size(); ++u)
      EXPECT_EQ(0, std::memcmp(&values[u * width], &ref[rows[u] * width], width * sizeof(float)))
          << workers << " workers, row " << rows[u];
  }
}

// The order is what the merge promises: reversed workers give other bits here.
TEST(SparseMerge, WorkerOrderMatters) {
  std::vector<Sent> sent = {{{0}, {1.f}}, {{0}, {1e8f}}, {{0}, {-1e8f}}};
  std::vector<int> rows;
  std::vector<float> fwd, rev;
  memory::merge_sparse_rows(views(sent), 1, rows, fwd);
  std::reverse(sent.begin(), sent.end());
  memory::merge_sparse_rows(views(sent), 1, rows, rev);
  EXPECT_EQ(fwd[0], 0.f);  // ((0 + 1) + 1e8) - 1e8: the 1 is lost in 1e8
  EXPECT_EQ(rev[0], 1.f);  // ((0 - 1e8) + 1e8) + 1
}

TEST(SparseMerge, EmptyWorkersAndBadInput) {
  std::vector<Sent> sent(3);
  sent[1] = {{2, 9}, {1.f, 2.f, 3.f, 4.f}};
  std::vector<int> rows;
  std::vector<float> values;
  memory::merge_sparse_rows(views(sent), 2, rows, values);
  EXPECT_EQ(rows, (std::vector<int>{2, 9}));
  EXPECT_EQ(values, (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
  memory::merge_sparse_rows(views(std::vector<Sent>(2)), 2, rows, values);
  EXPECT_TRUE(rows.empty());
  EXPECT_TRUE(values.empty());
  sent[2] = {{5, 5}, {1.f, 1.f, 1.f, 1.f}};  // not distinct
  EXPECT_THROW(memory::merge_sparse_rows(views(sent), 2, rows, values), Error);
  EXPECT_THROW(memory::merge_sparse_rows(views(sent), 0, rows, values), Error);
}

// The same rows through ThreadGradSync (W ParamStores with an embedding
// table) end with the bits merge_sparse_rows computes: the MPI transport
// equals the thread transport.
TEST(SparseMerge, EqualsThreadGradSync) {
  const int workers = 3, table = 30, width = 4;
  std::mt19937 rng(11);
  auto sent = random_sends(workers, table, width, rng);
  std::vector<std::unique_ptr<ops::CpuBackend<float>>> be;
  std::vector<std::unique_ptr<memory::ParamStore<float>>> ps;
  memory::ThreadGradSync<float> sync(workers, std::chrono::seconds(30));
  for (int r = 0; r < workers; ++r) {
    be.push_back(std::make_unique<ops::CpuBackend<float>>(1));
    ps.push_back(std::make_unique<memory::ParamStore<float>>(*be.back()));
    ps[r]->add({"dense", {8}, memory::Init::Zeros, 0.f, false});
    ps[r]->add({"embed", {table, width}, memory::Init::Zeros, 0.f, true});
    ps[r]->finalize();
    ps[r]->set_grad_sync(sync.endpoint(r));
    const int id = ps[r]->id("embed");
    ps[r]->zero_grads();
    float* g = ps[r]->grad(id);
    for (size_t k = 0; k < sent[r].rows.size(); ++k)
      std::memcpy(g + sent[r].rows[k] * width, &sent[r].values[k * width], width * sizeof(float));
    ps[r]->touch_rows(id, sent[r].rows.data(), static_cast<int>(sent[r].rows.size()));
  }
  std::vector<std::thread> pool;
  for (int r = 0; r < workers; ++r) pool.emplace_back([&, r] { sync.endpoint(r)->sync(*ps[r]); });
  for (auto& t : pool) t.join();

  std::vector<int> rows;
  std::vector<float> values;
  memory::merge_sparse_rows(views(sent), width, rows, values);
  for (int r = 0; r < workers; ++r) {
    const int id = ps[r]->id("embed");
    EXPECT_EQ(ps[r]->touched_rows(id), rows) << "worker " << r;
    for (size_t u = 0; u < rows.size(); ++u)
      EXPECT_EQ(0, std::memcmp(ps[r]->grad(id) + rows[u] * width, &values[u * width],
                               width * sizeof(float)))
          << "worker " << r << ", row " << rows[u];
  }
}

}  // namespace
