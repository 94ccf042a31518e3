// SPDX-License-Identifier: Apache-2.0
// CUDA kernels of the Philox normal family: standard_normal, reparameterize and
// reparameterize_backward, flat elementwise kernels drawing eps from the Philox4x32-10 stream
// keyed by (seed, offset + i) (common.cuh: philox_uniforms, box_muller). Semantics:
// csrc/lcengine_ops.h.
#include "common.cuh"

namespace lcengine {
namespace cuda_detail {
namespace {

enum class RngMode : int { kNormal = 0, kReparam = 1, kReparamBackward = 2 };

constexpr int kRngThreads = 256;

// One element of the three Philox ops, given its normal sample eps:
//   kNormal:          out = eps
//   kReparam:         out = a + exp(lv / 2) * eps                  (a = mu)
//   kReparamBackward: out = a * 0.5 * exp(lv / 2) * eps            (a = grad_z)
template <RngMode MODE>
__device__ __forceinline__ float rng_combine(float a, float lv, float eps) {
  if constexpr (MODE == RngMode::kNormal) {
    return eps;
  } else if constexpr (MODE == RngMode::kReparam) {
    return a + expf(0.5f * lv) * eps;
  } else {
    return a * 0.5f * expf(0.5f * lv) * eps;
  }
}

template <RngMode MODE>
__device__ __forceinline__ float rng_element(float a, float lv, uint64_t counter, uint32_t k0,
                                             uint32_t k1) {
  return rng_combine<MODE>(a, lv, philox_normal(counter, k0, k1));
}

// Flat elementwise Philox kernel over n elements, element i at stream position offset + i
// (mod 2^64), math in rng_combine. Grid-stride over packs of VEC elements (16-byte accesses when
// VEC > 1; every pointer is then 16-byte aligned), then a scalar tail for the last n % VEC.
// Inputs are loaded before the Philox rounds so their latency hides behind the integer work.
template <typename T, int VEC, RngMode MODE>
__global__ void __launch_bounds__(kRngThreads)
    philox_elementwise_kernel(const T* __restrict__ a, const T* __restrict__ lv,
                              T* __restrict__ out, int64_t n, uint64_t seed, uint64_t offset) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t npacks = n / VEC;
  for (int64_t p = tid; p < npacks; p += stride) {
    const int64_t i0 = p * VEC;
    Pack<T, VEC> pa, pl, po;
    if constexpr (MODE != RngMode::kNormal) {
      pa = load_ro<T, VEC>(a + i0);
      pl = load_ro<T, VEC>(lv + i0);
    }
    const uint64_t c0 = offset + static_cast<uint64_t>(i0);
    // All Philox rounds first (branch-free integer work, VEC independent chains interleave),
    // then the transcendental part, whose precise slow paths are branches.
    float u0[VEC], u1[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      philox_uniforms(c0 + static_cast<uint64_t>(j), k0, k1, u0[j], u1[j]);
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      float av = 0.f, lvv = 0.f;
      if constexpr (MODE != RngMode::kNormal) {
        av = to_float(pa.v[j]);
        lvv = to_float(pl.v[j]);
      }
      po.v[j] = from_float<T>(rng_combine<MODE>(av, lvv, box_muller(u0[j], u1[j])));
    }
    store<T, VEC>(out + i0, po);
  }
  if constexpr (VEC > 1) {
    for (int64_t i = npacks * VEC + tid; i < n; i += stride) {
      float av = 0.f, lvv = 0.f;
      if constexpr (MODE != RngMode::kNormal) {
        av = to_float(a[i]);
        lvv = to_float(lv[i]);
      }
      out[i] = from_float<T>(rng_element<MODE>(av, lvv, offset + static_cast<uint64_t>(i), k0, k1));
    }
  }
}

template <typename T, RngMode MODE>
void launch_philox_typed(const void* a, const void* lv, void* out, int64_t n, uint64_t seed,
                         uint64_t offset, cudaStream_t stream, const char* name) {
  const T* a_t = static_cast<const T*>(a);
  const T* lv_t = static_cast<const T*>(lv);
  T* out_t = static_cast<T*>(out);
  bool vec_ok = aligned16(out);
  if (MODE != RngMode::kNormal) vec_ok = vec_ok && aligned16(a) && aligned16(lv);
  if (vec_ok) {
    constexpr int V = kVec16<T>;
    const int64_t npacks = n / V;
    const int64_t work = npacks > 0 ? npacks : n;  // all-tail case: one thread per element
    philox_elementwise_kernel<T, V, MODE>
        <<<grid_size(ceil_div(work, kRngThreads), kRngThreads), kRngThreads, 0, stream>>>(
            a_t, lv_t, out_t, n, seed, offset);
  } else {
    philox_elementwise_kernel<T, 1, MODE>
        <<<grid_size(ceil_div(n, kRngThreads), kRngThreads), kRngThreads, 0, stream>>>(
            a_t, lv_t, out_t, n, seed, offset);
  }
  check_launch(name);
}

template <RngMode MODE>
void launch_philox(const void* a, const void* lv, void* out, int64_t n, uint64_t seed,
                   uint64_t offset, DType dtype, void* stream, const char* name) {
  if (n <= 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32:
      launch_philox_typed<float, MODE>(a, lv, out, n, seed, offset, s, name);
      break;
    case DType::kFloat16:
      launch_philox_typed<__half, MODE>(a, lv, out, n, seed, offset, s, name);
      break;
    case DType::kBFloat16:
      launch_philox_typed<__nv_bfloat16, MODE>(a, lv, out, n, seed, offset, s, name);
      break;
    default:
      throw std::invalid_argument(std::string(name) + ": unsupported dtype code " +
                                  std::to_string(static_cast<int>(dtype)));
  }
}

}  // namespace
}  // namespace cuda_detail

void standard_normal_cuda(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                          void* stream) {
  cuda_detail::launch_philox<cuda_detail::RngMode::kNormal>(nullptr, nullptr, out, n, seed, offset,
                                                            dtype, stream, "standard_normal_cuda");
}

void reparameterize_cuda(const void* mu, const void* logvar, void* z, int64_t n, uint64_t seed,
                         uint64_t offset, DType dtype, void* stream) {
  cuda_detail::launch_philox<cuda_detail::RngMode::kReparam>(mu, logvar, z, n, seed, offset, dtype,
                                                             stream, "reparameterize_cuda");
}

void reparameterize_backward_cuda(const void* grad_z, const void* logvar, void* grad_logvar,
                                  int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                                  void* stream) {
  cuda_detail::launch_philox<cuda_detail::RngMode::kReparamBackward>(
      grad_z, logvar, grad_logvar, n, seed, offset, dtype, stream, "reparameterize_backward_cuda");
}

}  // namespace lcengine
