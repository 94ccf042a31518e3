// SPDX-License-Identifier: Apache-2.0
// Host emulation shim of kernels/cuda/common.cuh and the CUDA runtime, for checking the fused
// optimizer kernels' logic on a CPU (tests/native/test_cuda_emulation.py): each CTA runs as
// blockDim std::threads synchronized with std::barrier; graph capture records launches and replays
// them; an executable graph takes a new capture's launches when its kernel sequence is the same
// (cudaGraphExecUpdate) and refuses otherwise. Not emulated: the memory model, timing,
// occupancy, the real graph API.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lcengine_ops.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __grid_constant__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 {
  float x, y, z, w;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct __nv_bfloat16 {
  uint16_t bits;
};

namespace emu {
inline thread_local dim3 tl_threadIdx, tl_blockIdx;
inline dim3 g_blockDim, g_gridDim;
inline std::barrier<>* g_block_bar = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>>* g_warp_bars = nullptr;
inline std::atomic<int> g_block_acc{0};
inline std::atomic<int> g_warp_acc[64];
inline float4* g_dyn_smem = nullptr;
}  // namespace emu
#define threadIdx (emu::tl_threadIdx)
#define blockIdx (emu::tl_blockIdx)
#define blockDim (emu::g_blockDim)
#define gridDim (emu::g_gridDim)

inline void __syncthreads() { emu::g_block_bar->arrive_and_wait(); }
inline int emu_block_reduce(int v, bool is_or) {
  emu::g_block_bar->arrive_and_wait();
  if (threadIdx.x == 0) emu::g_block_acc = 0;
  emu::g_block_bar->arrive_and_wait();
  if (is_or) {
    if (v) emu::g_block_acc |= 1;
  } else
    emu::g_block_acc += (v != 0);
  emu::g_block_bar->arrive_and_wait();
  return emu::g_block_acc.load();
}
inline int __syncthreads_count(int v) { return emu_block_reduce(v, false); }
inline int __syncthreads_or(int v) { return emu_block_reduce(v, true); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  (*emu::g_warp_bars)[threadIdx.x / 32]->arrive_and_wait();
}
inline bool __all_sync(unsigned, bool p) {
  const int w = threadIdx.x / 32;
  auto& bar = *(*emu::g_warp_bars)[w];
  bar.arrive_and_wait();
  if (threadIdx.x % 32 == 0) emu::g_warp_acc[w] = 0;
  bar.arrive_and_wait();
  if (!p) emu::g_warp_acc[w] += 1;
  bar.arrive_and_wait();
  return emu::g_warp_acc[w].load() == 0;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __fdiv_rn(float a, float b) {
  volatile float r = a / b;
  return r;
}
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
inline float __fsub_rn(float a, float b) {
  volatile float r = a - b;
  return r;
}
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
using std::max;
using std::min;

// runtime API
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
typedef void* cudaStream_t;
struct EmuGraph {
  std::vector<std::function<void()>> ops;
  std::vector<const void*> kernels;  // the topology: one kernel per node, in order
};
typedef EmuGraph* cudaGraph_t;
typedef EmuGraph* cudaGraphExec_t;
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1 };
enum {
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamNonBlocking = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
inline const char* cudaGetErrorName(cudaError_t) { return "emu"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return 0;
}
inline int g_emu_optin = 232448;
inline cudaError_t cudaDeviceGetAttribute(int* v, int, int) {
  *v = g_emu_optin;
  return 0;
}
namespace emu {
// Dynamic shared memory each kernel was opted in to (cudaFuncSetAttribute). Stricter than CUDA:
// a launch with any dynamic shared memory needs a prior opt-in of at least that size.
inline std::mutex g_attr_mu;
inline std::map<const void*, int> g_max_dyn_smem;
inline int max_dyn_smem(const void* k) {
  std::lock_guard<std::mutex> lock(g_attr_mu);
  const auto it = g_max_dyn_smem.find(k);
  return it == g_max_dyn_smem.end() ? 0 : it->second;
}
}  // namespace emu
template <typename F>
cudaError_t cudaFuncSetAttribute(F f, int attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    std::lock_guard<std::mutex> lock(emu::g_attr_mu);
    emu::g_max_dyn_smem[reinterpret_cast<const void*>(f)] = value;
  }
  return 0;
}
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, F, int, size_t smem) {
  *n = smem == 0 ? 4 : std::max<int>(0, std::min<int>(2, int(233472 / (smem + 1024))));
  return 0;
}
namespace emu {
struct EmuStream {
  bool capturing = false;
  EmuGraph* g = nullptr;
};
inline EmuStream* as_stream(cudaStream_t s) { return static_cast<EmuStream*>(s); }
inline int g_launches = 0, g_graph_launches = 0, g_syncs = 0;
// Graph executables: instantiated, updated in place, updates refused (topology change, or
// forced through g_fail_updates), alive now; streams alive now.
inline std::atomic<int> g_instantiations{0}, g_updates{0}, g_update_failures{0};
inline std::atomic<int> g_live_execs{0}, g_live_streams{0}, g_fail_updates{0};
}  // namespace emu
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new emu::EmuStream;
  emu::g_live_streams++;
  return 0;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete emu::as_stream(s);
  emu::g_live_streams--;
  return 0;
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, int) {
  auto* e = emu::as_stream(s);
  e->capturing = true;
  e->g = new EmuGraph;
  return 0;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  auto* e = emu::as_stream(s);
  e->capturing = false;
  *g = e->g;
  e->g = nullptr;
  return 0;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* x, cudaGraph_t g, unsigned long long) {
  *x = new EmuGraph(*g);
  emu::g_instantiations++;
  emu::g_live_execs++;
  return 0;
}
struct cudaGraphExecUpdateResultInfo {
  int result;
  void* errorNode;
  void* errorFromNode;
};
constexpr cudaError_t cudaErrorGraphExecUpdateFailure = 910;
// Same node count and kernels: the executable takes the graph's parameters (the recorded
// launches with this capture's arguments). Otherwise (or when a failure is forced) it is left
// as it was and the update fails, as cudaGraphExecUpdate does on a topology change.
inline cudaError_t cudaGraphExecUpdate(cudaGraphExec_t x, cudaGraph_t g,
                                       cudaGraphExecUpdateResultInfo* info) {
  int forced = emu::g_fail_updates.load();
  while (forced > 0 && !emu::g_fail_updates.compare_exchange_weak(forced, forced - 1)) {
  }
  if (forced > 0 || x->kernels != g->kernels) {
    emu::g_update_failures++;
    if (info) info->result = 2;  // cudaGraphExecUpdateErrorTopologyChanged
    return cudaErrorGraphExecUpdateFailure;
  }
  x->ops = g->ops;
  emu::g_updates++;
  if (info) info->result = 0;
  return 0;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t) {
  emu::g_graph_launches++;
  for (auto& f : x->ops) f();
  return 0;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
  delete x;
  emu::g_live_execs--;
  return 0;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return 0;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, int, cudaStream_t) {
  std::memcpy(d, s, n);
  return 0;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  emu::g_syncs++;
  return 0;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* st) {
  *st = cudaStreamCaptureStatusNone;
  return 0;
}

