// SPDX-License-Identifier: Apache-2.0
// CPU kernels of lcengine, part 1 (contract: lcengine_ops.h): the Philox normal ops
// (standard_normal, reparameterize, reparameterize_backward), latent_adam, and the CPU
// introspection (threads, ISA level). The row losses are in cpu_losses.cpp; the layering is
// described in cpu_kernels.h. No torch, no Python: raw buffers, one pass, no heap temporaries.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cpu_info.h"
#include "cpu_kernels.h"
#include "cpu_math.h"
#include "cpu_simd.h"
#include "lcengine_ops.h"
#include "philox.h"

namespace lcengine {

namespace cpu {

static Isa detect_isa() {
  Isa isa = Isa::kBaseline;
#if LC_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) {
    isa = Isa::kAvx512;
  } else if (__builtin_cpu_supports("x86-64-v3")) {
    isa = Isa::kAvx2;
  }
#endif
  // LCENGINE_CPU_ISA can only lower the level: an unsupported one would fault.
  if (const char* cap = std::getenv("LCENGINE_CPU_ISA")) {
    Isa requested = isa;
    if (std::strcmp(cap, "baseline") == 0 || std::strcmp(cap, "sse2") == 0) {
      requested = Isa::kBaseline;
    } else if (std::strcmp(cap, "avx2") == 0 || std::strcmp(cap, "x86-64-v3") == 0) {
      requested = Isa::kAvx2;
    }
    if (static_cast<int>(requested) < static_cast<int>(isa)) isa = requested;
  }
  return isa;
}

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

}  // namespace cpu

namespace {

using namespace cpu;  // NOLINT(build/namespaces): the kernel vocabulary of cpu_kernels.h

// ---------------------------------------------------------------------------------------------
// Normal samples: standard_normal, reparameterize, reparameterize_backward.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// latent_adam
// ---------------------------------------------------------------------------------------------

struct AdamArgs {
  void* z;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  AdamCoefficients coef;
};

// The torch.optim.Adam update without weight decay, in place (cpu_math.h: adam_update).
LC_INLINE void adam_core(float* __restrict z, const float* __restrict grad,
                         float* __restrict exp_avg, float* __restrict exp_avg_sq,
                         const AdamArgs& args, int64_t len) {
  const AdamCoefficients coef = args.coef;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) adam_update(z[i], exp_avg[i], exp_avg_sq[i], grad[i], coef);
}

// Flat elements [begin, end).
template <Isa kIsa, class S>
LC_INLINE void adam_kernel(const AdamArgs& args, int64_t begin, int64_t end) {
  using T = typename S::type;
  constexpr int64_t kT = kIsF32<S> ? 1 : kTile;
  alignas(64) float tile_z[kT];
  alignas(64) float tile_g[kT];
  alignas(64) float tile_m[kT];
  alignas(64) float tile_v[kT];
  T* z = static_cast<T*>(args.z);
  const T* grad = static_cast<const T*>(args.grad);
  T* exp_avg = static_cast<T*>(args.exp_avg);
  T* exp_avg_sq = static_cast<T*>(args.exp_avg_sq);
  for (int64_t e0 = begin; e0 < end; e0 += kTile) {
    const int64_t len = std::min(kTile, end - e0);
    float* fz = stage_inout<kIsa, S>(z, e0, len, tile_z);
    const float* fg = stage_in<kIsa, S>(grad, e0, len, tile_g);
    float* fm = stage_inout<kIsa, S>(exp_avg, e0, len, tile_m);
    float* fv = stage_inout<kIsa, S>(exp_avg_sq, e0, len, tile_v);
    adam_core(fz, fg, fm, fv, args, len);
    commit_out<kIsa, S>(fz, z, e0, len);
    commit_out<kIsa, S>(fm, exp_avg, e0, len);
    commit_out<kIsa, S>(fv, exp_avg_sq, e0, len);
  }
}

// Rows [r0, r1); rows with active[r] == 0 are neither read nor written. Runs of active rows
// are updated as one flat range.
template <Isa kIsa, class S>
LC_INLINE void adam_rows_kernel(const AdamArgs& args, const uint8_t* active, int64_t r0,
                                int64_t r1, int64_t dim) {
  int64_t r = r0;
  while (r < r1) {
    if (active[r] == 0) {
      ++r;
      continue;
    }
    int64_t run_end = r + 1;
    while (run_end < r1 && active[run_end] != 0) ++run_end;
    adam_kernel<kIsa, S>(args, r * dim, run_end * dim);
    r = run_end;
  }
}

template <Isa kIsa, class S>
LC_INLINE void adam_typed(const AdamArgs& args, const uint8_t* active, int64_t begin,
                          int64_t end, int64_t dim) {
  if (active != nullptr) {
    adam_rows_kernel<kIsa, S>(args, active, begin, end, dim);
  } else {
    adam_kernel<kIsa, S>(args, begin, end);
  }
}

// active == nullptr: [begin, end) are element indices; otherwise row indices.
template <Isa kIsa>
LC_INLINE void adam_range_body(DType dtype, const AdamArgs& args, const uint8_t* active,
                               int64_t begin, int64_t end, int64_t dim) {
  switch (dtype) {
    case DType::kFloat32:
      adam_typed<kIsa, F32>(args, active, begin, end, dim);
      break;
    case DType::kFloat16:
      adam_typed<kIsa, F16>(args, active, begin, end, dim);
      break;
    case DType::kBFloat16:
      adam_typed<kIsa, BF16>(args, active, begin, end, dim);
      break;
  }
}

LC_MULTIVERSION(adam_range,
                (DType dtype, const AdamArgs& args, const uint8_t* active, int64_t begin,
                 int64_t end, int64_t dim),
                (dtype, args, active, begin, end, dim))

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public entry points (lcengine_ops.h, cpu_info.h).
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

void latent_adam_cpu(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                     const uint8_t* active, int64_t rows, int64_t dim, double lr, double beta1,
                     double beta2, double eps, double bias_c1, double bias_c2, DType dtype) {
  if (rows <= 0 || dim <= 0) return;
  const AdamArgs args{z, grad, exp_avg, exp_avg_sq,
                      adam_coefficients(lr, beta1, beta2, eps, bias_c1, bias_c2)};
  if (active == nullptr) {
    parallel_for(rows * dim, kMinElemsStream, 64, [&](int64_t begin, int64_t end) {
      adam_range(dtype, args, nullptr, begin, end, dim);
    });
    return;
  }
  parallel_for(rows, min_rows_per_thread(dim), 1, [&](int64_t r0, int64_t r1) {
    adam_range(dtype, args, active, r0, r1, dim);
  });
}

int cpu_num_threads() { return cpu::max_threads(); }

const char* cpu_simd_level() { return cpu::isa_name(cpu::active_isa()); }

}  // namespace lcengine
