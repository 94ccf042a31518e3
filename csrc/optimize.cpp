// SPDX-License-Identifier: Apache-2.0
// Fused critic-gradient latent optimizer on CPU (contract: OptimizeLatentsArgs in lcengine_ops.h).
//
// Per tile of rows, the whole step loop runs here with no Python in between:
//
//   forward   H1 = act(z W_first^T + b)               one GEMM for every critic's first layer
//             a_{l+1} = act(a_l W_l^T + b_l)          per critic, l = 1 .. L-2
//             logits  = a_{L-1} W_{L-1}^T + b_{L-1}   written into the [M, C] logit block
//   check     satisfied rows are frozen (written out, then compacted away)
//   backward  g_logits = loss_weight (sigmoid(l) - target)          (zero for frozen rows)
//             g_{a_l} = g_pre_l W_l;  g_pre_{l-1} = g_{a_l} * act'(a_l)   input gradients only;
//             act' comes from the saved post-activation (relu/leaky: a > 0;
//             softplus: sigmoid(x) = 1 - exp(-softplus(x)))
//             g_z = G_1 W_first                                    one GEMM for every critic
//   update    g = g_z + w_dist (2/D) inv_sigma_sq diff / (1 + diff^2),  Adam, in one pass over z
//
// Before every step a tile polls args.should_stop (when set): true abandons the call with
// OptimizeInterrupted (bindings.cpp turns a pending Ctrl-C into that).
//
// Matrices are row-major; BLAS is column-major, so every row-major C = A B is issued as the
// column-major C^T = B^T A^T (no copies, no transposes in memory).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cpu_kernels.h"
#include "lcengine_ops.h"

namespace lcengine {

namespace {

using cpu::active_isa;
using cpu::AdamCoefficients;
using cpu::exp_f;
using cpu::Isa;
using cpu::log1p_f;

constexpr float kLeakySlope = 0.2f;
constexpr float kSoftplusThreshold = 20.0f;  // torch's default: softplus(x) = x above it

// ---------------------------------------------------------------------------------------------
// Elementwise epilogues and streaming products: each NAME is NAME_body compiled per ISA and
// chosen at run time like every CPU kernel (cpu_kernels.h: LC_MULTIVERSION, LCENGINE_CPU_ISA).
// ---------------------------------------------------------------------------------------------

// x[i, c] = act(x[i, c] + bias[i * ld_bias + c]) for i < rows, c < cols (ld_bias 0: one bias
// row broadcast). `apply_act` false: bias only (the output layer).
template <Isa>
LC_INLINE void bias_act_body(float* __restrict x, int64_t ldx, const float* __restrict bias,
                             int64_t ld_bias, int64_t rows, int64_t cols, int act, bool apply_act) {
  for (int64_t i = 0; i < rows; ++i) {
    float* __restrict xi = x + i * ldx;
    const float* __restrict bi = bias + i * ld_bias;
    if (!apply_act) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xi[c] += bi[c];
    } else if (act == static_cast<int>(Activation::kReLU)) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float v = xi[c] + bi[c];
        xi[c] = v < 0.f ? 0.f : v;  // NaN passes through, as in torch
      }
    } else if (act == static_cast<int>(Activation::kLeakyReLU)) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float v = xi[c] + bi[c];
        xi[c] = v < 0.f ? v * kLeakySlope : v;  // NaN passes through
      }
    } else {  // softplus(v) = log(1 + exp(v)), v above the threshold passes through
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float v = xi[c] + bi[c];
        const float sp = log1p_f(exp_f(v > kSoftplusThreshold ? 0.f : v));
        xi[c] = v > kSoftplusThreshold ? v : sp;
      }
    }
  }
}
LC_MULTIVERSION(bias_act,
                (float* __restrict x, int64_t ldx, const float* __restrict bias, int64_t ld_bias,
                 int64_t rows, int64_t cols, int act, bool apply_act),
                (x, ldx, bias, ld_bias, rows, cols, act, apply_act))

