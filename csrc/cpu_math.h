// SPDX-License-Identifier: Apache-2.0
// Branch-free float32 building blocks for the CPU kernels: storage conversions (f32, f16, bf16),
// exp, log, log1p, cos and a Philox4x32-10 block generator.
//
// Everything here is always_inline, free of calls and of data-dependent branches, so GCC can
// auto-vectorize the loops that use it (the `#pragma omp simd` loops of the CPU kernels) at
// whatever ISA the enclosing entry point is compiled for (cpu_kernels.h). libm calls (expf,
// logf, cosf) and GCC 12's `_Float16` conversions do not vectorize, which is why they are not
// used. Accuracy, checked exhaustively over every float of the range against double libm:
// exp_f < 1.0 ulp on [-104, 89]; log_f < 0.83 ulp on [1e-7, 1]; log1p_f < 1.26 ulp on
// [0, 3e38]; cos_0_2pi < 1.4e-7 absolute on [0, 2 pi].
#pragma once

#include <cstdint>
#include <cstring>

#include "philox.h"

#define LC_INLINE inline __attribute__((always_inline))
#define LC_LAMBDA_INLINE __attribute__((always_inline))

namespace lcengine {
namespace cpu {

LC_INLINE uint32_t as_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

LC_INLINE float as_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

// ---------------------------------------------------------------------------------------------
// Storage policies. Kernels are templated on one of these; all arithmetic is float32.
// ---------------------------------------------------------------------------------------------

struct F32 {
  using type = float;
  static LC_INLINE float load(float x) { return x; }
  static LC_INLINE float store(float x) { return x; }
};

// IEEE binary16. Conversions are exact (load) and round-to-nearest-even (store); NaN stays NaN
// (quieted), overflow goes to inf, subnormals are handled. Integer bit tricks after
// F. Giesen's "half_to_float_fast5" / "float_to_half_fast3_rtne", with the branches turned
// into selects.
struct F16 {
  using type = uint16_t;

  static LC_INLINE float load(uint16_t h) {
    const uint32_t magnitude = static_cast<uint32_t>(h & 0x7fffu) << 13;
    const uint32_t exponent = magnitude & 0x0f800000u;  // half exponent field, in place
    const uint32_t normal = magnitude + (112u << 23);   // rebias 15 -> 127
    const uint32_t inf_nan = magnitude + (224u << 23);  // exponent 31 -> 255
    // Zero and subnormals: m * 2^-24 computed exactly as (2^-14 + m 2^-24) - 2^-14.
    const uint32_t subnormal = as_bits(as_float(magnitude + (113u << 23)) - as_float(113u << 23));
    uint32_t bits = exponent == 0x0f800000u ? inf_nan : normal;
    bits = exponent == 0u ? subnormal : bits;
    return as_float(bits | (static_cast<uint32_t>(h & 0x8000u) << 16));
  }

  static LC_INLINE uint16_t store(float x) {
    uint32_t u = as_bits(x);
    const uint32_t sign = u & 0x80000000u;
    u ^= sign;
    // |x| >= 65536 (or inf/nan): inf, or a quiet NaN.
    const uint32_t inf_nan = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
    // |x| < 2^-14: the float adder does the round-to-nearest-even into the subnormal grid.
    const float denorm_magic = as_float(((127u - 15u) + (23u - 10u) + 1u) << 23);
    const uint32_t subnormal = as_bits(as_float(u) + denorm_magic) - as_bits(denorm_magic);
    // Normal range: rebias and round to nearest even on the 13 dropped bits (a carry into the
    // exponent is the correct rounding up, including to inf).
    const uint32_t mant_odd = (u >> 13) & 1u;
    const uint32_t normal = (u + (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd) >> 13;
    uint32_t bits = u < (113u << 23) ? subnormal : normal;
    bits = u >= (143u << 23) ? inf_nan : bits;
    return static_cast<uint16_t>(bits | (sign >> 16));
  }
};

// bfloat16: the top half of a float32. Store rounds to nearest even; NaN is quieted, never
// rounded into inf.
struct BF16 {
  using type = uint16_t;

  static LC_INLINE float load(uint16_t b) { return as_float(static_cast<uint32_t>(b) << 16); }

