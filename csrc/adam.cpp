// SPDX-License-Identifier: Apache-2.0
// CPU kernel of latent_adam_ (contract: lcengine_ops.h): the in-place torch.optim.Adam step on
// a batch of latents, optionally row-masked. The element update (adam_update in cpu_math.h) is
// shared with the fused optimizer (optimize.cpp). The layering is described in cpu_kernels.h.
// No torch, no Python: raw buffers, one pass, no heap temporaries.
#include <algorithm>
#include <cstdint>

#include "cpu_kernels.h"
#include "cpu_math.h"
#include "lcengine_ops.h"

namespace lcengine {

namespace {

using namespace cpu;  // NOLINT(build/namespaces): the kernel vocabulary of cpu_kernels.h

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
LC_INLINE void adam_rows_kernel(const AdamArgs& args, const uint8_t* active, int64_t r0, int64_t r1,
                                int64_t dim) {
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
LC_INLINE void adam_typed(const AdamArgs& args, const uint8_t* active, int64_t begin, int64_t end,
                          int64_t dim) {
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
// Public entry point (lcengine_ops.h).
// ---------------------------------------------------------------------------------------------

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
  parallel_for(rows, min_rows_per_thread(dim), 1,
               [&](int64_t r0, int64_t r1) { adam_range(dtype, args, active, r0, r1, dim); });
}

}  // namespace lcengine
