// SPDX-License-Identifier: Apache-2.0
// CUDA kernel of latent_adam_: the in-place torch.optim.Adam step on a batch of latents,
// row-masked, run by the row skeleton of rows.cuh. Semantics: csrc/lcengine_ops.h.
#include <cmath>
#include <type_traits>

#include "common.cuh"
#include "rows.cuh"

namespace lcengine {
namespace cuda_detail {
namespace {

// latent_adam, in place, torch.optim.Adam without weight decay, rows with active[r] == 0 are
// neither read nor written:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   z = z - (lr / bias_c1) * m / (sqrt(v) / sqrt(bias_c2) + eps)
template <typename T, int VEC>
struct LatentAdamOp {
  static constexpr int kVec = VEC;
  static constexpr int kUnroll = VEC == 1 ? 4 : 1;
  struct Frag {
    Pack<T, VEC> z, g, m, v;
  };
  T* z;
  const T* grad;
  T* exp_avg;
  T* exp_avg_sq;
  const uint8_t* active;  // [rows] or nullptr (all rows)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;     // lr / bias_c1
  float sqrt_bias_c2;  // sqrt(bias_c2)
  float eps;

  __device__ bool row_active(int64_t row) const { return active == nullptr || active[row] != 0; }
  __device__ bool reduces() const { return false; }
  __device__ Frag load(int64_t e, int64_t) const {
    // z, exp_avg and exp_avg_sq are written by this kernel: coherent loads.
    return Frag{load_rw<T, VEC>(z + e), load_ro<T, VEC>(grad + e), load_rw<T, VEC>(exp_avg + e),
                load_rw<T, VEC>(exp_avg_sq + e)};
  }
  __device__ float compute(const Frag& f, int64_t e, int64_t) const {
    Pack<T, VEC> zo, mo, vo;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float g = to_float(f.g.v[j]);
      const float m = beta1 * to_float(f.m.v[j]) + one_minus_beta1 * g;
      const float v = beta2 * to_float(f.v.v[j]) + one_minus_beta2 * g * g;
      const float denom = sqrtf(v) / sqrt_bias_c2 + eps;
      zo.v[j] = from_float<T>(to_float(f.z.v[j]) - step_size * (m / denom));
      mo.v[j] = from_float<T>(m);
      vo.v[j] = from_float<T>(v);
    }
    store<T, VEC>(z + e, zo);
    store<T, VEC>(exp_avg + e, mo);
    store<T, VEC>(exp_avg_sq + e, vo);
    return 0.f;
  }
  __device__ void finish(int64_t, float) const {}
};

}  // namespace
}  // namespace cuda_detail

using cuda_detail::can_vectorize;
using cuda_detail::dispatch_dtype;
using cuda_detail::kVec16;
using cuda_detail::launch_rows;

void latent_adam_cuda(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                      const uint8_t* active, int64_t rows, int64_t dim, double lr, double beta1,
                      double beta2, double eps, double bias_c1, double bias_c2, DType dtype,
                      void* stream) {
  constexpr const char* kName = "latent_adam_cuda";
  if (rows <= 0 || dim <= 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // Coefficients formed in double, rounded to float once (1 - beta in float is off by ~1e-5).
  const float step_size = static_cast<float>(lr / bias_c1);
  const float sqrt_bias_c2 = static_cast<float>(std::sqrt(bias_c2));
  dispatch_dtype(dtype, kName, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run = [&](auto vec_tag) {
      constexpr int V = decltype(vec_tag)::value;
      cuda_detail::LatentAdamOp<T, V> op{static_cast<T*>(z),
                                         static_cast<const T*>(grad),
                                         static_cast<T*>(exp_avg),
                                         static_cast<T*>(exp_avg_sq),
                                         active,
                                         static_cast<float>(beta1),
                                         static_cast<float>(1.0 - beta1),
                                         static_cast<float>(beta2),
                                         static_cast<float>(1.0 - beta2),
                                         step_size,
                                         sqrt_bias_c2,
                                         static_cast<float>(eps)};
      launch_rows(op, rows, dim, s, kName);
    };
    if (can_vectorize<T>(dim, {z, grad, exp_avg, exp_avg_sq})) {
      run(std::integral_constant<int, kVec16<T>>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  });
}

}  // namespace lcengine
