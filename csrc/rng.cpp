// SPDX-License-Identifier: Apache-2.0
// CPU kernels of the Philox normal family (contract: lcengine_ops.h): standard_normal,
// reparameterize and reparameterize_backward, all drawing eps from the Philox4x32-10 stream
// keyed by (seed, offset + i). The layering is described in cpu_kernels.h. No torch, no Python:
// raw buffers, one pass, no heap temporaries.
#include <algorithm>
#include <cstdint>

#include "cpu_kernels.h"
#include "cpu_math.h"
#include "cpu_simd.h"
#include "lcengine_ops.h"
#include "philox.h"

namespace lcengine {

namespace {

using namespace cpu;  // NOLINT(build/namespaces): the kernel vocabulary of cpu_kernels.h

enum NormalKind : int { kSample = 0, kReparam = 1, kReparamBackward = 2 };

// Counters per Philox block (a multiple of 32 for the AVX-512 generator).
constexpr int kPhiloxBlock = 256;

// Philox words for counters first .. first + kPhiloxBlock - 1.
template <Isa kIsa>
LC_INLINE void philox_words(uint64_t first, const PhiloxKeys& keys, uint32_t* __restrict w0,
                            uint32_t* __restrict w1) {
#if LC_X86_DISPATCH
  if constexpr (kIsa == Isa::kAvx512) {
    cpu::philox_block_avx512<kPhiloxBlock>(first, keys, w0, w1);
  } else if constexpr (kIsa == Isa::kAvx2) {
    cpu::philox_block_avx2<kPhiloxBlock>(first, keys, w0, w1);
  } else {
    cpu::philox_block_sse2<kPhiloxBlock>(first, keys, w0, w1);
  }
#else
  cpu::philox_block<kPhiloxBlock>(first, keys, w0, w1);
#endif
}

// With eps_j = Box-Muller(w0[j], w1[j]) (cpu_math.h):
//   kSample:          out = eps
//   kReparam:         out = a + exp(b / 2) * eps                  (a = mu, b = logvar)
//   kReparamBackward: out = a * 0.5 * exp(b / 2) * eps            (a = grad_z, b = logvar)
template <int kKind>
LC_INLINE void normal_core(const float* __restrict a, const float* __restrict b,
                           float* __restrict out, const uint32_t* __restrict w0,
                           const uint32_t* __restrict w1, int64_t len) {
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    const float eps = cpu::box_muller(w0[j], w1[j]);
    if constexpr (kKind == kSample) {
      out[j] = eps;
    } else if constexpr (kKind == kReparam) {
      out[j] = a[j] + cpu::exp_f(0.5f * b[j]) * eps;
    } else {
      out[j] = a[j] * 0.5f * cpu::exp_f(0.5f * b[j]) * eps;
    }
  }
}

// Elements [begin, end), eps from the Philox stream at counter offset + i. Philox fills an
// L1-resident block of words (one loop over 64-bit lanes), then one float loop does Box-Muller
// and the update, so both run at full vector width.
template <Isa kIsa, class S, int kKind>
LC_INLINE void normal_kernel(const typename S::type* a, const typename S::type* b,
                             typename S::type* out, int64_t begin, int64_t end,
                             const PhiloxKeys& keys, uint64_t offset) {
  alignas(64) uint32_t w0[kPhiloxBlock];
  alignas(64) uint32_t w1[kPhiloxBlock];
  alignas(64) float tile_a[kIsF32<S> ? 1 : kPhiloxBlock];
  alignas(64) float tile_b[kIsF32<S> ? 1 : kPhiloxBlock];
  alignas(64) float tile_out[kIsF32<S> ? 1 : kPhiloxBlock];
  for (int64_t i0 = begin; i0 < end; i0 += kPhiloxBlock) {
    const int64_t len = std::min<int64_t>(kPhiloxBlock, end - i0);
    philox_words<kIsa>(offset + static_cast<uint64_t>(i0), keys, w0, w1);
    const float* fa = nullptr;
    const float* fb = nullptr;
    if constexpr (kKind != kSample) {
      fa = stage_in<kIsa, S>(a, i0, len, tile_a);
      fb = stage_in<kIsa, S>(b, i0, len, tile_b);
    }
    float* fo = stage_out<S>(out, i0, tile_out);
    normal_core<kKind>(fa, fb, fo, w0, w1, len);
    commit_out<kIsa, S>(fo, out, i0, len);
  }
}

template <Isa kIsa, class S>
LC_INLINE void normal_typed(int kind, const void* a, const void* b, void* out, int64_t begin,
                            int64_t end, const PhiloxKeys& keys, uint64_t offset) {
  using T = typename S::type;
  const T* pa = static_cast<const T*>(a);
  const T* pb = static_cast<const T*>(b);
  T* po = static_cast<T*>(out);
  switch (kind) {
    case kSample:
      normal_kernel<kIsa, S, kSample>(pa, pb, po, begin, end, keys, offset);
      break;
    case kReparam:
      normal_kernel<kIsa, S, kReparam>(pa, pb, po, begin, end, keys, offset);
      break;
    default:
      normal_kernel<kIsa, S, kReparamBackward>(pa, pb, po, begin, end, keys, offset);
      break;
  }
}

template <Isa kIsa>
LC_INLINE void normal_range_body(int kind, DType dtype, const void* a, const void* b, void* out,
                                 int64_t begin, int64_t end, const PhiloxKeys& keys,
                                 uint64_t offset) {
  switch (dtype) {
    case DType::kFloat32:
      normal_typed<kIsa, F32>(kind, a, b, out, begin, end, keys, offset);
      break;
    case DType::kFloat16:
      normal_typed<kIsa, F16>(kind, a, b, out, begin, end, keys, offset);
      break;
    case DType::kBFloat16:
      normal_typed<kIsa, BF16>(kind, a, b, out, begin, end, keys, offset);
      break;
  }
}

LC_MULTIVERSION(normal_range,
                (int kind, DType dtype, const void* a, const void* b, void* out, int64_t begin,
                 int64_t end, const PhiloxKeys& keys, uint64_t offset),
                (kind, dtype, a, b, out, begin, end, keys, offset))

void normal_op(int kind, const void* a, const void* b, void* out, int64_t n, uint64_t seed,
               uint64_t offset, DType dtype) {
  const PhiloxKeys keys(seed);
  parallel_for(n, kMinElemsPhilox, 64, [&](int64_t begin, int64_t end) {
    normal_range(kind, dtype, a, b, out, begin, end, keys, offset);
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public entry points (lcengine_ops.h).
// ---------------------------------------------------------------------------------------------

void standard_normal_cpu(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype) {
  normal_op(kSample, nullptr, nullptr, out, n, seed, offset, dtype);
}

void reparameterize_cpu(const void* mu, const void* logvar, void* z, int64_t n, uint64_t seed,
                        uint64_t offset, DType dtype) {
  normal_op(kReparam, mu, logvar, z, n, seed, offset, dtype);
}

void reparameterize_backward_cpu(const void* grad_z, const void* logvar, void* grad_logvar,
                                 int64_t n, uint64_t seed, uint64_t offset, DType dtype) {
  normal_op(kReparamBackward, grad_z, logvar, grad_logvar, n, seed, offset, dtype);
}

}  // namespace lcengine
