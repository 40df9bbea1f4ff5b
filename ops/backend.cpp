// Backend: the host defaults of the optimizer updates (ops/optimizer_cpu.h).
#include "ops/backend.h"

#include "ops/optimizer_cpu.h"

namespace copse::ops {

template <typename T>
void Backend<T>::optimizer_update(const OptimizerArgs& a, std::size_t n, T* p, const T* g, T* s0,
                                  T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update");
  const T lr = static_cast<T>(a.lr), l2 = static_cast<T>(a.l2), eps = static_cast<T>(a.eps);
  switch (a.kind) {
    case OptimizerArgs::Sgd: sgd_update(n, p, g, s0, lr, static_cast<T>(a.momentum), l2); break;
    case OptimizerArgs::Adagrad: adagrad_update(n, p, g, s0, lr, eps, l2); break;
    case OptimizerArgs::Adam:
      adam_update(n, p, g, s0, s1, lr, static_cast<T>(a.beta1), static_cast<T>(a.beta2), eps, l2,
                  a.t);
      break;
  }
}

template <typename T>
void Backend<T>::optimizer_update_rows(const OptimizerArgs& a, int n_rows, const int* rows,
                                       int width, T* p, const T* g, T* s0, T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update_rows");
  const T lr = static_cast<T>(a.lr), l2 = static_cast<T>(a.l2), eps = static_cast<T>(a.eps);
  switch (a.kind) {
    case OptimizerArgs::Sgd:
      sgd_update_rows(n_rows, rows, width, p, g, s0, lr, static_cast<T>(a.momentum), l2);
      break;
    case OptimizerArgs::Adagrad:
      adagrad_update_rows(n_rows, rows, width, p, g, s0, lr, eps, l2);
      break;
    case OptimizerArgs::Adam:
      adam_update_rows(n_rows, rows, width, p, g, s0, s1, lr, static_cast<T>(a.beta1),
                       static_cast<T>(a.beta2), eps, l2, a.t);
      break;
  }
}

template class Backend<float>;
template class Backend<double>;

}  // namespace copse::ops
