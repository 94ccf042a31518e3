// SPDX-License-Identifier: Apache-2.0
// Native core of lcengine: raw pointers, sizes and (for CUDA) a stream. No torch headers here,
// so the core builds without libtorch. Every tensor argument is a contiguous buffer; the Python
// layer validates shapes, dtypes and devices before calling in.
#pragma once

#include <cstdint>

namespace lcengine {

// Element type of a floating buffer. Math is always done in float32.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Weight layout for constraint_loss.
enum class WeightMode : int { kNone = 0, kLastDim = 1, kFull = 2 };

// ---------------------------------------------------------------------------------------------
// CPU kernels (csrc/cpu_ops.cpp). OpenMP-parallel, single pass, no temporaries.
// ---------------------------------------------------------------------------------------------

// out[i] = N(0,1) sample of the Philox4x32-10 stream keyed by (seed, offset + i), bit-compatible
// with Triton's tl.randn(seed, offset + i) up to float rounding of log/cos.
void standard_normal_cpu(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype);

// z[i] = mu[i] + exp(logvar[i] / 2) * eps(seed, offset + i)
void reparameterize_cpu(const void* mu, const void* logvar, void* z, int64_t n,
                            uint64_t seed, uint64_t offset, DType dtype);

// grad_logvar[i] = grad_z[i] * 0.5 * exp(logvar[i] / 2) * eps(seed, offset + i)
void reparameterize_backward_cpu(const void* grad_z, const void* logvar, void* grad_logvar,
                            int64_t n, uint64_t seed, uint64_t offset, DType dtype);

// kl_rows[r] = -0.5 * sum_d (1 + lv - mu^2 - exp(lv)) (float32, [rows]).
// If grad_mu != nullptr, also writes the gradient of (grad_scale * kl_rows[r]):
//   grad_mu = grad_scale * mu, grad_logvar = grad_scale * 0.5 * (exp(lv) - 1)   (dtype of input)
void gaussian_kl_cpu(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                         void* grad_logvar, float grad_scale, int64_t rows, int64_t dim,
                         DType dtype);

// out_rows[r] = (1/D) sum_d log(1 + (z - z_ref)^2) * inv_sigma_sq[d]   (float32, [rows])
// inv_sigma_sq has `dim` entries if sigma_per_dim, else 1. If grad_z != nullptr also writes
//   grad_z = grad_scale * (1/D) * 2 (z - z_ref) / (1 + (z - z_ref)^2) * inv_sigma_sq[d]
void distance_penalty_cpu(const void* z, const void* z_ref, const float* inv_sigma_sq,
                              bool sigma_per_dim, float* out_rows, void* grad_z,
                              float grad_scale, int64_t rows, int64_t dim, DType dtype);

// Elementwise binary cross-entropy with logits, stable for any |logit|:
//   loss = w * (max(l, 0) - l * t + log1p(exp(-|l|)))
// weight: kNone (w = 1), kLastDim (weight has `dim` entries), kFull (same shape as logits).
// If loss_elems != nullptr writes the elementwise loss (dtype); if loss_rows != nullptr writes
// the per-row sum (float32, [rows]); if grad_logits != nullptr writes
//   grad = grad_scale * w * (sigmoid(l) - t).
void constraint_loss_cpu(const void* logits, const void* target, const void* weight,
                             WeightMode weight_mode, void* loss_elems, float* loss_rows,
                             void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                             DType dtype);

// In-place Adam update (torch.optim.Adam formula, no weight decay) of rows whose active[r] != 0
// (all rows if active == nullptr); inactive rows are not read or written.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   z -= (lr / bias_c1) * m / (sqrt(v) / sqrt(bias_c2) + eps)
void latent_adam_cpu(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                     const uint8_t* active, int64_t rows, int64_t dim, float lr, float beta1,
                     float beta2, float eps, float bias_c1, float bias_c2, DType dtype);

// Number of OpenMP threads the CPU kernels use (1 without OpenMP).
int cpu_num_threads();

// ---------------------------------------------------------------------------------------------
// CUDA kernels (kernels/cuda/*.cu), compiled only when LCENGINE_WITH_CUDA is defined. Same
// semantics as the CPU versions; `stream` is a cudaStream_t passed as void*. Launch errors are
// reported by throwing std::runtime_error.
// ---------------------------------------------------------------------------------------------
#ifdef LCENGINE_WITH_CUDA
void standard_normal_cuda(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                          void* stream);
void reparameterize_cuda(const void* mu, const void* logvar, void* z, int64_t n,
                             uint64_t seed, uint64_t offset, DType dtype, void* stream);
void reparameterize_backward_cuda(const void* grad_z, const void* logvar, void* grad_logvar,
                             int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                             void* stream);
void gaussian_kl_cuda(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                          void* grad_logvar, float grad_scale, int64_t rows, int64_t dim,
                          DType dtype, void* stream);
void distance_penalty_cuda(const void* z, const void* z_ref, const float* inv_sigma_sq,
                               bool sigma_per_dim, float* out_rows, void* grad_z,
                               float grad_scale, int64_t rows, int64_t dim, DType dtype,
                               void* stream);
void constraint_loss_cuda(const void* logits, const void* target, const void* weight,
                              WeightMode weight_mode, void* loss_elems, float* loss_rows,
                              void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                              DType dtype, void* stream);
void latent_adam_cuda(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                      const uint8_t* active, int64_t rows, int64_t dim, float lr, float beta1,
                      float beta2, float eps, float bias_c1, float bias_c2, DType dtype,
                      void* stream);
// Number of CUDA devices visible to the runtime linked into _C (0 if no driver).
int cuda_device_count();
#endif

}  // namespace lcengine
