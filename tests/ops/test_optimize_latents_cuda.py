# SPDX-License-Identifier: Apache-2.0
"""optimize_latents on CUDA (native): both kernel paths against the eager autograd loop.

The CUDA optimizer has two paths (kernels/cuda/optimize.cu): a persistent row-tile kernel for
critics whose widths are all <= 256, and per-step fused GEMM launches (captured in a CUDA graph
for small batches) for any widths. The ``cuda_*`` fields of ``OptimizeTuning`` (path, tile
height, graph, chunk) force each variant. The reference runs on the CPU; the GPU tests need a
CUDA device and skip without one. The binding checks at the top run wherever _C has CUDA compiled
in (CI builds it with nvcc but no GPU).
"""

import copy
import types

import pytest
import torch

import lcengine
from lcengine.backend import native_module, unavailable_reason
from lcengine.ops.optimize_latents import OptimizeTuning
from support.optimize_problems import _bf16_weights_of, assert_same_run, make_problem

STEPS = 25
# native_fields() codes of OptimizeTuning's cuda_path
PATH_TILE, PATH_GENERIC = 1, 2


# ---------------------------------------------------------------------------------------------
# The binding (no GPU needed).
# ---------------------------------------------------------------------------------------------


def _cuda_module():
    mod = native_module()
    if mod is None or not mod.with_cuda:
        pytest.skip("lcengine._C was built without CUDA kernels")
    return mod


def _binding_args(mod, net_widths, rows=37, steps=10, **fields):
    """``_C.OptimizeLatentsArgs`` of the size query for nets of the given widths (dummy
    pointers: the query never dereferences them), with ``fields`` changed."""
    p = 256
    nets = [list(w) for w in net_widths]
    base = dict(
        activations=[0] * len(nets),
        widths=nets,
        weights=[[p] * (len(w) - 2) for w in nets],
        biases=[[p] * (len(w) - 2) for w in nets],
        w_first=p,
        b_first=p,
        first_width=sum(w[1] for w in nets),
        row_bias=0,
        row_bias_width=0,
        num_outputs=sum(w[-1] for w in nets),
        target=p,
        loss_weight=p,
        requirement=p,
        upper=p,
        lower=p,
        inv_sigma_sq=p,
        w_dist=0.1,
        z_start=p,
        z_out=p,
        converged=p,
        steps_taken=p,
        logits_out=p,
        rows=rows,
        dim=nets[0][0],
        steps=steps,
        lr=0.05,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
    )
    return mod.OptimizeLatentsArgs(**{**base, **fields})


def test_cuda_binding_and_workspace_query():
    mod = _cuda_module()
    assert callable(mod.optimize_latents_cuda)
    small = [(13, 32, 32, 1), (13, 32, 4)]  # row-tile path
    wide = [(13, 300, 300, 1), (13, 32, 4)]  # generic path (a width > 256)
    for widths in (small, wide):
        for bf16 in (False, True):
            nbytes = mod.optimize_latents_cuda_workspace_bytes(
                _binding_args(mod, widths, weights_bf16=bf16)
            )
            assert isinstance(nbytes, int) and nbytes > 0
            assert nbytes % 256 == 0
    # Forcing the generic path on small critics needs its (larger) per-chunk buffers.
    tile_bytes = mod.optimize_latents_cuda_workspace_bytes(_binding_args(mod, small))
    generic = _binding_args(mod, small, cuda_path=PATH_GENERIC)
    assert mod.optimize_latents_cuda_workspace_bytes(generic) > tile_bytes
    with pytest.raises(ValueError, match="row-tile path cannot run"):
        mod.optimize_latents_cuda_workspace_bytes(_binding_args(mod, wide, cuda_path=PATH_TILE))
    with pytest.raises(ValueError, match="cuda_path"):
        mod.optimize_latents_cuda_workspace_bytes(_binding_args(mod, small, cuda_path=3))
    # Chunked generic workspace: bounded by the chunk, not the batch.
    chunked = mod.optimize_latents_cuda_workspace_bytes(
        _binding_args(mod, wide, rows=100000, cuda_chunk_rows=64)
    )
    whole = mod.optimize_latents_cuda_workspace_bytes(_binding_args(mod, wide, rows=64))
    assert chunked == whole
    # The tuning's fields reach the struct under these codes.
    fields = OptimizeTuning(cuda_path="tile", cuda_graph="off").native_fields()
    assert (fields["cuda_path"], fields["cuda_graph"]) == (PATH_TILE, 2)


