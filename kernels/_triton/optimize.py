# SPDX-License-Identifier: Apache-2.0
"""Kernels of the fused latent optimizer: one optimizer step is

    forward   _linear_fwd_kernel     h = act(x W^T + bias | row_bias)    tl.dot, fused epilogue
    check     _loss_check_kernel     per row: probabilities, satisfied -> frozen, d loss / d logit
    backward  _linear_bwd_kernel     g_in = (g W) * act'(a_in)           act' from the saved a_in
    update    _first_bwd_adam_kernel g_z = G1 W_first, + distance gradient, Adam, masked by row

(csrc/lcengine_ops.h, ``OptimizeLatentsArgs``, states the semantics; the loop lives in
``lcengine/ops/optimize_latents/triton.py``). Nothing here reads a host scalar that changes from
step to step: the step number is a device counter that the check kernel advances and the Adam
epilogue reads, and Adam's per-step factors come from a device table, so a chunk of steps can be
captured once in a CUDA graph and replayed.

Every width (D, H, C) is a constexpr: a critic's widths are fixed, so each layer compiles once,
and the interpreter (TRITON_INTERPRET=1) needs static loop bounds anyway (triton#9171). Rows (B)
stay runtime. Weights may be float32 (``tl.dot`` at ``FP32_PRECISION``) or bfloat16 (the
activations are rounded to bf16 for the product, accumulation stays fp32).

Only relative imports here: this folder is the subpackage ``lcengine._triton`` in the wheel.
"""

# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import is_interpreted, wrap
from ._math import _log1p_nonneg

RELU, SOFTPLUS, LEAKY_RELU = 0, 1, 2  # lcengine.ops.optimize_latents.prepare.ACTIVATION_CODES
LEAKY_SLOPE = tl.constexpr(0.2)  # lcengine.reference.LEAKY_SLOPE, the contract's leaky ReLU slope
SOFTPLUS_THRESHOLD = tl.constexpr(20.0)  # torch's default: softplus(x) = x above it

# fp32 x fp32 products on tensor cores: "tf32x3" splits each operand in a high and a low tf32
# part (three MMAs), close to fp32 accuracy at several times the speed of "ieee" FMA loops.
FP32_PRECISION = "tf32x3"

# GEMM tiles on the GPU (the interpreter uses the smallest legal tiles: it runs programs one by
# one in numpy, where small tiles cost nothing and exercise the masks).
# fp32 at tf32x3 holds three operand splits per MMA: 8 warps keep a 64x64 tile under 255
# registers without spills (tests/native/triton_aot.py checks it for sm_80 and sm_90).
GPU_TILE = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 3}
GPU_TILE_BF16 = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3}
CHECK_TILE_ELEMS = 2048  # logits per loss/check program (4 warps)
INTERPRETER_TILE = {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}


@triton.jit
def _activate(x, ACT: tl.constexpr):
    # NaN passes through every branch (as in torch): a diverged critic is never "satisfied"
    if ACT == 0:
        y = tl.where(x < 0.0, 0.0, x)
    elif ACT == 2:
        y = tl.where(x < 0.0, x * LEAKY_SLOPE, x)
    else:  # softplus: log1p(exp(x)) below the threshold, x above (and NaN)
        y = tl.where(
            (x > SOFTPLUS_THRESHOLD) | (x != x),
            x,
            _log1p_nonneg(tl.exp(tl.minimum(x, SOFTPLUS_THRESHOLD))),
        )
    return y


@triton.jit
def _activation_slope(a, ACT: tl.constexpr):
    """act'(pre) from the saved post-activation a = act(pre)."""
    if ACT == 0:
        s = tl.where(a > 0.0, 1.0, 0.0)
    elif ACT == 2:
        s = tl.where(a > 0.0, 1.0, LEAKY_SLOPE)
    else:  # sigmoid(pre) = 1 - exp(-softplus(pre)); a (1 - a/2) for tiny a keeps its precision
        s = tl.where(a < 1.0e-3, a * (1.0 - 0.5 * a), 1.0 - tl.exp(-a))
    return s