// a[i, c] = g[i, c] * act'(pre) where a holds the post-activation act(pre) on entry:
//   relu: a > 0;  leaky: a > 0 ? 1 : 0.2;  softplus: sigmoid(pre) = 1 - exp(-a)
//   (for small a, -expm1(-a) ~ a (1 - a/2) keeps the relative accuracy).
template <Isa>
LC_INLINE void act_backward_body(float* __restrict a, int64_t lda, const float* __restrict g,
                                 int64_t ldg, int64_t rows, int64_t cols, int act) {
  for (int64_t i = 0; i < rows; ++i) {
    float* __restrict ai = a + i * lda;
    const float* __restrict gi = g + i * ldg;
    if (act == static_cast<int>(Activation::kReLU)) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) ai[c] = ai[c] > 0.f ? gi[c] : 0.f;
    } else if (act == static_cast<int>(Activation::kLeakyReLU)) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) ai[c] = ai[c] > 0.f ? gi[c] : gi[c] * kLeakySlope;
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float y = ai[c];
        const float big = 1.0f - exp_f(-y);
        const float small = y * (1.0f - 0.5f * y);
        ai[c] = gi[c] * (y < 1e-3f ? small : big);
      }
    }
  }
}
LC_MULTIVERSION(act_backward,
                (float* __restrict a, int64_t lda, const float* __restrict g, int64_t ldg,
                 int64_t rows, int64_t cols, int act),
                (a, lda, g, ldg, rows, cols, act))

// Rows i < m that are not satisfied (ok[i] == 0): g = g_critics + coef[d] diff / (1 + diff^2)
// (coef = w_dist 2/D inv_sigma_sq, diff = z - anchor; the anchor is row idx[i] of z_start), then
// the torch.optim.Adam update of z, m, v (cpu_math.h: adam_update).
template <Isa>
LC_INLINE void distance_adam_body(int64_t m, int64_t dim, float* __restrict z,
                                  float* __restrict mom1, float* __restrict mom2,
                                  const float* __restrict z_start, const int64_t* idx,
                                  const uint8_t* ok, const float* __restrict grad,
                                  const float* __restrict coef, const AdamCoefficients& s) {
  for (int64_t i = 0; i < m; ++i) {
    if (ok[i]) continue;
    float* __restrict zi = z + i * dim;
    float* __restrict mi = mom1 + i * dim;
    float* __restrict vi = mom2 + i * dim;
    const float* __restrict anchor = z_start + idx[i] * dim;
    const float* __restrict gi = grad + i * dim;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) {
      const float diff = zi[d] - anchor[d];
      const float g = gi[d] + coef[d] * diff / (1.0f + diff * diff);
      cpu::adam_update(zi[d], mi[d], vi[d], g, s);
    }
  }
}
LC_MULTIVERSION(distance_adam,
                (int64_t m, int64_t dim, float* __restrict z, float* __restrict mom1,
                 float* __restrict mom2, const float* __restrict z_start, const int64_t* idx,
                 const uint8_t* ok, const float* __restrict grad, const float* __restrict coef,
                 const AdamCoefficients& s),
                (m, dim, z, mom1, mom2, z_start, idx, ok, grad, coef, s))

// ---------------------------------------------------------------------------------------------
// GEMMs on row-major matrices through the column-major Fortran interface.
// ---------------------------------------------------------------------------------------------

// Up to this many rows a product streams the weights instead of calling BLAS: with one to four
// rows it is bound by reading the weights, and BLAS's GEMV-like paths read them at under half
// the machine's read bandwidth (measured: 14-15 GB/s against 33 GB/s for a 2-thread sum of the
// same bytes). The backward also skips weight rows whose gradient is zero in every row (ReLU's
// dead units), which reads about half of them.
constexpr int64_t kStreamRows = 4;