@pytest.mark.parametrize(
    "change",
    [
        {"first_width": 65},
        {"num_outputs": 6},
        {"widths": [[12, 32, 32, 1], [13, 32, 4]]},
        {"activations": [0, 9]},
        {"steps": 0},
        {"row_bias": 256, "row_bias_width": 3},
        {"w_first": 0},
        {"cuda_tile_rows": 24},
        {"cuda_graph": 3},
        {"cuda_chunk_rows": -64},
    ],
)
def test_cuda_binding_rejects_inconsistent_sizes(change):
    mod = _cuda_module()
    args = _binding_args(mod, [(13, 32, 32, 1), (13, 32, 4)], **change)
    with pytest.raises(ValueError):
        mod.optimize_latents_cuda_workspace_bytes(args)
    with pytest.raises(ValueError):  # rejected before anything touches the device
        mod.optimize_latents_cuda(args, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# On a GPU.
# ---------------------------------------------------------------------------------------------


def _require_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    reason = unavailable_reason("native", "cuda")
    if reason is not None:
        pytest.skip(reason)


def _cpu(res):
    return types.SimpleNamespace(
        latents=res.latents.cpu(),
        converged=res.converged.cpu(),
        steps=res.steps.cpu(),
        realism_prob=res.realism_prob.cpu(),
        attribute_prob=res.attribute_prob.cpu(),
    )


def _run_both(problem, sigma, **kwargs):
    """(native CUDA result on the CPU, eager CPU reference) for one problem (``tuning`` in
    kwargs reaches the CUDA run only)."""
    z, y, mask, real, attr = problem
    tuning = kwargs.pop("tuning", None)
    ref = lcengine.optimize_latents(z, y, mask, real, attr, sigma, backend="eager", **kwargs)
    dev = torch.device("cuda")
    sig = sigma.to(dev) if isinstance(sigma, torch.Tensor) else sigma
    out = lcengine.optimize_latents(
        z.to(dev),
        y.to(dev),
        mask.to(dev),
        copy.deepcopy(real).to(dev),
        copy.deepcopy(attr).to(dev),
        sig,
        backend="native",
        tuning=tuning,
        **kwargs,
    )
    assert out.latents.device.type == "cuda"
    assert getattr(out, "backend", "native") == "native"
    torch.cuda.synchronize()
    return _cpu(out), ref


# Both kernel paths; the generic one with and without its CUDA graph, and in several chunks.
VARIANTS = {
    "auto": OptimizeTuning(),
    "tile": OptimizeTuning(cuda_path="tile"),
    "tile8": OptimizeTuning(cuda_path="tile", cuda_tile_rows=8),
    "tile16": OptimizeTuning(cuda_path="tile", cuda_tile_rows=16),
    "tile32": OptimizeTuning(cuda_path="tile", cuda_tile_rows=32),
    "generic": OptimizeTuning(cuda_path="generic"),
    "generic-graph": OptimizeTuning(cuda_path="generic", cuda_graph="on"),
    "generic-plain": OptimizeTuning(cuda_path="generic", cuda_graph="off"),
    "generic-chunks": OptimizeTuning(cuda_path="generic", cuda_chunk_rows=16),
}


@pytest.mark.gpu
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("auto", "generic")])
@pytest.mark.parametrize("activation", ["relu", "softplus", "leaky_relu"])
@pytest.mark.parametrize(
    "b,d,hidden",
    [(37, 13, (32, 32)), (1, 5, (5, 7)), (70, 16, (64, 48, 40))],
    ids=["37x13", "1x5", "70x16"],
)
def test_matches_eager(variant, activation, b, d, hidden):
    _require_gpu()
    problem = make_problem(b, d, hidden, activation, seed=b * 100 + d)
    sigma = torch.rand(d, generator=torch.Generator().manual_seed(d)) + 0.5  # [D]
    out, ref = _run_both(problem, sigma, steps=STEPS, w_dist=0.3, lr=0.08, tuning=VARIANTS[variant])
    assert_same_run(out, ref, problem[1], problem[2])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["auto", "generic-graph", "generic-plain", "generic-chunks"])