namespace emu {
struct Cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t s;
  Cfg(dim3 g, dim3 b, size_t m = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), smem(m), s(st) {}
};
template <typename K, typename... A>
void run(Cfg c, K kernel, A... args) {
  g_launches++;
  if (c.smem > 0 && c.smem > size_t(max_dyn_smem(reinterpret_cast<const void*>(kernel))))
    throw std::runtime_error("emu: launch with " + std::to_string(c.smem) +
                             " bytes of dynamic shared memory, more than the kernel's opt-in");
  g_gridDim = c.grid;
  g_blockDim = c.block;
  const unsigned nt = c.block.x;
  std::vector<float4> dyn(c.smem / 16 + 1);
  for (unsigned by = 0; by < c.grid.y; ++by)
    for (unsigned bx = 0; bx < c.grid.x; ++bx) {
      std::memset(dyn.data(), 0xff, dyn.size() * 16);  // garbage (NaN) like real smem
      g_dyn_smem = dyn.data();
      std::barrier<> bar(nt);
      std::vector<std::unique_ptr<std::barrier<>>> wb;
      for (unsigned w = 0; w < (nt + 31) / 32; ++w) wb.emplace_back(new std::barrier<>(32));
      g_block_bar = &bar;
      g_warp_bars = &wb;
      std::vector<std::thread> th;
      for (unsigned t = 0; t < nt; ++t)
        th.emplace_back([&, t] {
          tl_threadIdx = dim3(t);
          tl_blockIdx = dim3(bx, by);
          kernel(args...);
        });
      for (auto& x : th) x.join();
    }
}
template <typename K, typename... A>
void launch(Cfg c, K kernel, A... args) {
  EmuStream* e = as_stream(c.s);
  if (e && e->capturing) {
    e->g->ops.push_back([=] { run(c, kernel, args...); });
    e->g->kernels.push_back(reinterpret_cast<const void*>(kernel));
    return;
  }
  run(c, kernel, args...);
}
}  // namespace emu

namespace lcengine {
namespace cuda_detail {
inline float to_float(float x) { return x; }
inline float to_float(__nv_bfloat16 x) {
  uint32_t u = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <typename T>
T from_float(float x);
template <>
inline float from_float<float>(float x) {
  return x;
}
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return __nv_bfloat16{uint16_t(u >> 16)};
}
[[noreturn]] inline void throw_cuda(const char* what, cudaError_t) {
  throw std::runtime_error(std::string("emu CUDA: ") + what);
}
inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda(what, err);
}
inline void check_launch(const char*) {}
inline int current_sm_count() { return 4; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline unsigned int grid_size(int64_t work_blocks, int threads) {
  const int64_t cap = int64_t(current_sm_count()) * (2048 / threads);
  int64_t g = work_blocks < cap ? work_blocks : cap;
  if (g < 1) g = 1;
  return unsigned(g);
}
}  // namespace cuda_detail
}  // namespace lcengine
