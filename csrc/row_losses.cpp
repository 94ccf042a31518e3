// SPDX-License-Identifier: Apache-2.0
// CPU kernels of the row losses (contract: lcengine_ops.h): gaussian_kl, distance_penalty and
// constraint_loss, each a per-row reduction fused with its elementwise gradient. The layering is
// described in cpu_kernels.h. No torch, no Python: raw buffers, one pass, no heap temporaries.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "cpu_kernels.h"
#include "cpu_math.h"
#include "lcengine_ops.h"

namespace lcengine {

namespace {

using namespace cpu;  // NOLINT(build/namespaces): the kernel vocabulary of cpu_kernels.h

// ---------------------------------------------------------------------------------------------
// gaussian_kl
// ---------------------------------------------------------------------------------------------

// terms = (1 + lv) - mu^2 - exp(lv) elementwise; with kGrad also
//   grad_mu = s * mu,  grad_lv = (s / 2) * (exp(lv) - 1)      (d(s * kl) / d input).
template <bool kGrad>
LC_INLINE void kl_core(const float* __restrict mu, const float* __restrict lv,
                       float* __restrict grad_mu, float* __restrict grad_lv,
                       float* __restrict terms, float grad_scale, float half_grad_scale,
                       int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float m = mu[i];
    const float l = lv[i];
    const float var = cpu::exp_f(l);
    if constexpr (kGrad) {
      grad_mu[i] = grad_scale * m;
      grad_lv[i] = half_grad_scale * (var - 1.0f);
    }
    terms[i] = ((1.0f + l) - m * m) - var;
  }
}

// Rows [r0, r1): kl[r] = -0.5 * sum_d ((1 + lv) - mu^2 - exp(lv)), plus the gradients.
template <Isa kIsa, class S, bool kGrad>
LC_INLINE void kl_kernel(const typename S::type* mu, const typename S::type* logvar, float* kl_rows,
                         typename S::type* grad_mu, typename S::type* grad_logvar, float grad_scale,
                         int64_t r0, int64_t r1, int64_t dim) {
  constexpr int64_t kT = kIsF32<S> ? 1 : kTile;
  alignas(64) float tile_mu[kT];
  alignas(64) float tile_lv[kT];
  alignas(64) float tile_gmu[kGrad ? kT : 1];
  alignas(64) float tile_glv[kGrad ? kT : 1];
  alignas(64) float terms[kTile];
  const float half_grad_scale = 0.5f * grad_scale;
  RowSum acc;
  for_each_row_tile(0, r0, r1, dim,
                    [&](int64_t e0, int64_t len, int64_t ra, int64_t rb, int64_t c0, int64_t clen)
                        LC_LAMBDA_INLINE {
    const float* m = stage_in<kIsa, S>(mu, e0, len, tile_mu);
    const float* l = stage_in<kIsa, S>(logvar, e0, len, tile_lv);
    float* gm = kGrad ? stage_out<S>(grad_mu, e0, tile_gmu) : nullptr;
    float* gl = kGrad ? stage_out<S>(grad_logvar, e0, tile_glv) : nullptr;
    kl_core<kGrad>(m, l, gm, gl, terms, grad_scale, half_grad_scale, len);
    reduce_tile_rows(terms, ra, rb, c0, clen, dim, acc,
                     [&](int64_t r, float total) LC_LAMBDA_INLINE { kl_rows[r] = -0.5f * total; });
    if constexpr (kGrad) {
      commit_out<kIsa, S>(gm, grad_mu, e0, len);
      commit_out<kIsa, S>(gl, grad_logvar, e0, len);
    }
  });
}

template <Isa kIsa, class S>
LC_INLINE void kl_typed(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                        void* grad_logvar, float grad_scale, int64_t r0, int64_t r1, int64_t dim) {
  using T = typename S::type;
  if (grad_mu != nullptr && grad_logvar != nullptr) {
    kl_kernel<kIsa, S, true>(static_cast<const T*>(mu), static_cast<const T*>(logvar), kl_rows,
                             static_cast<T*>(grad_mu), static_cast<T*>(grad_logvar), grad_scale, r0,
                             r1, dim);
  } else {
    kl_kernel<kIsa, S, false>(static_cast<const T*>(mu), static_cast<const T*>(logvar), kl_rows,
                              nullptr, nullptr, grad_scale, r0, r1, dim);
  }
}

template <Isa kIsa>
LC_INLINE void kl_range_body(DType dtype, const void* mu, const void* logvar, float* kl_rows,
                             void* grad_mu, void* grad_logvar, float grad_scale, int64_t r0,
                             int64_t r1, int64_t dim) {
  switch (dtype) {
    case DType::kFloat32:
      kl_typed<kIsa, F32>(mu, logvar, kl_rows, grad_mu, grad_logvar, grad_scale, r0, r1, dim);
      break;
    case DType::kFloat16:
      kl_typed<kIsa, F16>(mu, logvar, kl_rows, grad_mu, grad_logvar, grad_scale, r0, r1, dim);
      break;
    case DType::kBFloat16:
      kl_typed<kIsa, BF16>(mu, logvar, kl_rows, grad_mu, grad_logvar, grad_scale, r0, r1, dim);
      break;
  }
}

LC_MULTIVERSION(kl_range,
                (DType dtype, const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                 void* grad_logvar, float grad_scale, int64_t r0, int64_t r1, int64_t dim),
                (dtype, mu, logvar, kl_rows, grad_mu, grad_logvar, grad_scale, r0, r1, dim))

// ---------------------------------------------------------------------------------------------
// distance_penalty
// ---------------------------------------------------------------------------------------------

// terms = log1p(q) * w with q = (z - z_ref)^2 and w = weights[i] (kPerDim: inv_sigma_sq laid
// out like the tile) or scalar_weight; with kGrad also
//   grad_z = grad_coef * w * (z - z_ref) / (1 + q),   grad_coef = s * 2 / D.
// One division serves both the log1p correction and the gradient.
template <bool kPerDim, bool kGrad>
LC_INLINE void distance_core(const float* __restrict z, const float* __restrict z_ref,
                             const float* __restrict weights, float scalar_weight,
                             float* __restrict grad_z, float* __restrict terms, float grad_coef,
                             int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float w = kPerDim ? weights[i] : scalar_weight;
    const float diff = z[i] - z_ref[i];
    const float q = diff * diff;
    const float u = 1.0f + q;
    const float inv_u = 1.0f / u;
    if constexpr (kGrad) grad_z[i] = grad_coef * w * diff * inv_u;
    terms[i] = cpu::log1p_from_u(q, u, inv_u) * w;
  }
}