@pytest.mark.parametrize(
    "b,d,hidden", [(37, 13, (300, 300)), (9, 257, (24,))], ids=["wide-hidden", "wide-latent"]
)
def test_wide_critics_take_the_generic_path(variant, b, d, hidden):
    _require_gpu()
    problem = make_problem(b, d, hidden, "relu", seed=5, sharpen=2.0)
    out, ref = _run_both(problem, 1.0, steps=STEPS, lr=0.05, tuning=VARIANTS[variant])
    assert_same_run(out, ref, problem[1], problem[2])
    if variant == "auto":  # the tile path refuses such widths
        z, y, mask, real, attr = problem
        with pytest.raises(ValueError, match="row-tile"):
            lcengine.optimize_latents(
                z.cuda(),
                y.cuda(),
                mask.cuda(),
                copy.deepcopy(real).cuda(),
                copy.deepcopy(attr).cuda(),
                1.0,
                steps=2,
                backend="native",
                tuning=VARIANTS["tile"],
            )


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["tile", "generic-graph", "generic-plain"])
def test_rows_converge_at_different_steps(variant):
    _require_gpu()
    problem = make_problem(64, 16, (32, 32), "relu", seed=3, sharpen=6.0)
    kwargs = dict(steps=60, tau_r=0.6, tau_a=0.7, lr=0.05)
    out, ref = _run_both(problem, 1.0, tuning=VARIANTS[variant], **kwargs)
    mid = (ref.steps > 0) & (ref.steps < 60) & ref.converged
    assert int(mid.sum()) >= 5 and len(set(ref.steps[mid].tolist())) >= 3, ref.steps
    assert bool((~ref.converged).any()), "some rows must use every step"
    assert_same_run(out, ref, problem[1], problem[2], tau_r=0.6, tau_a=0.7)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["tile", "generic-graph", "generic-plain"])
def test_every_row_converges_early(variant):
    # Every row frozen long before the step limit (the reference: by step 19, 17 rows at step
    # 0, 10 distinct counts): the tile CTAs leave their loop, the generic path stops at a host
    # check between graph replays / launch batches.
    _require_gpu()
    z, y, mask, real, attr = make_problem(40, 6, (16, 16), "leaky_relu", seed=11)
    mask = torch.zeros_like(mask)  # nothing requested: only realism > tau_r
    problem = (z, y, mask, real, attr)
    kwargs = dict(steps=200, tau_r=0.5, w_realism=2.0, w_dist=0.0, lr=0.1)
    out, ref = _run_both(problem, 1.0, tuning=VARIANTS[variant], **kwargs)
    assert bool(ref.converged.all()) and int(ref.steps.max()) < 50, ref.steps
    assert bool((ref.steps == 0).any()) and len(set(ref.steps.tolist())) >= 5
    assert_same_run(out, ref, y, mask)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["tile", "generic-graph", "generic-plain"])
def test_zero_shot_columns_and_stacked_critics(variant):
    # The realism critic reads 3 of 5 columns; a stack of two attribute critics (one of them a
    # single hidden layer) gives all 5: three nets of different depths in one call.
    _require_gpu()
    problem = make_problem(19, 8, (16, 16), "softplus", a=5, a_real=3, stacked=True, seed=7)
    out, ref = _run_both(problem, 0.5, steps=STEPS, tuning=VARIANTS[variant])
    assert_same_run(out, ref, problem[1], problem[2])


@pytest.mark.gpu
def test_graph_batch_with_replays_past_the_limit():
    # 300 rows on the generic path under its automatic mode: one chunk <= 16384 rows, so the
    # CUDA graph of 16 steps is replayed (40 steps: 3 replays, the last 8 step slots gated off).
    _require_gpu()
    problem = make_problem(300, 24, (48, 40), "relu", seed=21, sharpen=5.0)
    out, ref = _run_both(
        problem, 0.7, steps=40, tau_r=0.6, tau_a=0.7, lr=0.05, tuning=VARIANTS["generic"]
    )
    assert_same_run(out, ref, problem[1], problem[2], tau_r=0.6, tau_a=0.7)
    assert bool((~ref.converged).any()) and bool(ref.converged.any())


