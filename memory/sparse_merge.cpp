// merge_sparse_rows (see sparse_merge.h).
#include "memory/sparse_merge.h"

#include <algorithm>
#include <iterator>

#include "common/error.h"

namespace copse::memory {

template <typename T>
void merge_sparse_rows(const std::vector<SparseRowsView<T>>& workers, int width,
                       std::vector<int>& out_rows, std::vector<T>& out_values) {
  if (width <= 0) fail("[merge_sparse_rows] row width must be positive, got {}", width);
  out_rows.clear();
  for (size_t r = 0; r < workers.size(); ++r) {
    const auto& w = workers[r];
    for (int k = 1; k < w.count; ++k)
      if (w.rows[k] <= w.rows[k - 1])
        fail("[merge_sparse_rows] worker {} sent rows out of order ({} after {})", r, w.rows[k],
             w.rows[k - 1]);
    std::vector<int> merged;
    merged.reserve(out_rows.size() + w.count);
    std::set_union(out_rows.begin(), out_rows.end(), w.rows, w.rows + w.count,
                   std::back_inserter(merged));
    out_rows.swap(merged);
  }
  const size_t wd = static_cast<size_t>(width);
  out_values.assign(out_rows.size() * wd, T(0));
  // Worker by worker (the outer loop fixes the order of the sums), each
  // worker's rows found by walking the sorted union alongside.
  for (const auto& w : workers) {
    size_t u = 0;
    for (int k = 0; k < w.count; ++k) {
      while (out_rows[u] != w.rows[k]) ++u;
      T* dst = out_values.data() + u * wd;
      const T* src = w.values + static_cast<size_t>(k) * wd;
      for (size_t c = 0; c < wd; ++c) dst[c] += src[c];
    }
  }
}

template void merge_sparse_rows<float>(const std::vector<SparseRowsView<float>>&, int,
                                       std::vector<int>&, std::vector<float>&);
template void merge_sparse_rows<double>(const std::vector<SparseRowsView<double>>&, int,
                                        std::vector<int>&, std::vector<double>&);

}  // namespace copse::memory