// Rows [r0, r1): out[r] = (sum_d log1p((z - z_ref)^2) * inv_sigma_sq[d]) / D, plus grad_z.
template <Isa kIsa, class S, bool kPerDim, bool kGrad>
LC_INLINE void distance_kernel(const typename S::type* z, const typename S::type* z_ref,
                               const float* inv_sigma_sq, float* out_rows, typename S::type* grad_z,
                               float grad_scale, int64_t r0, int64_t r1, int64_t dim) {
  constexpr int64_t kT = kIsF32<S> ? 1 : kTile;
  alignas(64) float tile_z[kT];
  alignas(64) float tile_ref[kT];
  alignas(64) float tile_grad[kGrad ? kT : 1];
  alignas(64) float weights_tile[kPerDim ? kTile : 1];
  alignas(64) float terms[kTile];
  const float dim_f = static_cast<float>(dim);
  const float grad_coef = grad_scale * 2.0f / dim_f;
  const float scalar_weight = inv_sigma_sq[0];
  if constexpr (kPerDim) {
    if (dim <= kTile) replicate_row(inv_sigma_sq, dim, weights_tile);
  }
  RowSum acc;
  for_each_row_tile(0, r0, r1, dim,
                    [&](int64_t e0, int64_t len, int64_t ra, int64_t rb, int64_t c0, int64_t clen)
                        LC_LAMBDA_INLINE {
    const float* fz = stage_in<kIsa, S>(z, e0, len, tile_z);
    const float* fr = stage_in<kIsa, S>(z_ref, e0, len, tile_ref);
    float* fg = kGrad ? stage_out<S>(grad_z, e0, tile_grad) : nullptr;
    const float* w = nullptr;
    if constexpr (kPerDim) w = dim <= kTile ? weights_tile : inv_sigma_sq + c0;
    distance_core<kPerDim, kGrad>(fz, fr, w, scalar_weight, fg, terms, grad_coef, len);
    reduce_tile_rows(terms, ra, rb, c0, clen, dim, acc,
                     [&](int64_t r, float total) LC_LAMBDA_INLINE { out_rows[r] = total / dim_f; });
    if constexpr (kGrad) commit_out<kIsa, S>(fg, grad_z, e0, len);
  });
}