// C[i, n] = sum_q A[i, q] W[n, q] for i < m, n in [n0, n1): each weight row is read once and
// serves every row of A (which stays in L1).
template <Isa>
LC_INLINE void stream_nt_body(int64_t m, int64_t n0, int64_t n1, int64_t k,
                              const float* __restrict a, int64_t lda, const float* __restrict w,
                              int64_t ldw, float* __restrict c, int64_t ldc) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* __restrict wr = w + n * ldw;
    for (int64_t i = 0; i < m; ++i) {
      const float* __restrict ar = a + i * lda;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t q = 0; q < k; ++q) s += ar[q] * wr[q];
      c[i * ldc + n] = s;
    }
  }
}
LC_MULTIVERSION(stream_nt,
                (int64_t m, int64_t n0, int64_t n1, int64_t k, const float* __restrict a,
                 int64_t lda, const float* __restrict w, int64_t ldw, float* __restrict c,
                 int64_t ldc),
                (m, n0, n1, k, a, lda, w, ldw, c, ldc))

// C[i, q] = sum_n G[i, n] W[n, q] for i < m, q in [q0, q1): weight rows whose gradient is zero
// in every row of G are not read.
template <Isa>
LC_INLINE void stream_nn_body(int64_t m, int64_t q0, int64_t q1, int64_t nn,
                              const float* __restrict g, int64_t ldg, const float* __restrict w,
                              int64_t ldw, float* __restrict c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc + q0, c + i * ldc + q1, 0.f);
  for (int64_t n = 0; n < nn; ++n) {
    bool any = false;
    for (int64_t i = 0; i < m; ++i) any |= g[i * ldg + n] != 0.f;
    if (!any) continue;
    const float* __restrict wr = w + n * ldw;
    for (int64_t i = 0; i < m; ++i) {
      const float gi = g[i * ldg + n];
      float* __restrict cr = c + i * ldc;
#pragma omp simd
      for (int64_t q = q0; q < q1; ++q) cr[q] += gi * wr[q];
    }
  }
}
LC_MULTIVERSION(stream_nn,
                (int64_t m, int64_t q0, int64_t q1, int64_t nn, const float* __restrict g,
                 int64_t ldg, const float* __restrict w, int64_t ldw, float* __restrict c,
                 int64_t ldc),
                (m, q0, q1, nn, g, ldg, w, ldw, c, ldc))

// [begin, end) of part t of `total` items split into `parts`, boundaries on multiples of 16
// (whole cache lines of floats).
inline std::pair<int64_t, int64_t> part_range(int64_t total, int t, int parts) {
  auto at = [&](int i) {
    return i >= parts ? total : std::min(total, (total * i / parts) / 16 * 16);
  };
  return {at(t), at(t + 1)};
}

struct Blas {
  SgemmFn sgemm;
  int threads = 1;  // OpenMP threads of the streaming kernels (1 inside a parallel region)

  // fn(begin, end) over `threads` column ranges of [0, total), one per thread.
  template <typename Fn>
  void split(int64_t total, Fn&& fn) const {
    const int parts = threads;
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
    for (int t = 0; t < parts; ++t) {
      const auto [begin, end] = part_range(total, t, parts);
      fn(begin, end);
    }
  }

  // C[M, N] = A[M, K] W[N, K]^T  (a Linear layer's forward: W is [out, in])
  void nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w, int64_t ldw,
          float* c, int64_t ldc) const {
    if (m <= kStreamRows)
      split(n, [&](int64_t n0, int64_t n1) { stream_nt(m, n0, n1, k, a, lda, w, ldw, c, ldc); });
    else
      gemm("T", m, n, k, a, lda, w, ldw, c, ldc);
  }

  // C[M, N] = A[M, K] W[K, N]  (a Linear layer's input gradient: W is [out, in], K = out)
  void nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* w, int64_t ldw,
          float* c, int64_t ldc) const {
    if (m <= kStreamRows)
      split(n, [&](int64_t q0, int64_t q1) { stream_nn(m, q0, q1, k, a, lda, w, ldw, c, ldc); });
    else
      gemm("N", m, n, k, a, lda, w, ldw, c, ldc);
  }

  // Row-major C[M, N] = A[M, K] op(W) as the column-major C^T = op(W)^T A^T (transa "T": op(W)
  // = W^T). Every size fits an LP64 int: widths < 2^30 (check_optimize_args) and tiles of at
  // most kMaxTileRows rows.
  void gemm(const char* transa, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
            const float* w, int64_t ldw, float* c, int64_t ldc) const {
    const int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k);
    const int la = static_cast<int>(ldw), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    const float one = 1.f, zero = 0.f;
    sgemm(transa, "N", &mi, &ni, &ki, &one, w, &la, a, &lb, &zero, c, &lc);
  }
};

