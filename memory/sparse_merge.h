// Sums the touched embedding rows of W workers into the union of their rows,
// in worker order (the sparse half of a BSP gradient exchange, without MPI).
#pragma once

#include <vector>

namespace copse::memory {

// What one worker sent: its touched rows (sorted, distinct) and their
// gradient values, [rows.size(), width] row-major.
template <typename T>
struct SparseRowsView {
  const int* rows = nullptr;
  int count = 0;
  const T* values = nullptr;
};

// out_rows = the sorted union of every worker's rows; out_values [out_rows, width]:
//   out[u, c] = ((0 + v_0[u, c]) + v_1[u, c]) + ...   over the workers that sent row u,
// in worker order, so every caller gets the same bits, and the same bits as
// ThreadGradSync (which adds the zero rows of workers that did not touch u).
// Throws copse::Error if a worker's rows are not sorted and distinct.
template <typename T>
void merge_sparse_rows(const std::vector<SparseRowsView<T>>& workers, int width,
                       std::vector<int>& out_rows, std::vector<T>& out_values);

extern template void merge_sparse_rows<float>(const std::vector<SparseRowsView<float>>&, int,
                                              std::vector<int>&, std::vector<float>&);
extern template void merge_sparse_rows<double>(const std::vector<SparseRowsView<double>>&, int,
                                               std::vector<int>&, std::vector<double>&);

}  // namespace copse::memory