template <Isa kIsa, class S>
LC_INLINE void distance_typed(const void* z, const void* z_ref, const float* inv_sigma_sq,
                              bool per_dim, float* out_rows, void* grad_z, float grad_scale,
                              int64_t r0, int64_t r1, int64_t dim) {
  using T = typename S::type;
  const T* pz = static_cast<const T*>(z);
  const T* pr = static_cast<const T*>(z_ref);
  T* pg = static_cast<T*>(grad_z);
  if (per_dim) {
    if (pg != nullptr) {
      distance_kernel<kIsa, S, true, true>(pz, pr, inv_sigma_sq, out_rows, pg, grad_scale, r0, r1,
                                           dim);
    } else {
      distance_kernel<kIsa, S, true, false>(pz, pr, inv_sigma_sq, out_rows, pg, grad_scale, r0, r1,
                                            dim);
    }
  } else {
    if (pg != nullptr) {
      distance_kernel<kIsa, S, false, true>(pz, pr, inv_sigma_sq, out_rows, pg, grad_scale, r0, r1,
                                            dim);
    } else {
      distance_kernel<kIsa, S, false, false>(pz, pr, inv_sigma_sq, out_rows, pg, grad_scale, r0, r1,
                                             dim);
    }
  }
}

template <Isa kIsa>
LC_INLINE void distance_range_body(DType dtype, const void* z, const void* z_ref,
                                   const float* inv_sigma_sq, bool per_dim, float* out_rows,
                                   void* grad_z, float grad_scale, int64_t r0, int64_t r1,
                                   int64_t dim) {
  switch (dtype) {
    case DType::kFloat32:
      distance_typed<kIsa, F32>(z, z_ref, inv_sigma_sq, per_dim, out_rows, grad_z, grad_scale, r0,
                                r1, dim);
      break;
    case DType::kFloat16:
      distance_typed<kIsa, F16>(z, z_ref, inv_sigma_sq, per_dim, out_rows, grad_z, grad_scale, r0,
                                r1, dim);
      break;
    case DType::kBFloat16:
      distance_typed<kIsa, BF16>(z, z_ref, inv_sigma_sq, per_dim, out_rows, grad_z, grad_scale, r0,
                                 r1, dim);
      break;
  }
}

LC_MULTIVERSION(distance_range,
                (DType dtype, const void* z, const void* z_ref, const float* inv_sigma_sq,
                 bool per_dim, float* out_rows, void* grad_z, float grad_scale, int64_t r0,
                 int64_t r1, int64_t dim),
                (dtype, z, z_ref, inv_sigma_sq, per_dim, out_rows, grad_z, grad_scale, r0, r1, dim))

// ---------------------------------------------------------------------------------------------
// constraint_loss
// ---------------------------------------------------------------------------------------------

struct ConstraintArgs {
  const void* logits;
  const void* target;
  const void* weight;
  void* loss_elems;   // nullable
  float* loss_rows;   // nullable
  void* grad_logits;  // nullable
  float grad_scale;
};

// Elementwise binary cross-entropy with logits. With e = exp(-|l|) (the only exp), u = 1 + e
// and one division 1/u:
//   loss = w * (max(l, 0) - l t + log1p(e))                        (kLoss)
//   grad = s * w * (sigmoid(l) - t),  sigmoid(l) = 1/u for l >= 0, e/u for l < 0   (kGrad)
// Both stay exact in the tails: e underflows to 0 for |l| > ~104 and nothing overflows.
// `weights` (kWeighted) are laid out like the tile.
template <bool kWeighted, bool kLoss, bool kGrad>
LC_INLINE void constraint_core(const float* __restrict logits, const float* __restrict target,
                               const float* __restrict weights, float* __restrict loss,
                               float* __restrict grad, float grad_scale, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float l = logits[i];
    const float t = target[i];
    const float w = kWeighted ? weights[i] : 1.0f;
    const float e = cpu::exp_f(-__builtin_fabsf(l));
    const float u = 1.0f + e;
    const float inv_u = 1.0f / u;
    if constexpr (kLoss) {
      const float positive_part = l > 0.0f ? l : 0.0f;
      const float value = positive_part - l * t + cpu::log1p_from_u(e, u, inv_u);
      loss[i] = kWeighted ? value * w : value;
    }
    if constexpr (kGrad) {
      const float residual = cpu::sigmoid_from(l, e, inv_u) - t;
      grad[i] = kWeighted ? grad_scale * w * residual : grad_scale * residual;
    }
  }
}

