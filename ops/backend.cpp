// Backend: the host defaults of the optimizer updates and their non-finite
// checks (ops/optimizer_cpu.h), and the error text shared by the backends.
#include "ops/backend.h"

#include <fmt/format.h>

#include "ops/optimizer_cpu.h"

namespace copse::ops {

std::string softmax_label_error(int row, int label, int classes) {
  return fmt::format("[softmax_xent] row {} has label {} but there are {} classes", row, label,
                     classes);
}

using memory::OptimizerConfig;

template <typename T>
void Backend<T>::optimizer_update(const OptimizerConfig& c, long t, std::size_t n, T* p, const T* g,
                                  T* s0, T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update");
  optimizer_update_host<T>(c, t, n, p, g, s0, s1, &written_);
}

template <typename T>
void Backend<T>::optimizer_update_rows(const OptimizerConfig& c, long t, int n_rows,
                                       const int* rows, int width, T* p, const T* g, T* s0, T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update_rows");
  optimizer_update_rows_host<T>(c, t, n_rows, rows, width, p, g, s0, s1, &written_);
}

template <typename T>
void Backend<T>::optimizer_check(const OptimizerConfig& c, long t, std::size_t n, const T* p,
                                 const T* g, const T* s0, const T* s1, int tag) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_check");
  record_nonfinite(tag, optimizer_check_host<T>(c, t, n, p, g, s0, s1));
}

template <typename T>
void Backend<T>::optimizer_check_rows(const OptimizerConfig& c, long t, int n_rows, const int* rows,
                                      int width, const T* p, const T* g, const T* s0, const T* s1,
                                      int tag) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_check_rows");
  record_nonfinite(tag, optimizer_check_rows_host<T>(c, t, n_rows, rows, width, p, g, s0, s1));
}

template <typename T>
void Backend<T>::record_nonfinite(int tag, long offset) {
  if (tag < 0 || offset < 0) return;
  if (!nonfinite_.found() || tag < nonfinite_.tag ||
      (tag == nonfinite_.tag && offset < nonfinite_.offset))
    nonfinite_ = {tag, offset};
}

template <typename T>
memory::WrittenBounds Backend<T>::take_written_bounds() {
  memory::WrittenBounds r = written_;
  written_ = {};
  // Only the host updates above widen written_: an override that does not
  // call them leaves nothing known.
  return r;
}

template <typename T>
typename Backend<T>::NonFinite Backend<T>::take_nonfinite() {
  NonFinite r = nonfinite_;
  nonfinite_ = {};
  return r;
}

template class Backend<float>;
template class Backend<double>;

}  // namespace copse::ops