  static LC_INLINE uint16_t store(float x) {
    const uint32_t u = as_bits(x);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x40u;
    const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    return static_cast<uint16_t>(is_nan ? quiet_nan : rounded);
  }
};

// ---------------------------------------------------------------------------------------------
// Elementary functions: minimax polynomials (Cephes coefficients for exp and log) after an
// exact range reduction. Select-only control flow.
// ---------------------------------------------------------------------------------------------

// exp(x) for every float: overflow to +inf above ~88.72, underflow through the subnormals to +0
// below ~-103.97, NaN propagates. 2^n is applied as two normal-range factors so that the
// subnormal results and the overflow are produced by one correctly rounded multiply.
LC_INLINE float exp_f(float x) {
  // Clamps written as compare-selects so that NaN falls through both.
  x = x > 89.0f ? 89.0f : x;
  x = x < -104.0f ? -104.0f : x;
  // n = rint(x / ln2) by the 1.5 * 2^23 shifter, which also leaves n in the low mantissa bits.
  const float shifter = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + shifter;
  const float n = shifted - shifter;
  const int32_t ni = static_cast<int32_t>(as_bits(shifted) - as_bits(shifter));
  // r = x - n ln2 in two steps (the high part of ln2 has trailing zeros: n * hi is exact).
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  // n in [-150, 129]: split into halves that are both valid normal exponents.
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  const float s1 = as_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = as_float(static_cast<uint32_t>(n2 + 127) << 23);
  return (p * s1) * s2;
}

// Shared core of log: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), log x = e ln2 + log(m).
// Valid for positive, finite, normal x.
LC_INLINE float log_core(float x) {
  // Bias the bits so that the exponent field rolls over at sqrt(2) instead of 2.
  const uint32_t ix = as_bits(x) + (0x3f800000u - 0x3f3504f3u);
  const float e = static_cast<float>(static_cast<int32_t>(ix >> 23) - 127);
  const float m = as_float((ix & 0x007fffffu) + 0x3f3504f3u);
  const float f = m - 1.0f;
  const float f2 = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = p * f * f2;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * f2;
  return (f + y) + e * 0.693359375f;
}

// log(x) for x in [FLT_MIN, FLT_MAX] (the Box-Muller argument lies in [1e-7, 1]).
LC_INLINE float log_f(float x) { return log_core(x); }

// log1p(x) for x >= 0 (also +inf and NaN), given u = 1 + x and inv_u = 1 / u from the caller
// (constraint_loss already has both). The rounding error of 1 + x is put back to first order:
// log1p(x) = log(u) + (x - (u - 1)) / u.
LC_INLINE float log1p_from_u(float x, float u, float inv_u) {
  const float correction = (x - (u - 1.0f)) * inv_u;
  const float y = log_core(u) + correction;
  // +inf and NaN: the bit tricks above do not know them; return u itself (inf or NaN).
  return u < __builtin_inff() ? y : u;
}

LC_INLINE float log1p_f(float x) {
  const float u = 1.0f + x;
  return log1p_from_u(x, u, 1.0f / u);
}

// cos(theta) for theta in [0, 2 pi] (the Box-Muller angle), within 1.4e-7 absolute.
// cos theta = sin(pi/2 - theta) on [0, pi] and sin(theta - 3 pi/2) on (pi, 2 pi]: both
// arguments lie in [-pi/2, pi/2] and are exact differences (Sterbenz) except for theta < pi/4,
// where cos is flat enough that the rounding does not matter; the constants are split in two
// floats. One odd polynomial instead of sin/cos polynomials plus a quadrant select.
LC_INLINE float cos_0_2pi(float theta) {
  const float below_pi = (1.57079637f - theta) - 4.37113883e-8f;  // pi/2 - theta
  const float above_pi = (theta - 4.71238899f) + 1.19248806e-8f;  // theta - 3 pi/2
  const float x = theta <= 3.14159274f ? below_pi : above_pi;
  const float x2 = x * x;
  // sin x = x + x^3 P(x^2) on [-pi/2, pi/2]: least-maximum relative error fit, 1.2e-7.
  float p = -2.3888901523605455e-08f;
  p = p * x2 + 2.752538421191275e-06f;
  p = p * x2 - 1.984086848096922e-04f;
  p = p * x2 + 8.333330973982811e-03f;
  p = p * x2 - 1.666666716337204e-01f;
  return x + (x * x2) * p;
}

// Numerically stable sigmoid pieces shared by constraint_loss: for e = exp(-|l|) and
// inv = 1 / (1 + e), sigmoid(l) = inv for l >= 0 and e * inv otherwise.
LC_INLINE float sigmoid_from(float l, float e, float inv_one_plus_e) {
  return l >= 0.0f ? inv_one_plus_e : e * inv_one_plus_e;
}

// sigmoid(l) for every float, from the pieces above.
LC_INLINE float sigmoid_f(float l) {
  const float e = exp_f(-__builtin_fabsf(l));
  return sigmoid_from(l, e, 1.0f / (1.0f + e));
}

// ---------------------------------------------------------------------------------------------
// Adam: one definition of the element update, shared by latent_adam_ (adam.cpp) and the
// fused optimizer (optimize.cpp).
// ---------------------------------------------------------------------------------------------

// Coefficients of one torch.optim.Adam step (no weight decay) at step t.
struct AdamCoefficients {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;  // lr / (1 - beta1^t)
  float sqrt_bc2;   // sqrt(1 - beta2^t)
  float eps;
};

// From double hyper-parameters, each coefficient rounded to float once (as the reference's Python
// scalars are): 1 - beta in float from a float beta would be off by up to 1e-5 relative.
LC_INLINE AdamCoefficients adam_coefficients(double lr, double beta1, double beta2, double eps,
                                             double bias_c1, double bias_c2) {
  return AdamCoefficients{
      static_cast<float>(beta1),        static_cast<float>(1.0 - beta1),
      static_cast<float>(beta2),        static_cast<float>(1.0 - beta2),
      static_cast<float>(lr / bias_c1), static_cast<float>(__builtin_sqrt(bias_c2)),
      static_cast<float>(eps)};
}

// One element, in the order of operations of lcengine.reference.latent_adam_ref_:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  z -= step_size m / (sqrt(v) / sqrt_bc2 + eps)
LC_INLINE void adam_update(float& z, float& m, float& v, float g, const AdamCoefficients& c) {
  const float mn = m * c.beta1 + c.one_minus_beta1 * g;
  const float vn = v * c.beta2 + c.one_minus_beta2 * g * g;
  z = z - c.step_size * mn / (__builtin_sqrtf(vn) / c.sqrt_bc2 + c.eps);
  m = mn;
  v = vn;
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 over a block of consecutive counters, vectorized across counters.
// ---------------------------------------------------------------------------------------------

// Round keys of Philox4x32-10 for key (k0, k1): round r uses k0 + r A, k1 + r B (mod 2^32).
struct PhiloxKeys {
  uint64_t k0[10];
  uint64_t k1[10];

  explicit PhiloxKeys(uint64_t seed) {
    uint32_t a = static_cast<uint32_t>(seed);
    uint32_t b = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      k0[r] = a;
      k1[r] = b;
      a += philox::kKeyA;
      b += philox::kKeyB;
    }
  }
};

// w0[j], w1[j] = first two Philox4x32-10 words of counter (first + j) for j < kLen: the same
// function as philox::philox_first_two, restated for the vectorizer.
//
// Every 32-bit state word lives in the low half of a 64-bit lane, so one 32x32->64 multiply
// (vpmuludq) yields both the high word (product >> 32) and the low word (the lane itself; the
// garbage above bit 31 is never observed because vpmuludq reads only the low half and the
// final store truncates). The counter's words 2 and 3 start at zero, which removes the first
// round's B-multiply; the last round's A-product feeds only words 2 and 3, which are not output.
template <int kLen>
LC_INLINE void philox_block(uint64_t first, const PhiloxKeys& keys, uint32_t* __restrict w0,
                            uint32_t* __restrict w1) {
  constexpr uint64_t kLow = 0xffffffffull;
  constexpr uint64_t kA = philox::kRoundA;
  constexpr uint64_t kB = philox::kRoundB;
#pragma omp simd
  for (int j = 0; j < kLen; ++j) {
    const uint64_t counter = first + static_cast<uint64_t>(j);
    // Round 0 with c2 = c3 = 0.
    const uint64_t pa0 = (counter & kLow) * kA;
    uint64_t c0 = (counter >> 32) ^ keys.k0[0];
    uint64_t c1 = 0;
    uint64_t c2 = (pa0 >> 32) ^ keys.k1[0];
    uint64_t c3 = pa0;
#pragma GCC unroll 8
    for (int r = 1; r < 9; ++r) {
      const uint64_t pb = (c2 & kLow) * kB;
      const uint64_t pa = (c0 & kLow) * kA;
      c0 = (pb >> 32) ^ c1 ^ keys.k0[r];
      c2 = (pa >> 32) ^ c3 ^ keys.k1[r];
      c1 = pb;
      c3 = pa;
    }
    // Round 9: only words 0 and 1 are needed.
    const uint64_t pb9 = (c2 & kLow) * kB;
    w0[j] = static_cast<uint32_t>((pb9 >> 32) ^ c1 ^ keys.k0[9]);
    w1[j] = static_cast<uint32_t>(pb9);
  }
}

// eps = sqrt(-2 log(max(u0, 1e-7))) cos(2 pi u1) from the two Philox words (philox.h).
LC_INLINE float box_muller(uint32_t w0, uint32_t w1) {
  float u0 = philox::uint_to_uniform(w0);
  const float u1 = philox::uint_to_uniform(w1);
  u0 = u0 < philox::kMinUniform ? philox::kMinUniform : u0;
  const float radius = __builtin_sqrtf(-2.0f * log_f(u0));
  return radius * cos_0_2pi(philox::kTwoPi * u1);
}

}  // namespace cpu
}  // namespace lcengine
