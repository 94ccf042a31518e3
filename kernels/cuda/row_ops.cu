// SPDX-License-Identifier: Apache-2.0
// CUDA kernels of lcengine, part 2: row-wise ops on [rows, dim] buffers: gaussian_kl,
// distance_penalty, constraint_loss (per-row reductions, fused elementwise gradients) and the
// in-place latent Adam step. Semantics: csrc/lcengine_ops.h.
//
// All four share one row skeleton. A row is handled by a group of G lanes (G a power of two
// <= 32, several rows per warp when dim is small) or, for long rows when there are too few rows
// to fill the device, by a whole block. Each lane walks the row in packs of VEC elements (16-byte
// accesses on the vectorized path, which needs every buffer 16-byte aligned and dim % VEC == 0;
// otherwise VEC = 1), loading kUnroll packs before using any so that several loads are in flight.
// Per-row sums are float32: a per-lane partial, then warp shuffles (and shared memory across the
// warps of a block). Every row output is written by exactly one thread: no atomics.
#include <cmath>
#include <initializer_list>
#include <type_traits>

#include "common.cuh"

namespace lcengine {
namespace cuda_detail {
namespace {

constexpr int kGroupThreads = 256;    // block size of the group-per-row kernel
constexpr int kMaxBlockThreads = 512;  // largest block of the block-per-row kernel
// Register caps: <= 85 registers in the group kernel, so >= 768 resident threads per SM. With
// 16-byte packs (kUnroll packs per input, 48-64 bytes per lane) that keeps >= 36 KiB of loads in
// flight per SM, above what HBM3 needs (about 3.3-4.8 TB/s * ~1 us / 132 SMs = 25-36 KiB).
constexpr int kMinGroupBlocksPerSm = 3;
constexpr int kMinBlockBlocksPerSm = 1;

// ---------------------------------------------------------------------------------------------
// The per-op parts. Each Op provides:
//   kVec, kUnroll, Frag            pack width, packs loaded per lane before use, loaded data
//   row_active(row)                false: the row is neither read nor written (latent_adam)
//   reduces()                      whether a per-row sum is produced
//   load(e, col)                   read the pack starting at flat element e (= row * dim + col)
//   compute(frag, e, col)          elementwise math and stores; returns the pack's partial sum
//   finish(row, sum)               write the row output from the row's float32 sum
// ---------------------------------------------------------------------------------------------

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
  T* grad_z;         // nullptr: no gradient
  float dim_f;       // D as float, for the mean
  float grad_coef;   // 2 * grad_scale / D

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
  float step_size;      // lr / bias_c1
  float sqrt_bias_c2;   // sqrt(bias_c2)
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

// ---------------------------------------------------------------------------------------------
// Row skeleton.
// ---------------------------------------------------------------------------------------------

// This lane's part of one row: packs first, first + step, ... of the row's npacks packs.
// Returns the lane's partial sum (0 for ops without a reduction).
template <class Op>
__device__ __forceinline__ float process_row(const Op& op, int64_t row, int64_t dim,
                                             int64_t npacks, int first, int step) {
  constexpr int VEC = Op::kVec;
  constexpr int U = Op::kUnroll;
  const int64_t row_start = row * dim;
  float acc[U];
#pragma unroll
  for (int u = 0; u < U; ++u) acc[u] = 0.f;
  for (int64_t p0 = first; p0 < npacks; p0 += static_cast<int64_t>(step) * U) {
    typename Op::Frag frag[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t p = p0 + static_cast<int64_t>(u) * step;
      if (p < npacks) frag[u] = op.load(row_start + p * VEC, p * VEC);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t p = p0 + static_cast<int64_t>(u) * step;
      if (p < npacks) acc[u] += op.compute(frag[u], row_start + p * VEC, p * VEC);
    }
  }
  return pairwise_sum(acc);
}

// Group-per-row kernel: groups of G = 2^log2_group lanes, 32 / G rows per warp per iteration,
// grid-stride over rows. The loop bound is warp-uniform so every lane reaches the shuffles.
template <class Op>
__global__ void __launch_bounds__(kGroupThreads, kMinGroupBlocksPerSm)
    rows_group_kernel(const Op op, int64_t rows, int64_t dim, int64_t npacks, int log2_group) {
  const int group = 1 << log2_group;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int sub = lane & (group - 1);
  const int rows_per_warp = 32 >> log2_group;
  const int warps_per_block = static_cast<int>(blockDim.x >> 5);
  const int64_t warp_id =
      static_cast<int64_t>(blockIdx.x) * warps_per_block + static_cast<int64_t>(threadIdx.x >> 5);
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * warps_per_block * rows_per_warp;
  for (int64_t base = warp_id * rows_per_warp; base < rows; base += row_step) {
    const int64_t row = base + (lane >> log2_group);
    const bool live = row < rows && op.row_active(row);
    float acc = 0.f;
    if (live) acc = process_row(op, row, dim, npacks, sub, group);
    if (op.reduces()) {
      acc = group_sum(acc, group);
      if (live && sub == 0) op.finish(row, acc);
    }
  }
}

// Block-per-row kernel, for long rows when rows alone cannot fill the device. The row loop is
// block-uniform, so the barriers are reached by every thread.
template <class Op>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlockBlocksPerSm)
    rows_block_kernel(const Op op, int64_t rows, int64_t dim, int64_t npacks) {
  __shared__ float warp_sums[kMaxBlockThreads / 32];
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int warp = static_cast<int>(threadIdx.x >> 5);
  const int nwarps = static_cast<int>(blockDim.x >> 5);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    if (!op.row_active(row)) continue;  // block-uniform
    float acc = process_row(op, row, dim, npacks, static_cast<int>(threadIdx.x),
                            static_cast<int>(blockDim.x));
    if (op.reduces()) {
      acc = warp_sum(acc);
      if (lane == 0) warp_sums[warp] = acc;
      __syncthreads();
      if (warp == 0) {
        acc = lane < nwarps ? warp_sums[lane] : 0.f;
        acc = warp_sum(acc);
        if (lane == 0) op.finish(row, acc);
      }
      __syncthreads();  // warp_sums is reused by the next row
    }
  }
}

inline int ceil_log2(int64_t x) {
  int k = 0;
  while ((int64_t{1} << k) < x) ++k;
  return k;
}

// Picks the layout and launches. rows > 0 here.
template <class Op>
void launch_rows(const Op& op, int64_t rows, int64_t dim, cudaStream_t stream, const char* name) {
  const int64_t npacks = dim / Op::kVec;
  const int64_t sms = current_sm_count();
  // Long rows and fewer than 16 warps' worth of rows per SM: spread each row over a block.
  if (npacks > 256 && rows < sms * 16) {
    int64_t threads = int64_t{1} << ceil_log2(ceil_div(npacks, 4));
    if (threads < 64) threads = 64;
    if (threads > kMaxBlockThreads) threads = kMaxBlockThreads;
    const int t = static_cast<int>(threads);
    rows_block_kernel<Op><<<grid_size(rows, t), t, 0, stream>>>(op, rows, dim, npacks);
  } else {
    const int log2_group = ceil_log2(npacks < 32 ? npacks : 32);  // 0 for npacks <= 1
    const int64_t rows_per_block = (kGroupThreads / 32) * (32 >> log2_group);
    rows_group_kernel<Op>
        <<<grid_size(ceil_div(rows, rows_per_block), kGroupThreads), kGroupThreads, 0, stream>>>(
            op, rows, dim, npacks, log2_group);
  }
  check_launch(name);
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) for the storage type of dtype.
template <typename F>
void dispatch_dtype(DType dtype, const char* name, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      f(TypeTag<float>{});
      break;
    case DType::kFloat16:
      f(TypeTag<__half>{});
      break;
    case DType::kBFloat16:
      f(TypeTag<__nv_bfloat16>{});
      break;
    default:
      throw std::invalid_argument(std::string(name) + ": unsupported dtype code " +
                                  std::to_string(static_cast<int>(dtype)));
  }
}

