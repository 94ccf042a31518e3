// SPDX-License-Identifier: Apache-2.0
// Device helpers shared by the CUDA kernels of lcengine: storage types, 16-byte packs, the
// Philox normal transform, launch sizing and error checks. Math is always float32; storage is
// float, __half or __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "lcengine_ops.h"
#include "philox.h"

namespace lcengine {
namespace cuda_detail {

// ---------------------------------------------------------------------------------------------
// Storage <-> float32 conversions (round to nearest even on store).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---------------------------------------------------------------------------------------------
// Packs: VEC consecutive elements moved as one access. VEC * sizeof(T) is 16 bytes on the
// vectorized path (one LDG.128 / STG.128) and sizeof(T) on the scalar fallback path.
// ---------------------------------------------------------------------------------------------
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// Number of elements of T in 16 bytes.
template <typename T>
constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

// Read-only (non-coherent) load: only for buffers that nothing writes during the kernel.
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_ro(const T* p) {
  Pack<T, VEC> out;
  if constexpr (sizeof(T) * VEC == 16) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    memcpy(&out, &raw, sizeof(out));
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out.v[j] = __ldg(p + j);
  }
  return out;
}

// Coherent load: for buffers the kernel also writes (in-place updates).
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_rw(const T* p) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}

template <typename T, int VEC>
__device__ __forceinline__ void store(T* p, const Pack<T, VEC>& x) {
  *reinterpret_cast<Pack<T, VEC>*>(p) = x;
}

// VEC float32 values starting at p (p is 16-byte aligned whenever VEC is a multiple of 4).
template <int VEC>
__device__ __forceinline__ void load_floats(const float* p, float (&out)[VEC]) {
  if constexpr (VEC % 4 == 0) {
#pragma unroll
    for (int k = 0; k < VEC / 4; ++k) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(p) + k);
      out[4 * k + 0] = q.x;
      out[4 * k + 1] = q.y;
      out[4 * k + 2] = q.z;
      out[4 * k + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = __ldg(p + k);
  }
}

// ---------------------------------------------------------------------------------------------
// Philox normal: eps = sqrt(-2 log(max(u0, 1e-7))) * cos(2 pi u1), (u0, u1) the uniforms of the
// first two Philox4x32-10 words at counter (ctr_lo, ctr_hi) and key (seed_lo, seed_hi). Precise
// logf / cosf / sqrtf (no fast-math) so the stream matches the CPU and Triton to float rounding.
// ---------------------------------------------------------------------------------------------
// (u0, u1): u0 = max(uniform(w0), 1e-7), u1 = uniform(w1) from the first two Philox words.
__device__ __forceinline__ void philox_uniforms(uint64_t counter, uint32_t key0, uint32_t key1,
                                                float& u0, float& u1) {
  const philox::Pair w = philox::philox_first_two(static_cast<uint32_t>(counter),
                                                  static_cast<uint32_t>(counter >> 32), key0, key1);
  u0 = fmaxf(philox::uint_to_uniform(w.c0), philox::kMinUniform);
  u1 = philox::uint_to_uniform(w.c1);
}

// Box-Muller, first output: sqrt(-2 log u0) * cos(2 pi u1), float32 throughout.
__device__ __forceinline__ float box_muller(float u0, float u1) {
  return sqrtf(-2.0f * logf(u0)) * cosf(philox::kTwoPi * u1);
}

__device__ __forceinline__ float philox_normal(uint64_t counter, uint32_t key0, uint32_t key1) {
  float u0, u1;
  philox_uniforms(counter, key0, key1, u0, u1);
  return box_muller(u0, u1);
}

// Pairwise (tree) sum of a small register array: shorter rounding chains than a running sum.
template <int N>
__device__ __forceinline__ float pairwise_sum(const float (&x)[N]) {
  if constexpr (N == 1) {
    return x[0];
  } else {
    static_assert(N % 2 == 0, "pairwise_sum needs a power of two");
    float sums[N / 2];
#pragma unroll
    for (int j = 0; j < N / 2; ++j) sums[j] = x[2 * j] + x[2 * j + 1];
    return pairwise_sum<N / 2>(sums);
  }
}

// ---------------------------------------------------------------------------------------------
// Warp reductions.
// ---------------------------------------------------------------------------------------------
// Sum over aligned groups of `group` lanes (a power of two <= 32); every lane of the warp must
// call it. Lanes of one group end with the group's sum.
__device__ __forceinline__ float group_sum(float x, int group) {
  for (int o = group >> 1; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Host helpers.
// ---------------------------------------------------------------------------------------------
inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

[[noreturn]] inline void throw_cuda(const char* what, cudaError_t err) {
  throw std::runtime_error(std::string("lcengine CUDA: ") + what + ": " + cudaGetErrorName(err) +
                           ": " + cudaGetErrorString(err));
}

// Raises if a runtime call failed, clearing the error first: a non-sticky error left in place
// would be reported again by the next, unrelated check_launch.
inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw_cuda(what, err);
  }
}

// Raises if the last launch failed (bad configuration, no kernel image for the device, ...).
inline void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(op, err);
}

// Streaming multiprocessors of the current device (cached per device).
int current_sm_count();

constexpr int kMaxThreadsPerSm = 2048;  // sm_80 and sm_90

// Grid for a grid-stride kernel: enough blocks to cover `work_blocks`, at most one full wave at
// maximum occupancy (extra blocks would only loop).
inline unsigned int grid_size(int64_t work_blocks, int threads) {
  const int64_t cap = static_cast<int64_t>(current_sm_count()) * (kMaxThreadsPerSm / threads);
  int64_t g = work_blocks < cap ? work_blocks : cap;
  if (g < 1) g = 1;
  return static_cast<unsigned int>(g);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace cuda_detail
}  // namespace lcengine