// Layout of a net's buffers inside a tile workspace.
struct NetPlan {
  int act;
  int32_t layers;
  const int64_t* widths;
  const float* const* weights;
  const float* const* biases;
  int64_t first_offset;                // column of its first layer inside H1
  int64_t output_offset;               // column of its outputs inside the logit block
  std::vector<int64_t> hidden_offset;  // per layer l >= 2 (index l): offset (per row) in `hidden`
};

// Per-row sizes of everything a tile holds, in floats.
struct Plan {
  int64_t dim, h1, c, rbw, hidden_per_row, scratch_width;
  std::vector<NetPlan> nets;
};

// Buffer layout of valid arguments (check_optimize_args).
Plan make_plan(const OptimizeLatentsArgs& a) {
  Plan p;
  p.dim = a.dim;
  p.h1 = a.first_width;
  p.c = a.num_outputs;
  p.rbw = a.row_bias ? a.row_bias_width : 0;
  p.hidden_per_row = 0;
  p.scratch_width = 1;
  int64_t first = 0, out = 0;
  for (int32_t n = 0; n < a.num_nets; ++n) {
    const OptimizeNet& net = a.nets[n];
    NetPlan np;
    np.act = static_cast<int>(net.activation);
    np.layers = net.num_layers;
    np.widths = net.widths;
    np.weights = net.weights;
    np.biases = net.biases;
    np.first_offset = first;
    np.output_offset = out;
    np.hidden_offset.assign(net.num_layers, -1);
    for (int32_t l = 2; l < net.num_layers; ++l) {  // activations a_l, l = 2 .. L-1
      np.hidden_offset[l] = p.hidden_per_row;
      p.hidden_per_row += net.widths[l];
    }
    for (int32_t l = 1; l < net.num_layers; ++l)
      p.scratch_width = std::max(p.scratch_width, net.widths[l]);
    first += net.widths[1];
    out += net.widths[net.num_layers];
    p.nets.push_back(std::move(np));
  }
  return p;
}

// The state of one tile of (at most `cap`) rows; rows [0, m) are the active ones.
struct Tile {
  const OptimizeLatentsArgs& a;
  const Plan& p;
  Blas blas;
  int64_t cap;
  // Per-row state follows its row through compaction; what only needs reading (anchor = z_start,
  // targets, loss weights, requirements) is read from the caller's arrays at row idx[i].
  std::vector<float> z, mom1, mom2, grad, rbias, logits, glog, h1, hidden, scratch;
  std::vector<int64_t> idx;
  std::vector<uint8_t> ok;

  Tile(const OptimizeLatentsArgs& args, const Plan& plan, int64_t capacity, int threads)
      : a(args), p(plan), blas{args.sgemm, threads}, cap(capacity) {
    const int64_t d = p.dim, c = p.c;
    z.resize(cap * d);
    mom1.resize(cap * d);
    mom2.resize(cap * d);
    grad.resize(cap * d);
    rbias.resize(cap * std::max<int64_t>(p.rbw, 1));
    logits.resize(cap * c);
    glog.resize(cap * c);
    h1.resize(cap * p.h1);
    hidden.resize(cap * std::max<int64_t>(p.hidden_per_row, 1));
    scratch.resize(cap * p.scratch_width);
    idx.resize(cap);
    ok.resize(cap);
  }

