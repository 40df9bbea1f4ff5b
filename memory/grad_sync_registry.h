// Gradient exchanges that ride on an MPI job (bootstrap and helpers through
// MpiGradSync) and live outside memory/ and models/: they register here by
// name ("nccl", from cuda/register.cpp), so that the transports
// (models/transport.cpp) never name them.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "memory/param_store.h"

namespace copse::memory {

template <typename T>
class MpiGradSync;

using MpiGradSyncFactory = std::function<std::unique_ptr<GradSync<float>>(MpiGradSync<float>& mpi)>;

// Registers `factory` under `name` (before main, from a static object);
// throws InternalError for a name registered twice.
void register_mpi_grad_sync(const std::string& name, MpiGradSyncFactory factory);
// nullptr when no exchange of that name is in this program.
const MpiGradSyncFactory* find_mpi_grad_sync(const std::string& name);

}  // namespace copse::memory