// Rows [r0, r1) of [rows, dim] buffers (or, `flat`, elements [r0, r1) of one long row: no
// row sums, weight not kLastDim). Loss values go to loss_elems, or to a scratch tile when only
// their row sums are wanted.
template <Isa kIsa, class S, WeightMode kWeight, bool kLoss, bool kGrad>
LC_INLINE void constraint_kernel(const ConstraintArgs& args, bool flat, int64_t r0, int64_t r1,
                                 int64_t dim) {
  using T = typename S::type;
  constexpr bool kWeighted = kWeight != WeightMode::kNone;
  constexpr int64_t kT = kIsF32<S> ? 1 : kTile;
  alignas(64) float tile_l[kT];
  alignas(64) float tile_t[kT];
  alignas(64) float tile_w[kWeighted ? kTile : 1];
  alignas(64) float tile_loss[kLoss ? kTile : 1];
  alignas(64) float tile_grad[kGrad ? kT : 1];
  const T* logits = static_cast<const T*>(args.logits);
  const T* target = static_cast<const T*>(args.target);
  const T* weight = static_cast<const T*>(args.weight);
  T* loss_elems = static_cast<T*>(args.loss_elems);
  T* grad = static_cast<T*>(args.grad_logits);
  float* loss_rows = args.loss_rows;
  const float grad_scale = args.grad_scale;

  // kLastDim with whole-row tiles: the weight row converted and replicated once.
  if constexpr (kWeight == WeightMode::kLastDim) {
    if (dim <= kTile) {
      alignas(64) float row[kTile];
      to_float<kIsa, S>(weight, row, dim);
      replicate_row(row, dim, tile_w);
    }
  }

  // flat: elements [r0, r1) as one row without a row sum (weight is never kLastDim then).
  const int64_t first = flat ? r0 : 0;
  const int64_t row_begin = flat ? 0 : r0;
  const int64_t row_end = flat ? 1 : r1;
  const int64_t row_len = flat ? r1 - r0 : dim;
  const bool row_sums = !flat && loss_rows != nullptr;
  RowSum acc;
  for_each_row_tile(first, row_begin, row_end, row_len,
                    [&](int64_t e0, int64_t len, int64_t ra, int64_t rb, int64_t c0, int64_t clen)
                        LC_LAMBDA_INLINE {
    const float* fl = stage_in<kIsa, S>(logits, e0, len, tile_l);
    const float* ft = stage_in<kIsa, S>(target, e0, len, tile_t);
    const float* fw = nullptr;
    if constexpr (kWeight == WeightMode::kFull) fw = stage_in<kIsa, S>(weight, e0, len, tile_w);
    if constexpr (kWeight == WeightMode::kLastDim) {
      fw = dim <= kTile ? tile_w : stage_in<kIsa, S>(weight, c0, len, tile_w);
    }
    float* fe = nullptr;
    if constexpr (kLoss) {
      fe = loss_elems != nullptr ? stage_out<S>(loss_elems, e0, tile_loss) : tile_loss;
    }
    float* fg = kGrad ? stage_out<S>(grad, e0, tile_grad) : nullptr;
    constraint_core<kWeighted, kLoss, kGrad>(fl, ft, fw, fe, fg, grad_scale, len);
    if constexpr (kLoss) {
      if (row_sums) {
        reduce_tile_rows(fe, ra, rb, c0, clen, dim, acc,
                         [&](int64_t r, float total) LC_LAMBDA_INLINE { loss_rows[r] = total; });
      }
      commit_out<kIsa, S>(fe, loss_elems, e0, len);
    }
    if constexpr (kGrad) commit_out<kIsa, S>(fg, grad, e0, len);
  });
}

template <Isa kIsa, class S, WeightMode kWeight>
LC_INLINE void constraint_by_outputs(const ConstraintArgs& args, bool flat, int64_t begin,
                                     int64_t end, int64_t dim) {
  const bool loss = args.loss_elems != nullptr || args.loss_rows != nullptr;
  const bool grad = args.grad_logits != nullptr;
  if (loss && grad) {
    constraint_kernel<kIsa, S, kWeight, true, true>(args, flat, begin, end, dim);
  } else if (loss) {
    constraint_kernel<kIsa, S, kWeight, true, false>(args, flat, begin, end, dim);
  } else if (grad) {
    constraint_kernel<kIsa, S, kWeight, false, true>(args, flat, begin, end, dim);
  }
}