  // Loads rows [r0, r0 + m) of the problem.
  void load(int64_t r0, int64_t m) {
    const int64_t d = p.dim;
    std::memcpy(z.data(), a.z_start + r0 * d, sizeof(float) * m * d);
    std::fill(mom1.begin(), mom1.begin() + m * d, 0.f);
    std::fill(mom2.begin(), mom2.begin() + m * d, 0.f);
    if (p.rbw) std::memcpy(rbias.data(), a.row_bias + r0 * p.rbw, sizeof(float) * m * p.rbw);
    for (int64_t i = 0; i < m; ++i) idx[i] = r0 + i;
  }

  // logits[0:m] = both critics at z[0:m]; keeps every hidden activation for backward.
  void forward(int64_t m) {
    const int64_t d = p.dim, h1w = p.h1, c = p.c;
    blas.nt(m, h1w, d, z.data(), d, a.w_first, d, h1.data(), h1w);
    for (size_t n = 0; n < p.nets.size(); ++n) {
      const NetPlan& net = p.nets[n];
      const int64_t w1 = net.widths[1];
      float* first = h1.data() + net.first_offset;
      if (n == 0 && p.rbw)
        bias_act(first, h1w, rbias.data(), p.rbw, m, w1, net.act, true);
      else
        bias_act(first, h1w, a.b_first + net.first_offset, 0, m, w1, net.act, true);
      const float* in = first;
      int64_t ld_in = h1w;
      for (int32_t l = 1; l < net.layers; ++l) {
        const int64_t k = net.widths[l], nout = net.widths[l + 1];
        const bool last = l == net.layers - 1;
        float* out =
            last ? logits.data() + net.output_offset : hidden.data() + net.hidden_offset[l + 1] * m;
        const int64_t ld_out = last ? c : nout;
        blas.nt(m, nout, k, in, ld_in, net.weights[l], k, out, ld_out);
        bias_act(out, ld_out, net.biases[l], 0, m, nout, net.act, !last);
        in = out;
        ld_in = ld_out;
      }
    }
  }