// Whether the 16-byte path applies: dim a multiple of the pack width (so every row starts on a
// pack boundary) and every given pointer 16-byte aligned (nullptr counts as aligned).
template <typename T>
bool can_vectorize(int64_t dim, std::initializer_list<const void*> ptrs) {
  if (dim % kVec16<T> != 0) return false;
  for (const void* p : ptrs) {
    if (p != nullptr && !aligned16(p)) return false;
  }
  return true;
}

}  // namespace
}  // namespace cuda_detail

using cuda_detail::can_vectorize;
using cuda_detail::dispatch_dtype;
using cuda_detail::kVec16;
using cuda_detail::launch_rows;

void gaussian_kl_cuda(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                      void* grad_logvar, float grad_scale, int64_t rows, int64_t dim,
                      DType dtype, void* stream) {
  constexpr const char* kName = "gaussian_kl_cuda";
  if (rows <= 0) return;
  if ((grad_mu == nullptr) != (grad_logvar == nullptr))
    throw std::invalid_argument("gaussian_kl_cuda: grad_mu and grad_logvar must both be given");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, kName, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run = [&](auto vec_tag) {
      constexpr int V = decltype(vec_tag)::value;
      cuda_detail::GaussianKlOp<T, V> op{static_cast<const T*>(mu), static_cast<const T*>(logvar),
                                         kl_rows, static_cast<T*>(grad_mu),
                                         static_cast<T*>(grad_logvar), grad_scale};
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
      cuda_detail::ConstraintLossOp<T, V> op{static_cast<const T*>(logits),
                                             static_cast<const T*>(target),
                                             static_cast<const T*>(weight),
                                             weight_mode,
                                             static_cast<T*>(loss_elems),
                                             loss_rows,
                                             static_cast<T*>(grad_logits),
                                             grad_scale};
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
