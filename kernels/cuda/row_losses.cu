// SPDX-License-Identifier: Apache-2.0
// CUDA kernels of the row losses on [rows, dim] buffers: gaussian_kl, distance_penalty and
// constraint_loss, each a per-row float32 reduction fused with its elementwise gradient, run by
// the row skeleton of rows.cuh. Semantics: csrc/lcengine_ops.h.
#include <type_traits>

#include "common.cuh"
#include "rows.cuh"

namespace lcengine {
namespace cuda_detail {
namespace {

// gaussian_kl:
//   kl_rows[r] = -1/2 * sum_d (1 + lv - mu^2 - exp(lv))
//   grad_mu = grad_scale * mu;  grad_logvar = grad_scale * 1/2 * (exp(lv) - 1)   (if requested)
template <typename T, int VEC>
struct GaussianKlOp {
  static constexpr int kVec = VEC;
  static constexpr int kUnroll = VEC == 1 ? 4 : 2;
  struct Frag {
    Pack<T, VEC> mu, lv;
  };
  const T* mu;
  const T* logvar;
  float* kl_rows;
  T* grad_mu;      // nullptr: no gradient
  T* grad_logvar;  // nullptr iff grad_mu is
  float grad_scale;

  __device__ bool row_active(int64_t) const { return true; }
  __device__ bool reduces() const { return true; }
  __device__ Frag load(int64_t e, int64_t) const {
    return Frag{load_ro<T, VEC>(mu + e), load_ro<T, VEC>(logvar + e)};
  }
  __device__ float compute(const Frag& f, int64_t e, int64_t) const {
    float term[VEC];
    Pack<T, VEC> gm, glv;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float m = to_float(f.mu.v[j]);
      const float lv = to_float(f.lv.v[j]);
      const float ex = expf(lv);
      term[j] = 1.0f + lv - m * m - ex;
      gm.v[j] = from_float<T>(grad_scale * m);
      glv.v[j] = from_float<T>(grad_scale * 0.5f * (ex - 1.0f));
    }
    if (grad_mu != nullptr) {
      store<T, VEC>(grad_mu + e, gm);
      store<T, VEC>(grad_logvar + e, glv);
    }
    return pairwise_sum(term);
  }
  __device__ void finish(int64_t row, float sum) const { kl_rows[row] = -0.5f * sum; }
};

// distance_penalty:
//   out_rows[r] = (1/D) * sum_d log(1 + (z - z_ref)^2) * inv_sigma_sq[d]
//   grad_z = grad_scale * (1/D) * 2 (z - z_ref) / (1 + (z - z_ref)^2) * inv_sigma_sq[d]
// inv_sigma_sq[d] is inv_sigma_sq[0] for every d unless sigma_per_dim.
template <typename T, int VEC>
struct DistancePenaltyOp {
  static constexpr int kVec = VEC;
  static constexpr int kUnroll = VEC == 1 ? 4 : 2;
  struct Frag {
    Pack<T, VEC> z, zr;
  };
  const T* z;
  const T* z_ref;
  const float* inv_sigma_sq;  // [dim] if sigma_per_dim else [1]; float32
  bool sigma_per_dim;
  float* out_rows;
  T* grad_z;        // nullptr: no gradient
  float dim_f;      // D as float, for the mean
  float grad_coef;  // 2 * grad_scale / D

  __device__ bool row_active(int64_t) const { return true; }
  __device__ bool reduces() const { return true; }
  __device__ Frag load(int64_t e, int64_t) const {
    return Frag{load_ro<T, VEC>(z + e), load_ro<T, VEC>(z_ref + e)};
  }
  __device__ float compute(const Frag& f, int64_t e, int64_t col) const {
    float w[VEC];
    if (sigma_per_dim) {
      load_floats<VEC>(inv_sigma_sq + col, w);
    } else {
      const float w0 = __ldg(inv_sigma_sq);
#pragma unroll
      for (int j = 0; j < VEC; ++j) w[j] = w0;
    }
    float term[VEC];
    Pack<T, VEC> g;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float d = to_float(f.z.v[j]) - to_float(f.zr.v[j]);
      const float d2 = d * d;
      term[j] = log1pf(d2) * w[j];
      g.v[j] = from_float<T>(grad_coef * w[j] * d / (1.0f + d2));
    }
    if (grad_z != nullptr) store<T, VEC>(grad_z + e, g);
    return pairwise_sum(term);
  }
  __device__ void finish(int64_t row, float sum) const { out_rows[row] = sum / dim_f; }
};

// constraint_loss: binary cross-entropy with logits, stable for any |l|:
//   loss = w * (max(l, 0) - l * t + log1p(exp(-|l|)))
//   grad = grad_scale * w * (sigmoid(l) - t),  sigmoid(l) = 1/(1+e) if l >= 0 else e/(1+e),
//   e = exp(-|l|) <= 1, so nothing overflows for any finite l.
// w = 1 (kNone), weight[d] (kLastDim) or weight[r, d] (kFull). Outputs: elementwise loss,
// per-row sum (float32) and gradient, each only if its pointer is non-null.
template <typename T, int VEC>
struct ConstraintLossOp {
  static constexpr int kVec = VEC;
  static constexpr int kUnroll = VEC == 1 ? 4 : 1;  // three 16-byte inputs per pack already
  struct Frag {
    Pack<T, VEC> l, t, w;
  };
  const T* logits;
  const T* target;
  const T* weight;
  WeightMode weight_mode;
  T* loss_elems;     // nullptr: not written
  float* loss_rows;  // nullptr: not written
  T* grad_logits;    // nullptr: not written
  float grad_scale;