  // ok[i] = row i satisfied; glog[i] = loss gradient at the logits (0 where satisfied).
  // Returns the number of satisfied rows.
  int64_t check(int64_t m) {
    const int64_t c = p.c;
    int64_t n_ok = 0;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t r0 = idx[i] * c;
      bool sat = true;
      for (int64_t j = 0; j < c; ++j) {
        const float s = cpu::sigmoid_f(logits[i * c + j]);
        const int8_t r = a.requirement[r0 + j];
        if (r > 0)
          sat = sat && (s > a.upper[j]);
        else if (r < 0)
          sat = sat && (s < a.lower[j]);
        glog[i * c + j] = a.loss_weight[r0 + j] * (s - a.target[r0 + j]);
      }
      ok[i] = sat;
      n_ok += sat;
      if (sat)
        for (int64_t j = 0; j < c; ++j) glog[i * c + j] = 0.f;
    }
    return n_ok;
  }

  // grad[0:m] = d(critic losses)/dz; overwrites the activations with their gradients.
  void backward(int64_t m) {
    const int64_t d = p.dim, h1w = p.h1, c = p.c;
    for (const NetPlan& net : p.nets) {
      const float* g_in = glog.data() + net.output_offset;  // gradient at layer l's output
      int64_t ld_g = c;
      for (int32_t l = net.layers - 1; l >= 1; --l) {
        const int64_t k = net.widths[l + 1], nin = net.widths[l];
        // scratch = g_out W_l: gradient at a_l (the input of layer l)
        blas.nn(m, nin, k, g_in, ld_g, net.weights[l], nin, scratch.data(), nin);
        float* act_l =
            l == 1 ? h1.data() + net.first_offset : hidden.data() + net.hidden_offset[l] * m;
        const int64_t ld_act = l == 1 ? h1w : nin;
        act_backward(act_l, ld_act, scratch.data(), nin, m, nin, net.act);  // -> g_pre_{l-1}
        g_in = act_l;
        ld_g = ld_act;
      }
    }
    blas.nn(m, d, h1w, h1.data(), h1w, a.w_first, d, grad.data(), d);
  }

  void write_row(int64_t i, int64_t steps_done, bool converged) {
    const int64_t d = p.dim, c = p.c, r = idx[i];
    std::memcpy(a.z_out + r * d, z.data() + i * d, sizeof(float) * d);
    std::memcpy(a.logits_out + r * c, logits.data() + i * c, sizeof(float) * c);
    a.steps_taken[r] = steps_done;
    a.converged[r] = converged ? 1 : 0;
  }

  // Drops the rows flagged in ok[0:m] (stable); returns the new m.
  int64_t compact(int64_t m) {
    const int64_t d = p.dim, c = p.c;
    int64_t j = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (ok[i]) continue;
      if (i != j) {
        std::memcpy(&z[j * d], &z[i * d], sizeof(float) * d);
        std::memcpy(&mom1[j * d], &mom1[i * d], sizeof(float) * d);
        std::memcpy(&mom2[j * d], &mom2[i * d], sizeof(float) * d);
        if (p.rbw) std::memcpy(&rbias[j * p.rbw], &rbias[i * p.rbw], sizeof(float) * p.rbw);
        idx[j] = idx[i];
      }
      ++j;
    }
    return j;
  }

  // The whole step loop for rows [r0, r0 + m0).
  void run(int64_t r0, int64_t m0, const std::vector<float>& coef) {
    load(r0, m0);
    int64_t m = m0;
    double b1t = 1.0, b2t = 1.0;
    for (int64_t t = 1; t <= a.steps && m > 0; ++t) {
      if (a.should_stop && a.should_stop(a.should_stop_ctx)) throw OptimizeInterrupted();
      forward(m);
      const int64_t n_ok = check(m);
      for (int64_t i = 0; i < m; ++i)
        if (ok[i]) write_row(i, t - 1, true);
      if (n_ok == m) {
        m = 0;
        break;
      }
      backward(m);
      b1t *= a.beta1;
      b2t *= a.beta2;
      const AdamCoefficients s =
          cpu::adam_coefficients(a.lr, a.beta1, a.beta2, a.eps, 1.0 - b1t, 1.0 - b2t);
      distance_adam(m, p.dim, z.data(), mom1.data(), mom2.data(), a.z_start, idx.data(), ok.data(),
                    grad.data(), coef.data(), s);
      if (n_ok) m = compact(m);
    }
    if (m > 0) {  // used every step: one more check at the final latents
      forward(m);
      check(m);
      for (int64_t i = 0; i < m; ++i) write_row(i, a.steps, ok[i] != 0);
    }
  }
};

// Weights above this many bytes do not stay in a core's share of the caches.
constexpr int64_t kCachedWeightBytes = int64_t{8} << 20;
// Automatic tiles never split a batch into tiles under this many rows (smaller tiles fall to
// the streaming products, which read every weight once per tile).
constexpr int64_t kMinSplitRows = 8;
// Tiles hold at most this many rows (every GEMM size then fits BLAS's 32-bit integers).
constexpr int64_t kMaxTileRows = int64_t{1} << 20;

}  // namespace