template <Isa kIsa, class S>
LC_INLINE void constraint_typed(WeightMode mode, const ConstraintArgs& args, bool flat,
                                int64_t begin, int64_t end, int64_t dim) {
  switch (mode) {
    case WeightMode::kNone:
      constraint_by_outputs<kIsa, S, WeightMode::kNone>(args, flat, begin, end, dim);
      break;
    case WeightMode::kLastDim:
      constraint_by_outputs<kIsa, S, WeightMode::kLastDim>(args, flat, begin, end, dim);
      break;
    case WeightMode::kFull:
      constraint_by_outputs<kIsa, S, WeightMode::kFull>(args, flat, begin, end, dim);
      break;
  }
}

template <Isa kIsa>
LC_INLINE void constraint_range_body(DType dtype, WeightMode mode, const ConstraintArgs& args,
                                     bool flat, int64_t begin, int64_t end, int64_t dim) {
  switch (dtype) {
    case DType::kFloat32:
      constraint_typed<kIsa, F32>(mode, args, flat, begin, end, dim);
      break;
    case DType::kFloat16:
      constraint_typed<kIsa, F16>(mode, args, flat, begin, end, dim);
      break;
    case DType::kBFloat16:
      constraint_typed<kIsa, BF16>(mode, args, flat, begin, end, dim);
      break;
  }
}

LC_MULTIVERSION(constraint_range,
                (DType dtype, WeightMode mode, const ConstraintArgs& args, bool flat, int64_t begin,
                 int64_t end, int64_t dim),
                (dtype, mode, args, flat, begin, end, dim))

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public entry points (lcengine_ops.h).
// ---------------------------------------------------------------------------------------------

void gaussian_kl_cpu(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                     void* grad_logvar, float grad_scale, int64_t rows, int64_t dim, DType dtype) {
  if (rows <= 0) return;
  if (dim <= 0) {  // empty sum
    std::fill(kl_rows, kl_rows + rows, -0.0f);
    return;
  }
  parallel_for(rows, min_rows_per_thread(dim), 1, [&](int64_t r0, int64_t r1) {
    kl_range(dtype, mu, logvar, kl_rows, grad_mu, grad_logvar, grad_scale, r0, r1, dim);
  });
}

void distance_penalty_cpu(const void* z, const void* z_ref, const float* inv_sigma_sq,
                          bool sigma_per_dim, float* out_rows, void* grad_z, float grad_scale,
                          int64_t rows, int64_t dim, DType dtype) {
  if (rows <= 0) return;
  if (dim <= 0) {  // mean over nothing, as torch.mean
    std::fill(out_rows, out_rows + rows, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  parallel_for(rows, min_rows_per_thread(dim), 1, [&](int64_t r0, int64_t r1) {
    distance_range(dtype, z, z_ref, inv_sigma_sq, sigma_per_dim, out_rows, grad_z, grad_scale, r0,
                   r1, dim);
  });
}

void constraint_loss_cpu(const void* logits, const void* target, const void* weight,
                         WeightMode weight_mode, void* loss_elems, float* loss_rows,
                         void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                         DType dtype) {
  if (rows <= 0) return;
  if (loss_elems == nullptr && loss_rows == nullptr && grad_logits == nullptr) return;
  if (dim <= 0) {
    if (loss_rows != nullptr) std::fill(loss_rows, loss_rows + rows, 0.0f);
    return;
  }
  if (weight == nullptr) weight_mode = WeightMode::kNone;
  const ConstraintArgs args{logits, target, weight, loss_elems, loss_rows, grad_logits, grad_scale};
  if (loss_rows == nullptr && weight_mode != WeightMode::kLastDim) {
    // Purely elementwise: flat tiles regardless of the row length.
    parallel_for(rows * dim, kMinElemsStream, 64, [&](int64_t begin, int64_t end) {
      constraint_range(dtype, weight_mode, args, true, begin, end, dim);
    });
    return;
  }
  parallel_for(rows, min_rows_per_thread(dim), 1, [&](int64_t r0, int64_t r1) {
    constraint_range(dtype, weight_mode, args, false, r0, r1, dim);
  });
}

}  // namespace lcengine