  __device__ bool row_active(int64_t) const { return true; }
  __device__ bool reduces() const { return loss_rows != nullptr; }
  __device__ Frag load(int64_t e, int64_t col) const {
    Frag f;
    f.l = load_ro<T, VEC>(logits + e);
    f.t = load_ro<T, VEC>(target + e);
    if (weight_mode == WeightMode::kFull) {
      f.w = load_ro<T, VEC>(weight + e);
    } else if (weight_mode == WeightMode::kLastDim) {
      f.w = load_ro<T, VEC>(weight + col);
    }
    return f;
  }
  __device__ float compute(const Frag& f, int64_t e, int64_t) const {
    const bool weighted = weight_mode != WeightMode::kNone;
    float term[VEC];
    Pack<T, VEC> le, g;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float l = to_float(f.l.v[j]);
      const float t = to_float(f.t.v[j]);
      const float w = weighted ? to_float(f.w.v[j]) : 1.0f;
      const float ex = expf(-fabsf(l));
      const float loss = w * ((l > 0.f ? l : 0.f) - l * t + log1pf(ex));
      const float inv = __frcp_rn(1.0f + ex);  // correctly rounded, = 1.0f / (1.0f + ex)
      const float sig = l >= 0.f ? inv : ex * inv;
      term[j] = loss;
      le.v[j] = from_float<T>(loss);
      g.v[j] = from_float<T>(grad_scale * w * (sig - t));
    }
    if (loss_elems != nullptr) store<T, VEC>(loss_elems + e, le);
    if (grad_logits != nullptr) store<T, VEC>(grad_logits + e, g);
    return pairwise_sum(term);
  }
  __device__ void finish(int64_t row, float sum) const { loss_rows[row] = sum; }
};

}  // namespace
}  // namespace cuda_detail

using cuda_detail::can_vectorize;
using cuda_detail::dispatch_dtype;
using cuda_detail::kVec16;
using cuda_detail::launch_rows;

void gaussian_kl_cuda(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                      void* grad_logvar, float grad_scale, int64_t rows, int64_t dim, DType dtype,
                      void* stream) {
  constexpr const char* kName = "gaussian_kl_cuda";
  if (rows <= 0) return;
  if ((grad_mu == nullptr) != (grad_logvar == nullptr))
    throw std::invalid_argument("gaussian_kl_cuda: grad_mu and grad_logvar must both be given");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, kName, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run = [&](auto vec_tag) {
      constexpr int V = decltype(vec_tag)::value;
      cuda_detail::GaussianKlOp<T, V> op{
          static_cast<const T*>(mu), static_cast<const T*>(logvar), kl_rows,
          static_cast<T*>(grad_mu),  static_cast<T*>(grad_logvar),  grad_scale};
      launch_rows(op, rows, dim, s, kName);
    };
    if (can_vectorize<T>(dim, {mu, logvar, grad_mu, grad_logvar})) {
      run(std::integral_constant<int, kVec16<T>>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  });
}

void distance_penalty_cuda(const void* z, const void* z_ref, const float* inv_sigma_sq,
                           bool sigma_per_dim, float* out_rows, void* grad_z, float grad_scale,
                           int64_t rows, int64_t dim, DType dtype, void* stream) {
  constexpr const char* kName = "distance_penalty_cuda";
  if (rows <= 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const float dim_f = static_cast<float>(dim);
  const float grad_coef =
      dim > 0 ? static_cast<float>(2.0 * static_cast<double>(grad_scale) / static_cast<double>(dim))
              : 0.f;
  dispatch_dtype(dtype, kName, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run = [&](auto vec_tag) {
      constexpr int V = decltype(vec_tag)::value;
      cuda_detail::DistancePenaltyOp<T, V> op{static_cast<const T*>(z),
                                              static_cast<const T*>(z_ref),
                                              inv_sigma_sq,
                                              sigma_per_dim,
                                              out_rows,
                                              static_cast<T*>(grad_z),
                                              dim_f,
                                              grad_coef};
      launch_rows(op, rows, dim, s, kName);
    };
    const void* sigma_vec = sigma_per_dim ? static_cast<const void*>(inv_sigma_sq) : nullptr;
    if (can_vectorize<T>(dim, {z, z_ref, grad_z, sigma_vec})) {
      run(std::integral_constant<int, kVec16<T>>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  });
}

void constraint_loss_cuda(const void* logits, const void* target, const void* weight,
                          WeightMode weight_mode, void* loss_elems, float* loss_rows,
                          void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                          DType dtype, void* stream) {
  constexpr const char* kName = "constraint_loss_cuda";
  if (rows <= 0) return;
  if (weight_mode != WeightMode::kNone && weight_mode != WeightMode::kLastDim &&
      weight_mode != WeightMode::kFull)
    throw std::invalid_argument("constraint_loss_cuda: invalid weight_mode");
  if (weight_mode != WeightMode::kNone && weight == nullptr)
    throw std::invalid_argument("constraint_loss_cuda: weight_mode needs a weight pointer");
  if (loss_elems == nullptr && loss_rows == nullptr && grad_logits == nullptr) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, kName, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run = [&](auto vec_tag) {
      constexpr int V = decltype(vec_tag)::value;
      cuda_detail::ConstraintLossOp<T, V> op{
          static_cast<const T*>(logits), static_cast<const T*>(target),
          static_cast<const T*>(weight), weight_mode,
          static_cast<T*>(loss_elems),   loss_rows,
          static_cast<T*>(grad_logits),  grad_scale};
      launch_rows(op, rows, dim, s, kName);
    };
    const void* w = weight_mode == WeightMode::kNone ? nullptr : weight;
    if (can_vectorize<T>(dim, {logits, target, w, loss_elems, grad_logits})) {
      run(std::integral_constant<int, kVec16<T>>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  });
}

}  // namespace lcengine
