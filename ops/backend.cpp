// Backend: the host defaults of the optimizer updates (ops/optimizer_cpu.h).
#include "ops/backend.h"

#include "ops/optimizer_cpu.h"

namespace copse::ops {

using memory::OptimizerConfig;

template <typename T>
void Backend<T>::optimizer_update(const OptimizerConfig& c, long t, std::size_t n, T* p,
                                  const T* g, T* s0, T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update");
  switch (c.kind) {
    case OptimizerConfig::Sgd: sgd_update<T>(n, p, g, s0, c.lr, c.momentum, c.l2); break;
    case OptimizerConfig::Adagrad: adagrad_update<T>(n, p, g, s0, c.lr, c.eps, c.l2); break;
    case OptimizerConfig::Adam:
      adam_update<T>(n, p, g, s0, s1, c.lr, c.beta1, c.beta2, c.eps, c.l2, t);
      break;
  }
}

template <typename T>
void Backend<T>::optimizer_update_rows(const OptimizerConfig& c, long t, int n_rows,
                                       const int* rows, int width, T* p, const T* g, T* s0,
                                       T* s1) {
  if (!host_accessible())
    throw std::logic_error("internal error: backend " + name() + " lacks optimizer_update_rows");
  switch (c.kind) {
    case OptimizerConfig::Sgd:
      sgd_update_rows<T>(n_rows, rows, width, p, g, s0, c.lr, c.momentum, c.l2);
      break;
    case OptimizerConfig::Adagrad:
      adagrad_update_rows<T>(n_rows, rows, width, p, g, s0, c.lr, c.eps, c.l2);
      break;
    case OptimizerConfig::Adam:
      adam_update_rows<T>(n_rows, rows, width, p, g, s0, s1, c.lr, c.beta1, c.beta2, c.eps, c.l2,
                          t);
      break;
  }
}

template class Backend<float>;
template class Backend<double>;

}  // namespace copse::ops
