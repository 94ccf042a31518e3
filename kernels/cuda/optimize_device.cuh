// SPDX-License-Identifier: Apache-2.0
// Device-side pieces shared by the two CUDA paths of the fused latent optimizer (optimize.cu):
// activations and their derivatives, the stable sigmoid, the distance + Adam update of one
// latent element, and the control block through which the generic path's kernels know the
// current step without the host. Every formula mirrors csrc/optimize.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"

namespace lcengine {
namespace cuda_detail {
namespace opt {

constexpr int kActReLU = 0;      // Activation::kReLU
constexpr int kActSoftplus = 1;  // Activation::kSoftplus
constexpr int kActLeaky = 2;     // Activation::kLeakyReLU
constexpr float kLeakySlope = 0.2f;
constexpr float kSoftplusThreshold = 20.0f;  // torch's default: softplus(x) = x above it

// act(x): relu max(x, 0); leaky_relu x < 0 ? 0.2 x : x; softplus x > 20 ? x : log1p(exp(x)).
// Written so that NaN passes through (as in torch): a diverged critic is never "satisfied".
__device__ __forceinline__ float activate(float x, int act) {
  if (act == kActReLU) return x < 0.f ? 0.f : x;
  if (act == kActLeaky) return x < 0.f ? x * kLeakySlope : x;
  return x > kSoftplusThreshold ? x : log1pf(expf(x));
}

// g * act'(pre), from the saved post-activation a = act(pre):
//   relu: a > 0;  leaky: a > 0 ? 1 : 0.2;  softplus: sigmoid(pre) = 1 - exp(-a), with
//   a (1 - a/2) below 1e-3 (keeps the relative accuracy where 1 - exp(-a) cancels).
__device__ __forceinline__ float activation_grad(float g, float a, int act) {
  if (act == kActReLU) return a > 0.f ? g : 0.f;
  if (act == kActLeaky) return a > 0.f ? g : g * kLeakySlope;
  const float small = a * (1.0f - 0.5f * a);
  const float big = 1.0f - expf(-a);
  return g * (a < 1e-3f ? small : big);
}

// Stable sigmoid: e = exp(-|l|); inv = 1 / (1 + e) for l >= 0, e * inv otherwise: the CPU path's
// sigmoid_f (csrc/cpu_math.h) operation for operation, the division IEEE round-to-nearest
// (__fdiv_rn, never an approximate reciprocal: the stopping rule compares it with tau). expf
// itself may differ from the CPU's exp_f by an ulp.
__device__ __forceinline__ float stable_sigmoid(float l) {
  const float e = expf(-fabsf(l));
  const float inv = __fdiv_rn(1.0f, 1.0f + e);
  return l >= 0.f ? inv : e * inv;
}

// The stopping rule for one logit column: requirement +1 needs sigmoid(l) > upper[c], -1 needs
// sigmoid(l) < lower[c], 0 nothing.
__device__ __forceinline__ bool column_satisfied(float l, int8_t req, const float* upper,
                                                 const float* lower, int c) {
  if (req > 0) return stable_sigmoid(l) > __ldg(upper + c);
  if (req < 0) return stable_sigmoid(l) < __ldg(lower + c);
  return true;
}

// Adam constants that do not depend on the step (float, as the CPU path rounds them; 1 - beta
// is formed in double before the rounding, never as 1.0f - float(beta)).
struct AdamConsts {
  float b1, one_minus_b1, b2, one_minus_b2, eps;
};

// Adam's per-step scalars from b1t = beta1^t, b2t = beta2^t (double, like the CPU path):
//   step_size = float(lr / (1 - b1t)),  sqrt_bc2 = float(sqrt(1 - b2t)).
struct AdamStep {
  float step_size, sqrt_bc2;
};

__device__ __forceinline__ AdamStep adam_step(double lr, double b1t, double b2t) {
  return AdamStep{static_cast<float>(lr / (1.0 - b1t)), static_cast<float>(sqrt(1.0 - b2t))};
}

// Coefficient of the distance gradient of latent column d: float(w_dist * 2 / D *
// inv_sigma_sq[d]), in double and rounded once, as the CPU path rounds it.
__device__ __forceinline__ float distance_coef(double w_dist, int dim, float inv_sigma_sq) {
  return static_cast<float>(w_dist * 2.0 / static_cast<double>(dim) *
                            static_cast<double>(inv_sigma_sq));
}

// One latent element: g = g_critics + coef diff / (1 + diff^2) with diff = z - anchor, then
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  z -= step_size m / (sqrt(v) / sqrt_bc2 + eps)
// in the reference's order of float operations, each rounded on its own (no FMA contraction),
// with IEEE division and square root.
__device__ __forceinline__ void distance_adam(float& z, float& m, float& v, float g_critics,
                                              float anchor, float coef, const AdamConsts& c,
                                              float step_size, float sqrt_bc2) {
  const float diff = __fsub_rn(z, anchor);
  const float dist = __fdiv_rn(__fmul_rn(coef, diff), __fadd_rn(1.0f, __fmul_rn(diff, diff)));
  const float g = __fadd_rn(g_critics, dist);
  const float mn = __fadd_rn(__fmul_rn(m, c.b1), __fmul_rn(c.one_minus_b1, g));
  const float vn = __fadd_rn(__fmul_rn(v, c.b2), __fmul_rn(__fmul_rn(c.one_minus_b2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vn), sqrt_bc2), c.eps);
  z = __fsub_rn(z, __fdiv_rn(__fmul_rn(step_size, mn), denom));
  m = mn;
  v = vn;
}

// The generic path's step state, in device memory, so that a captured sequence of steps can be
// replayed without the host knowing which step it is:
//   step        the current step t (1-based)
//   live        some row was active entering step t (forward and check run only then)
//   live_after  set by step t's check when some row stays active (backward and Adam run only
//               then); reset by the end-of-step kernel
//   b1t, b2t    beta1^t, beta2^t, multiplied up step by step in double like the CPU path
//   step_size   float(lr / (1 - b1t));  sqrt_bc2 = float(sqrt(1 - b2t))  (adam_step)
struct Control {
  double b1t, b2t;
  int64_t step;
  int live, live_after;
  float step_size, sqrt_bc2;
};

// Which state lets a generic-path kernel run.
enum Gate : int {
  kGateStep = 0,    // live && step <= steps: forward and check of a regular step
  kGateUpdate = 1,  // live_after: backward and distance + Adam
  kGateFinal = 2,   // live: the final forward and check after the last step
};

__device__ __forceinline__ bool gate_open(const Control* c, int gate, int64_t steps) {
  if (gate == kGateStep) return c->live != 0 && c->step <= steps;
  if (gate == kGateUpdate) return c->live_after != 0;
  return c->live != 0;
}

template <typename Tw>
__device__ __forceinline__ Tw zero_of() {
  return from_float<Tw>(0.f);
}

}  // namespace opt
}  // namespace cuda_detail
}  // namespace lcengine