@pytest.mark.gpu
def test_graph_executable_reused_across_calls():
    # The generic path keeps its graph executable between calls of one structure and updates it
    # with each call's pointers: new inputs of the same shape (new buffers) must give their own
    # results, also after the cache was freed and after another shape took an entry.
    _require_gpu()
    mod = native_module()
    mod.cuda_release_graphs()
    kw = dict(steps=40, tau_r=0.6, tau_a=0.7, lr=0.05, tuning=VARIANTS["generic-graph"])
    for seed, rows in ((31, 100), (32, 100), (33, 101), (34, 100)):
        problem = make_problem(rows, 24, (48, 40), "relu", seed=seed, sharpen=5.0)
        out, ref = _run_both(problem, 0.7, **kw)
        assert_same_run(out, ref, problem[1], problem[2], tau_r=0.6, tau_a=0.7)
    assert mod.cuda_release_graphs() == 2  # one entry per row count
    assert mod.cuda_release_graphs() == 0


def test_cuda_status_binding():
    # No GPU needed: what the linked runtime says about this machine.
    mod = _cuda_module()
    st = mod.cuda_status()
    assert st["runtime_version"] // 1000 == int(mod.cuda_runtime_version.split(".")[0])
    assert (st["device_count"] > 0) == (st["error_name"] == "cudaSuccess")
    assert isinstance(mod.cuda_release_graphs(), int)


@pytest.mark.gpu
def test_larger_batch_tile_path():
    # Many CTAs (several waves on most GPUs) with the automatic tile height.
    _require_gpu()
    problem = make_problem(3000, 32, (64, 64), "softplus", seed=4)
    out, ref = _run_both(problem, 1.0, steps=15, lr=0.05, tuning=VARIANTS["auto"])
    assert_same_run(out, ref, problem[1], problem[2])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["tile", "generic-graph"])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_bf16_weights(variant, activation):
    _require_gpu()
    hidden = (32, 32) if variant == "tile" else (300, 32)
    b, d = 37, 13
    z, y, mask, real, attr = make_problem(b, d, hidden, activation, seed=9)
    kwargs = dict(steps=8, lr=0.05, w_dist=0.3)
    dev = torch.device("cuda")

    def native(real_, attr_):
        out = lcengine.optimize_latents(
            z.to(dev),
            y.to(dev),
            mask.to(dev),
            copy.deepcopy(real_).to(dev),
            copy.deepcopy(attr_).to(dev),
            1.0,
            backend="native",
            weight_dtype=torch.bfloat16,
            tuning=VARIANTS[variant],
            **kwargs,
        )
        return _cpu(out)

    # The bf16 kernels convert their weights to float32 exactly and compute in float32: against
    # the float32 reference on bf16-rounded weights they agree to float32 accuracy, both when
    # the weights are already bf16-representable and when lcengine does the cast.
    real_e = _bf16_weights_of(copy.deepcopy(real), d)
    attr_e = _bf16_weights_of(copy.deepcopy(attr))
    ref_e = lcengine.optimize_latents(z, y, mask, real_e, attr_e, 1.0, backend="eager", **kwargs)
    assert_same_run(native(real_e, attr_e), ref_e, y, mask)
    out = native(real, attr)
    assert_same_run(out, ref_e, y, mask)

    # Against the float32 reference on the original weights: what bf16 weights cost. Measured
    # with the float32 emulation above (8 steps): probabilities within 0.016 (relu, 300 x 32),
    # latents' displacement within 15% (Frobenius) -- Adam's normalized steps amplify small
    # gradient differences, so the latents get no elementwise 1e-2 bound here.
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kwargs)
    same = (out.steps == ref.steps) & (out.converged == ref.converged)  # [B]
    assert float(same.float().mean()) >= 0.8
    torch.testing.assert_close(out.realism_prob[same], ref.realism_prob[same], rtol=0, atol=3e-2)
    torch.testing.assert_close(
        out.attribute_prob[same], ref.attribute_prob[same], rtol=0, atol=3e-2
    )
    moved_ref = ref.latents[same] - z[same]  # [B_same, D]
    moved_out = out.latents[same] - z[same]  # [B_same, D]
    assert float((moved_out - moved_ref).norm() / moved_ref.norm()) <= 0.3
