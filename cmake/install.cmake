# `cmake --install build --prefix P`: the public headers under
# P/include/copse/<folder>/, libcopse (and the CUDA backend's libraries), the
# `copse` CLI, and a relocatable CMake package in P/lib/cmake/copse, so that
# `find_package(copse 0.1 CONFIG REQUIRED [COMPONENTS cuda|mpi|nccl])` gives
# copse::copse (and copse::cuda, copse::mpi, copse::nccl).
include(CMakePackageConfigHelpers)

# The public headers, by hand: what a program using copse as a library may
# include. Every header they include is in this list too
# (scripts/check_install.sh compiles each one alone against the prefix).
# The rest are private: the backends' internals, the fused-program compiler's
# passes, the gradient exchanges and the CLI's training job.
set(COPSE_PUBLIC_HEADERS
  common/error.h
  vertex/builder.h vertex/ir.h vertex/plan.h
  scheduler/graph.h scheduler/graph_batch.h scheduler/executor.h
  memory/arena.h memory/optimizer.h memory/param_store.h memory/safetensors.h
  ops/backend.h ops/cpu_backend.h ops/device.h ops/fused_program.h
  models/graphs.h models/model.h models/trainer.h models/join_head.h
  models/cells.h models/tree_lstm.h models/sentiment_model.h models/embeddings.h
  models/vocab.h models/ptb_reader.h models/conllu_reader.h models/sequence_reader.h
  models/graph_json.h models/dag_generator.h models/synthetic_treebank.h models/train.h)
foreach(header ${COPSE_PUBLIC_HEADERS})
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${header}
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/copse/${dir})
endforeach()
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/generated/common/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/copse/common)

set(COPSE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/copse)
set(COPSE_INSTALL_DIRS ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The MPI transport is compiled into libcopse (models/transport.cpp calls it
# directly), so copse::mpi adds nothing to copse::copse: it only says that
# this copse has it.
add_library(copse_mpi INTERFACE)
set_target_properties(copse_mpi PROPERTIES EXPORT_NAME mpi)
target_link_libraries(copse_mpi INTERFACE copse_core)
install(TARGETS copse_core copse_mpi EXPORT copseTargets ${COPSE_INSTALL_DIRS})
install(EXPORT copseTargets NAMESPACE copse:: DESTINATION ${COPSE_CMAKE_DIR})

if(COPSE_WITH_CUDA)
  set(_copse_cuda_targets copse_cuda_common copse_cuda_backend copse_cuda_register copse_cuda)
  if(COPSE_WITH_NCCL)
    # Likewise the NCCL exchange lives in the CUDA backend's library.
    add_library(copse_nccl INTERFACE)
    set_target_properties(copse_nccl PROPERTIES EXPORT_NAME nccl)
    target_link_libraries(copse_nccl INTERFACE copse_cuda)
    list(APPEND _copse_cuda_targets copse_nccl)
  endif()
  install(TARGETS ${_copse_cuda_targets} EXPORT copseCudaTargets ${COPSE_INSTALL_DIRS})
  install(EXPORT copseCudaTargets NAMESPACE copse:: DESTINATION ${COPSE_CMAKE_DIR})
endif()

# Installed binaries find copse's shared libraries (BUILD_SHARED_LIBS) next
# to them, wherever the prefix is moved, and the CUDA runtime where it was
# linked from.
set_target_properties(copse PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}"
                      INSTALL_RPATH_USE_LINK_PATH ON)
foreach(lib copse_core copse_cuda_common copse_cuda_backend)
  if(TARGET ${lib})
    set_target_properties(${lib} PROPERTIES INSTALL_RPATH "$ORIGIN" INSTALL_RPATH_USE_LINK_PATH ON)
  endif()
endforeach()
install(TARGETS copse RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# What the package's config needs to know about this build.
set(COPSE_PACKAGE_WITH_CUDA ${COPSE_WITH_CUDA})
set(COPSE_PACKAGE_WITH_MPI ${COPSE_WITH_MPI})
set(COPSE_PACKAGE_WITH_NCCL ${COPSE_WITH_NCCL})
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/copseConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/copseConfig.cmake INSTALL_DESTINATION ${COPSE_CMAKE_DIR})
# Before 1.0 a minor version may break the API: 0.1 accepts 0.1.x only.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/copseConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/copseConfig.cmake
        ${CMAKE_CURRENT_BINARY_DIR}/copseConfigVersion.cmake DESTINATION ${COPSE_CMAKE_DIR})
