// SPDX-License-Identifier: Apache-2.0
// Philox4x32-10 counter-based generator and the normal transform used by every backend.
// The stream is defined by Triton's tl.randn(seed, offset) with a 64-bit offset:
//   counter = (offset_lo, offset_hi, 0, 0), key = (seed_lo, seed_hi), 10 rounds;
//   u_k = float(c_k as int32, negatives mapped to -c-1) * 4.6566127342e-10   (k = 0, 1)
//   eps = sqrt(-2 log(max(u_0, 1e-7))) * cos(2 pi u_1)
// Host and device code share this header.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LC_HD __host__ __device__ __forceinline__
#else
#define LC_HD inline __attribute__((always_inline))
#endif

namespace lcengine {
namespace philox {

constexpr uint32_t kKeyA = 0x9E3779B9u;
constexpr uint32_t kKeyB = 0xBB67AE85u;
constexpr uint32_t kRoundA = 0xD2511F53u;
constexpr uint32_t kRoundB = 0xCD9E8D57u;
constexpr float kUniformScale = 4.6566127342e-10f;
constexpr float kTwoPi = 6.283185307179586f;
constexpr float kMinUniform = 1.0e-7f;

struct Pair {
  uint32_t c0, c1;
};

// High and low 32-bit words of the 64-bit product a * b.
LC_HD void mul_hi_lo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  // ptxas fuses this pair into one IMAD.WIDE.U32; the uint64 form below costs two more
  // integer instructions per round on the device.
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t prod = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(prod >> 32);
  lo = static_cast<uint32_t>(prod);
#endif
}

// The first two output words of Philox4x32-10 for counter (lo, hi, 0, 0) and key (k0, k1).
LC_HD Pair philox_first_two(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1) {
  uint32_t c2 = 0u, c3 = 0u;
#if defined(__CUDA_ARCH__)  // host compilers warn on it (-Wunknown-pragmas); -O3 unrolls anyway
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi_b, lo_b, hi_a, lo_a;
    mul_hi_lo(kRoundB, c2, hi_b, lo_b);
    mul_hi_lo(kRoundA, c0, hi_a, lo_a);
    const uint32_t n0 = hi_b ^ c1 ^ k0;
    const uint32_t n2 = hi_a ^ c3 ^ k1;
    c1 = lo_b;
    c3 = lo_a;
    c0 = n0;
    c2 = n2;
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return Pair{c0, c1};
}

// Triton's uint_to_uniform_float for 32-bit words.
LC_HD float uint_to_uniform(uint32_t bits) {
  int32_t x = static_cast<int32_t>(bits);
  x = x < 0 ? ~x : x;  // == -x - 1, without the overflow at INT32_MIN
  return static_cast<float>(x) * kUniformScale;
}

}  // namespace philox
}  // namespace lcengine