@triton.jit
def _round_bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), kept in float32 (finite x)."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _mma(x, w, acc, BF16: tl.constexpr, EMULATE_BF16: tl.constexpr, PRECISION: tl.constexpr):
    """acc + x @ w. BF16: w is bfloat16 and x is rounded to bfloat16 for the product (fp32
    accumulation). EMULATE_BF16 (the interpreter, whose bf16 tl.dot multiplies raw bit patterns)
    computes the same products in float32: bf16 x bf16 products are exact there."""
    if BF16:
        if EMULATE_BF16:
            acc = tl.dot(_round_bf16(x), w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(x.to(tl.bfloat16), w, acc)
    else:
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _grad_times_weight(
    g_ptr,
    ldg,
    w_ptr,
    rows,
    row_mask,
    cols,
    col_mask,
    N: tl.constexpr,
    K: tl.constexpr,
    BF16: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """The [BM, BK] tile (rows, cols) of g[M, N] W[N, K] (W row-major [N, K]): an input
    gradient, reduced over the layer's N outputs."""
    acc = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)  # [BN]
        n_mask = ns < N
        g = tl.load(
            g_ptr + rows[:, None] * ldg + ns[None, :],
            mask=row_mask[:, None] & n_mask[None, :],
            other=0.0,
        )  # [BM, BN]
        w = tl.load(
            w_ptr + ns[:, None] * K + cols[None, :],
            mask=n_mask[:, None] & col_mask[None, :],
            other=0.0,
        )  # [BN, BK]
        acc = _mma(g, w, acc, BF16, EMULATE_BF16, PRECISION)
    return acc


@triton.jit
def _any_active(active_ptr, rows, row_mask):
    flags = tl.load(active_ptr + rows, mask=row_mask, other=0).to(tl.int32)
    return tl.max(flags, axis=0) > 0


@triton.jit
def _linear_fwd_kernel(
    x_ptr,
    ldx,
    w_ptr,
    b_ptr,
    rb_ptr,
    ld_rb,
    out_ptr,
    ldo,
    active_ptr,
    M,
    N: tl.constexpr,
    K: tl.constexpr,
    RB_N: tl.constexpr,
    ACT: tl.constexpr,
    APPLY_ACT: tl.constexpr,
    SKIP_INACTIVE: tl.constexpr,
    BF16: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[M, N] = act(x[M, K] W[N, K]^T + bias), bias = row_bias[m, n] for n < RB_N, b[n]
    otherwise; without APPLY_ACT (an output layer) no activation. With SKIP_INACTIVE a tile
    whose rows are all frozen is not computed (its rows keep their last values, never read)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    row_mask = rows < M
    col_mask = cols < N
    run = True
    if SKIP_INACTIVE:
        run = _any_active(active_ptr, rows, row_mask)
    if run:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)  # [BK]
            k_mask = ks < K
            x = tl.load(
                x_ptr + rows[:, None] * ldx + ks[None, :],
                mask=row_mask[:, None] & k_mask[None, :],
                other=0.0,
            )  # [BM, BK]
            w = tl.load(
                w_ptr + cols[None, :] * K + ks[:, None],
                mask=col_mask[None, :] & k_mask[:, None],
                other=0.0,
            )  # [BK, BN] = W^T
            acc = _mma(x, w, acc, BF16, EMULATE_BF16, PRECISION)
        bias = tl.load(b_ptr + cols, mask=col_mask, other=0.0)  # [BN]
        if RB_N > 0:
            in_rb = cols[None, :] < RB_N
            rb = tl.load(
                rb_ptr + rows[:, None] * ld_rb + cols[None, :],
                mask=row_mask[:, None] & in_rb,
                other=0.0,
            )  # [BM, BN]
            acc = acc + tl.where(in_rb, rb, bias[None, :])
        else:
            acc = acc + bias[None, :]
        if APPLY_ACT:
            acc = _activate(acc, ACT)
        tl.store(
            out_ptr + rows[:, None] * ldo + cols[None, :],
            acc,
            mask=row_mask[:, None] & col_mask[None, :],
        )


@triton.jit
def _linear_bwd_kernel(
    g_ptr,
    ldg,
    w_ptr,
    a_ptr,
    lda,
    out_ptr,
    ldo,
    active_ptr,
    M,
    N: tl.constexpr,
    K: tl.constexpr,
    ACT: tl.constexpr,
    BF16: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[M, K] = (g[M, N] W[N, K]) * act'(a[M, K]): a hidden Linear layer's input gradient
    through the activation that produced its input a (saved in the forward). Tiles of frozen
    rows are skipped (their gradient rows are zero and never applied)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)  # [BK] input features
    row_mask = rows < M
    col_mask = cols < K
    if _any_active(active_ptr, rows, row_mask):
        acc = _grad_times_weight(
            g_ptr,
            ldg,
            w_ptr,
            rows,
            row_mask,
            cols,
            col_mask,
            N,
            K,
            BF16,
            EMULATE_BF16,
            PRECISION,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
        )
        mask = row_mask[:, None] & col_mask[None, :]
        a = tl.load(a_ptr + rows[:, None] * lda + cols[None, :], mask=mask, other=0.0)
        tl.store(
            out_ptr + rows[:, None] * ldo + cols[None, :],
            acc * _activation_slope(a, ACT),
            mask=mask,
        )


@triton.jit
def _first_bwd_adam_kernel(
    g_ptr,
    w_ptr,
    z_ptr,
    z0_ptr,
    m_ptr,
    v_ptr,
    coef_ptr,
    active_ptr,
    step_ptr,
    table_ptr,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    eps,
    M,
    H: tl.constexpr,
    D: tl.constexpr,
    BF16: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """The step's update, for the rows still active:

        g = G1[M, H] W_first[H, D] + coef[d] diff / (1 + diff^2),  diff = z - z_start
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        z -= step_size(t) m / (sqrt(v) / sqrt_bc2(t) + eps)

    coef = w_dist (2 / D) / sigma_bar^2; t is the device step counter, (step_size, sqrt_bc2) row
    t of the device table (folded on the host in float64)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)  # [BK] latent dimensions
    row_mask = rows < M
    col_mask = cols < D
    active = tl.load(active_ptr + rows, mask=row_mask, other=0) != 0  # [BM]
    if tl.max(active.to(tl.int32), axis=0) > 0:
        acc = _grad_times_weight(
            g_ptr,
            H,
            w_ptr,
            rows,
            row_mask,
            cols,
            col_mask,
            H,
            D,
            BF16,
            EMULATE_BF16,
            PRECISION,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
        )
        t = tl.load(step_ptr)
        step_size = tl.load(table_ptr + 2 * t)
        sqrt_bc2 = tl.load(table_ptr + 2 * t + 1)
        mask = (row_mask & active)[:, None] & col_mask[None, :]
        offs = rows[:, None] * D + cols[None, :]
        z = tl.load(z_ptr + offs, mask=mask, other=0.0)
        diff = z - tl.load(z0_ptr + offs, mask=mask, other=0.0)
        coef = tl.load(coef_ptr + cols, mask=col_mask, other=0.0)[None, :]
        g = acc + tl.div_rn(coef * diff, 1.0 + diff * diff)
        m = tl.load(m_ptr + offs, mask=mask, other=0.0) * beta1 + one_minus_beta1 * g
        v = tl.load(v_ptr + offs, mask=mask, other=0.0) * beta2 + one_minus_beta2 * (g * g)
        denom = tl.div_rn(tl.sqrt_rn(v), sqrt_bc2) + eps
        tl.store(z_ptr + offs, z - tl.div_rn(step_size * m, denom), mask=mask)
        tl.store(m_ptr + offs, m, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)


@triton.jit
def _loss_check_kernel(
    logits_ptr,
    target_ptr,
    weight_ptr,
    req_ptr,
    upper_ptr,
    lower_ptr,
    active_ptr,
    converged_ptr,
    steps_ptr,
    g_ptr,
    step_ptr,
    M,
    C: tl.constexpr,
    FINAL: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Per row: p = sigmoid(logits); satisfied = every column with requirement +1 above upper,
    -1 below lower. Step mode: an active satisfied row is frozen (active 0, converged 1); the
    other active rows count a step and get d loss / d logit = loss_weight (p - target), frozen
    rows 0; program 0 advances the step counter. FINAL: converged |= active & satisfied."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BR]
    cols = tl.arange(0, BLOCK_C)  # [BC]
    row_mask = rows < M
    col_mask = cols < C
    mask = row_mask[:, None] & col_mask[None, :]
    offs = rows[:, None] * C + cols[None, :]
    lg = tl.load(logits_ptr + offs, mask=mask, other=0.0)
    # p = sigmoid(l) as the eager reference computes it, torch.sigmoid's 1 / (1 + exp(-l)), with
    # an IEEE-rounded division: `/` on float32 is the approximate div.full.f32 on NVIDIA GPUs,
    # which could flip a decision at the threshold. Below l = -88 p is 0 (torch: 0 or a
    # denormal; either is below every lower threshold and above no upper one), without exp
    # overflowing; where keeps NaN (a diverged critic is never satisfied).
    x = -lg
    p = tl.div_rn(1.0, 1.0 + tl.exp(tl.where(x > 88.0, 0.0, x)))
    p = tl.where(x > 88.0, 0.0, p)
    req = tl.load(req_ptr + offs, mask=mask, other=0).to(tl.int32)
    upper = tl.load(upper_ptr + cols, mask=col_mask, other=0.0)[None, :]
    lower = tl.load(lower_ptr + cols, mask=col_mask, other=1.0)[None, :]
    ok = tl.where(req > 0, p > upper, tl.where(req < 0, p < lower, True))
    satisfied = tl.min(ok.to(tl.int32), axis=1) > 0  # [BR]
    active = tl.load(active_ptr + rows, mask=row_mask, other=0) != 0
    converged = tl.load(converged_ptr + rows, mask=row_mask, other=0) != 0
    if FINAL:
        tl.store(
            converged_ptr + rows, (converged | (active & satisfied)).to(tl.uint8), mask=row_mask
        )
    else:
        update = active & ~satisfied
        tl.store(active_ptr + rows, update.to(tl.uint8), mask=row_mask)
        tl.store(
            converged_ptr + rows, (converged | (active & satisfied)).to(tl.uint8), mask=row_mask
        )
        steps = tl.load(steps_ptr + rows, mask=row_mask, other=0)
        tl.store(steps_ptr + rows, steps + update.to(tl.int64), mask=row_mask)
        tgt = tl.load(target_ptr + offs, mask=mask, other=0.0)
        wgt = tl.load(weight_ptr + offs, mask=mask, other=0.0)
        g = tl.where(update[:, None], wgt * (p - tgt), 0.0)
        tl.store(g_ptr + offs, g, mask=mask)
        if pid == 0:
            tl.store(step_ptr, tl.load(step_ptr) + 1)


def gemm_tile(*, bf16: bool, n: int, interpreted: bool) -> dict:
    """Tile and launch options of a GEMM kernel whose N (output width in the forward, reduced
    width in the backward) is ``n``: narrow layers (the logits) get a narrower BLOCK_N."""
    if interpreted:
        return dict(INTERPRETER_TILE)
    cfg = dict(GPU_TILE_BF16 if bf16 else GPU_TILE)
    cfg["BLOCK_N"] = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(n)))
    return cfg


def _tile(kernel, w: torch.Tensor, n: int) -> dict:
    return gemm_tile(bf16=_is_bf16(w), n=n, interpreted=is_interpreted(kernel))


def _emulate(kernel) -> bool:
    return is_interpreted(kernel)


def _is_bf16(w: torch.Tensor) -> bool:
    return w.dtype == torch.bfloat16


def linear_fwd(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    active: torch.Tensor,
    *,
    act: int,
    apply_act: bool,
    skip_inactive: bool,
    row_bias: Optional[torch.Tensor] = None,
) -> None:
    """out = act(x W^T + b) (row_bias replaces b[:row_bias.shape[1]] per row).

    Args:
        x: input rows, unit column stride (may be a column slice). # [M, K]
        w: weight, contiguous float32 or bfloat16. # [N, K]
        b: bias, float32. # [N]
        out: output rows, unit column stride. # [M, N]
        active: uint8 row flags. # [M]
        act: activation code; apply_act False for an output layer.
        skip_inactive: leave tiles of frozen rows uncomputed.
        row_bias: None or per-row bias of the leading columns. # [M, RB_N]
    """
    m, k = x.shape
    n = w.shape[0]
    cfg = _tile(_linear_fwd_kernel, w, n)
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(n, cfg["BLOCK_N"]))
    rb_n = 0 if row_bias is None else row_bias.shape[1]
    wrap(_linear_fwd_kernel)[grid](
        x,
        x.stride(0),
        w,
        b,
        row_bias if row_bias is not None else b,
        row_bias.stride(0) if row_bias is not None else 0,
        out,
        out.stride(0),
        active,
        m,
        N=n,
        K=k,
        RB_N=rb_n,
        ACT=act,
        APPLY_ACT=apply_act,
        SKIP_INACTIVE=skip_inactive,
        BF16=_is_bf16(w),
        EMULATE_BF16=_emulate(_linear_fwd_kernel),
        PRECISION=FP32_PRECISION,
        **cfg,
    )


def linear_bwd(
    g: torch.Tensor,
    w: torch.Tensor,
    a: torch.Tensor,
    out: torch.Tensor,
    active: torch.Tensor,
    *,
    act: int,
) -> None:
    """out = (g W) * act'(a): the input gradient of a hidden layer. # g [M, N], w [N, K],
    a and out [M, K] (unit column stride, may be column slices)."""
    m, n = g.shape
    k = w.shape[1]
    cfg = _tile(_linear_bwd_kernel, w, n)
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(k, cfg["BLOCK_K"]))
    wrap(_linear_bwd_kernel)[grid](
        g,
        g.stride(0),
        w,
        a,
        a.stride(0),
        out,
        out.stride(0),
        active,
        m,
        N=n,
        K=k,
        ACT=act,
        BF16=_is_bf16(w),
        EMULATE_BF16=_emulate(_linear_bwd_kernel),
        PRECISION=FP32_PRECISION,
        **cfg,
    )


def first_bwd_adam(
    g1: torch.Tensor,
    w_first: torch.Tensor,
    z: torch.Tensor,
    z0: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    coef: torch.Tensor,
    active: torch.Tensor,
    step: torch.Tensor,
    table: torch.Tensor,
    *,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """The latent gradient through the stacked first layers, the distance gradient and the Adam
    step of the active rows, in one kernel. # g1 [M, H], w_first [H, D], z, z0, exp_avg,
    exp_avg_sq [M, D] contiguous float32, coef [D], active [M] uint8, step [1] int32 (the step
    being taken), table [steps + 1, 2] float32 (step_size, sqrt_bc2)."""
    m, h = g1.shape
    d = w_first.shape[1]
    cfg = _tile(_first_bwd_adam_kernel, w_first, h)
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(d, cfg["BLOCK_K"]))
    wrap(_first_bwd_adam_kernel)[grid](
        g1,
        w_first,
        z,
        z0,
        exp_avg,
        exp_avg_sq,
        coef,
        active,
        step,
        table,
        float(beta1),
        1.0 - float(beta1),
        float(beta2),
        1.0 - float(beta2),
        float(eps),
        m,
        H=h,
        D=d,
        BF16=_is_bf16(w_first),
        EMULATE_BF16=_emulate(_first_bwd_adam_kernel),
        PRECISION=FP32_PRECISION,
        **cfg,
    )


def loss_check(
    logits: torch.Tensor,
    target: torch.Tensor,
    loss_weight: torch.Tensor,
    requirement: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    active: torch.Tensor,
    converged: torch.Tensor,
    steps_taken: torch.Tensor,
    grad_logits: torch.Tensor,
    step: torch.Tensor,
    *,
    final: bool,
) -> None:
    """The stopping rule and the loss gradient at the logits (see the kernel). # logits,
    target, loss_weight, grad_logits [M, C] float32, requirement [M, C] int8, upper, lower [C],
    active, converged [M] uint8, steps_taken [M] int64, step [1] int32."""
    m, c = logits.shape
    block_c = max(triton.next_power_of_2(c), 2)
    block_r = 16 if is_interpreted(_loss_check_kernel) else max(1, CHECK_TILE_ELEMS // block_c)
    wrap(_loss_check_kernel)[(triton.cdiv(m, block_r),)](
        logits,
        target,
        loss_weight,
        requirement,
        upper,
        lower,
        active,
        converged,
        steps_taken,
        grad_logits,
        step,
        m,
        C=c,
        FINAL=final,
        BLOCK_R=block_r,
        BLOCK_C=block_c,
        num_warps=4,
    )
