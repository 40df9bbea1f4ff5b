// The registry of MPI-helped gradient exchanges (see grad_sync_registry.h).
#include "memory/grad_sync_registry.h"

#include <map>

#include "common/error.h"

namespace copse::memory {

namespace {

std::map<std::string, MpiGradSyncFactory>& registry() {
  static std::map<std::string, MpiGradSyncFactory> r;  // filled before main
  return r;
}

}  // namespace

void register_mpi_grad_sync(const std::string& name, MpiGradSyncFactory factory) {
  COPSE_ASSERT(factory != nullptr);
  const bool added = registry().emplace(name, std::move(factory)).second;
  COPSE_ASSERT(added);
}

const MpiGradSyncFactory* find_mpi_grad_sync(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

}  // namespace copse::memory