void optimize_latents_cpu(const OptimizeLatentsArgs& a) {
  check_optimize_args(a, "optimize_latents_cpu");
  if (a.rows == 0) return;
  if (!a.sgemm) throw std::invalid_argument("optimize_latents_cpu: no sgemm function");
  const Plan plan = make_plan(a);

  // coef[d] = w_dist * 2 / D * inv_sigma_sq[d]: the distance gradient is coef diff / (1 + diff^2)
  std::vector<float> coef(a.dim);
  for (int64_t d = 0; d < a.dim; ++d)
    coef[d] = static_cast<float>(static_cast<double>(a.w_dist) * 2.0 / static_cast<double>(a.dim) *
                                 a.inv_sigma_sq[d]);

  const int threads = a.cpu_threads > 0 ? a.cpu_threads : cpu::max_threads();
  int64_t weight_floats = plan.h1 * plan.dim;
  for (const NetPlan& net : plan.nets)
    for (int32_t l = 1; l < net.layers; ++l) weight_floats += net.widths[l] * net.widths[l + 1];
  const bool big_weights = weight_floats * 4 > kCachedWeightBytes;
  int64_t tile = std::min(a.cpu_tile_rows, kMaxTileRows);
  if (tile <= 0) {
    // Keep a tile's activations and state near 1 MiB (this core's share of L2). Weights that
    // do not fit in a share of L3 are streamed from memory once per GEMM, so such tiles take at
    // least 128 rows (>= 64 FLOP per weight byte); small critics at least 32.
    const int64_t row_floats =
        plan.h1 + plan.hidden_per_row + plan.scratch_width + 4 * plan.dim + plan.rbw + 2 * plan.c;
    const int64_t min_tile = big_weights ? 128 : 32;
    tile = (int64_t{1} << 18) / std::max<int64_t>(row_floats, 1);
    tile = std::min<int64_t>(std::max(min_tile, tile / 32 * 32), 512);  // whole BLAS panels
    // Enough tiles for every thread when the batch allows it.
    if (threads > 1 && a.rows >= 2 * kMinSplitRows)
      tile = std::min(tile, std::max(kMinSplitRows, (a.rows + threads - 1) / threads));
  }
  tile = std::max<int64_t>(1, std::min(tile, a.rows));
  const int64_t num_tiles = (a.rows + tile - 1) / tile;

  if (threads > 1 && num_tiles > 1) {
    // One tile per thread at a time, BLAS single-threaded inside (no oversubscription).
    const int workers = static_cast<int>(std::min<int64_t>(threads, num_tiles));
    std::string error;
    std::atomic<bool> interrupted{false};
#pragma omp parallel num_threads(workers)
    {
      const int previous = a.blas_set_threads_local ? a.blas_set_threads_local(1) : 0;
      std::unique_ptr<Tile> work;
      try {
        work = std::make_unique<Tile>(a, plan, tile, 1);
      } catch (const std::exception& exc) {
#pragma omp critical(lc_optimize_error)
        error = exc.what();
      }
      // Exceptions may not leave a worksharing loop: each iteration catches its own.
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < num_tiles; ++t) {
        if (!work || interrupted.load(std::memory_order_relaxed)) continue;
        try {
          const int64_t r0 = t * tile;
          work->run(r0, std::min(tile, a.rows - r0), coef);
        } catch (const OptimizeInterrupted&) {
          interrupted.store(true, std::memory_order_relaxed);
        } catch (const std::exception& exc) {
#pragma omp critical(lc_optimize_error)
          error = exc.what();
        }
      }
      if (a.blas_set_threads_local) a.blas_set_threads_local(previous);
    }
    if (!error.empty()) throw std::runtime_error(error);
    if (interrupted.load()) throw OptimizeInterrupted();
  } else {
    // One tile (or one thread). Only weights too big for one core's caches are worth BLAS's own
    // threads: forking per GEMM for small critics costs more than it gains, and on a loaded
    // machine a descheduled BLAS worker stalls every GEMM (measured: 50 ms instead of 1.5 ms
    // per step at B=64, D=64, 4x256).
    const int previous =
        (!big_weights && a.blas_set_threads_local) ? a.blas_set_threads_local(1) : -1;
    try {
      Tile work(a, plan, tile, big_weights ? threads : 1);
      for (int64_t t = 0; t < num_tiles; ++t) {
        const int64_t r0 = t * tile;
        work.run(r0, std::min(tile, a.rows - r0), coef);
      }
    } catch (...) {
      if (previous >= 0) a.blas_set_threads_local(previous);
      throw;
    }
    if (previous >= 0) a.blas_set_threads_local(previous);
  }
}

}  // namespace lcengine
