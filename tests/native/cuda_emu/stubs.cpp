// SPDX-License-Identifier: Apache-2.0
// Stubs for the elementwise *_cuda entry points, which the emulation does not cover (bindings.cpp
// links against them).
#include <stdexcept>

#include "common.cuh"
#include "lcengine_ops.h"
namespace lcengine {
#define STUB throw std::runtime_error("emu: not emulated")
void standard_normal_cuda(void*, int64_t, uint64_t, uint64_t, DType, void*) { STUB; }
void reparameterize_cuda(const void*, const void*, void*, int64_t, uint64_t, uint64_t, DType,
                         void*) {
  STUB;
}
void reparameterize_backward_cuda(const void*, const void*, void*, int64_t, uint64_t, uint64_t,
                                  DType, void*) {
  STUB;
}
void gaussian_kl_cuda(const void*, const void*, float*, void*, void*, float, int64_t, int64_t,
                      DType, void*) {
  STUB;
}
void distance_penalty_cuda(const void*, const void*, const float*, bool, float*, void*, float,
                           int64_t, int64_t, DType, void*) {
  STUB;
}
void constraint_loss_cuda(const void*, const void*, const void*, WeightMode, void*, float*, void*,
                          float, int64_t, int64_t, DType, void*) {
  STUB;
}
void latent_adam_cuda(void*, const void*, void*, void*, const uint8_t*, int64_t, int64_t, double,
                      double, double, double, double, double, DType, void*) {
  STUB;
}
int cuda_device_count() { return 0; }
int cuda_runtime_version() { return 0; }
CudaStatus cuda_status() { return CudaStatus{}; }
}  // namespace lcengine

// Counters of the emulated runtime, for check.py (ctypes): 0 kernels run (graph replays
// included), 1 graph launches, 2 stream synchronizations, 3 graph instantiations, 4 executable
// updates, 5 refused updates, 6 executables alive, 7 streams alive.
extern "C" long long lcengine_emu_counter(int which) {
  switch (which) {
    case 0:
      return emu::g_launches;
    case 1:
      return emu::g_graph_launches;
    case 2:
      return emu::g_syncs;
    case 3:
      return emu::g_instantiations;
    case 4:
      return emu::g_updates;
    case 5:
      return emu::g_update_failures;
    case 6:
      return emu::g_live_execs;
    default:
      return emu::g_live_streams;
  }
}

// The next n cudaGraphExecUpdate calls fail as on a topology change.
extern "C" void lcengine_emu_fail_updates(int n) { emu::g_fail_updates = n; }
