# SPDX-License-Identifier: Apache-2.0
"""optimize_latents: every backend against the eager autograd loop, tuning, and bad inputs."""

import warnings

import pytest
import torch
from torch import nn

import lcengine
from lcengine.ops.optimize_latents import OptimizeHyperParams, OptimizeTuning, optimize_tuning
from lcengine.reference import CriticMLP
from support.optimize_problems import assert_same_run, make_problem, on, to_cpu
from support.params import backend_device_params

STEPS = 25
TRITON_STEPS = 12  # the interpreter runs every program in numpy: fewer steps, same coverage


@pytest.mark.parametrize("backend,device", backend_device_params(("native",)))
@pytest.mark.parametrize("activation", ["relu", "softplus", "leaky_relu"])
@pytest.mark.parametrize("hidden", [(5, 7), (32, 32, 32)], ids=["5x7", "3x32"])
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("b", [1, 7, 33])
def test_matches_eager(backend, device, b, d, hidden, activation):
    check_against_eager(backend, device, b, d, hidden, activation, STEPS)


def check_against_eager(backend, device, b, d, hidden, activation, steps):
    z, y, mask, real, attr = make_problem(b, d, hidden, activation, seed=b * 100 + d)
    sigma = torch.rand(d) + 0.5  # [D]
    kwargs = dict(steps=steps, w_dist=0.3, lr=0.08)
    ref = lcengine.optimize_latents(z, y, mask, real, attr, sigma, backend="eager", **kwargs)
    out = lcengine.optimize_latents(
        *on(device, z, y, mask, real, attr, sigma), backend=backend, **kwargs
    )
    assert_same_run(to_cpu(out), ref, y, mask)


@pytest.mark.parametrize("backend,device", backend_device_params(("native",)))
@pytest.mark.parametrize("b,activation", [(1, "relu"), (3, "softplus")])
def test_few_rows_with_wide_critics(backend, device, b, activation):
    """Up to 4 rows and weights over 8 MiB: the native path streams the weights over every
    thread (split at odd boundaries: H1 = 2200, D = 37) and skips rows of dead ReLU units."""
    check_against_eager(backend, device, b, 37, (1100, 1030), activation, 6)


# The interpreter is slow: Triton gets odd sizes (a row tail and a column tail in every tile),
# every activation, one and several hidden layers, a hidden width over one 32-wide tile.
TRITON_CASES = [
    (37, 13, (24, 20), "relu"),
    (5, 3, (5, 7), "softplus"),
    (37, 13, (40,), "leaky_relu"),
    (1, 16, (8, 8, 8), "relu"),
]


@pytest.mark.parametrize("backend,device", backend_device_params(("triton",)))
@pytest.mark.parametrize(
    "b,d,hidden,activation", TRITON_CASES, ids=[f"{c[0]}x{c[1]}-{c[3]}" for c in TRITON_CASES]
)
def test_triton_matches_eager(backend, device, b, d, hidden, activation):
    check_against_eager(backend, device, b, d, hidden, activation, TRITON_STEPS)


@pytest.mark.parametrize("backend,device", backend_device_params(("native", "triton")))
def test_rows_converge_at_different_steps(backend, device):
    interpreted = backend == "triton" and device == "cpu"
    b, steps, sharpen = (32, 30, 8.0) if interpreted else (64, 60, 6.0)
    z, y, mask, real, attr = make_problem(b, 16, (32, 32), "relu", seed=3, sharpen=sharpen)
    kwargs = dict(steps=steps, tau_r=0.6, tau_a=0.7, lr=0.05)
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kwargs)
    mid = (ref.steps > 0) & (ref.steps < steps) & ref.converged
    assert int(mid.sum()) >= 5 and len(set(ref.steps[mid].tolist())) >= 3, ref.steps
    assert bool((~ref.converged).any()), "some rows must use every step"
    # native: automatic tiles, many small tiles over the threads, and 16 threads (fewer tiles
    # than threads: 8 tiles of 8 rows); triton: one block with host checks every 16 steps (CUDA
    # graphs of 16 steps on a GPU), then blocks of rows (a workspace budget of 12 rows: 12, 12,
    # 8) with checks every 11 steps. The second variant goes through optimize_tuning, the
    # others through the op's tuning argument.
    if backend == "native":
        variants = [
            OptimizeTuning(),
            OptimizeTuning(cpu_tile_rows=5),
            OptimizeTuning(cpu_threads=16),
        ]
    else:
        from lcengine.ops.optimize_latents.prepare import parse_critics, prepare
        from lcengine.ops.optimize_latents.triton import bytes_per_row

        hyper = OptimizeHyperParams(tau_r=0.6, tau_a=0.7)
        row_bytes = bytes_per_row(
            prepare(
                parse_critics(real, attr, 16, 4, 4), z, y, mask, 1.0, hyper, realism_attributes=4
            )
        )
        variants = [
            OptimizeTuning(),
            OptimizeTuning(triton_chunk_steps=11, triton_workspace_bytes=12 * row_bytes),
        ]
    for i, tuning in enumerate(variants):
        args = on(device, z, y, mask, real, attr)
        if i == 1:
            with optimize_tuning(tuning):
                out = lcengine.optimize_latents(*args, 1.0, backend=backend, **kwargs)
        else:
            out = lcengine.optimize_latents(*args, 1.0, backend=backend, tuning=tuning, **kwargs)
        assert_same_run(to_cpu(out), ref, y, mask, tau_r=0.6, tau_a=0.7)


@pytest.mark.parametrize("backend,device", backend_device_params(("native", "triton")))
def test_zero_shot_columns_and_stacked_critics(backend, device):
    # The realism critic reads the first 3 of 5 columns; a stacked attribute critic gives all 5.
    z, y, mask, real, attr = make_problem(
        19, 8, (16, 16), "softplus", a=5, a_real=3, stacked=True, seed=7
    )
    steps = TRITON_STEPS if backend == "triton" else STEPS
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 0.5, steps=steps, backend="eager")
    args = on(device, z, y, mask, real, attr)
    out = lcengine.optimize_latents(*args, 0.5, steps=steps, backend=backend)
    assert_same_run(to_cpu(out), ref, y, mask)
    explicit = lcengine.optimize_latents(
        *args, 0.5, steps=steps, realism_attributes=3, backend=backend
    )
    assert torch.equal(explicit.latents, out.latents)


@pytest.mark.parametrize("backend,device", backend_device_params(("native", "triton")))
def test_start_already_satisfied_and_weights(backend, device):
    z, y, mask, real, attr = make_problem(9, 4, (8,), "leaky_relu", seed=11)
    steps = TRITON_STEPS if backend == "triton" else STEPS
    kwargs = dict(steps=steps, tau_r=0.01, tau_a=0.5, w_realism=0.5, w_attr=2.0, w_dist=0.0)
    mask = torch.zeros_like(mask)  # nothing requested: realism > 0.01 holds almost at once
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kwargs)
    out = lcengine.optimize_latents(
        *on(device, z, y, mask, real, attr), 1.0, backend=backend, **kwargs
    )
    assert_same_run(to_cpu(out), ref, y, mask, tau_r=0.01)
    assert bool((ref.steps[ref.converged] == 0).any())


def bf16_deviation(out, ref):
    """Norm-wise relative distance of two runs' latents (Adam moves every coordinate by about
    lr per step whatever the gradient's size, so a max-abs ratio would judge sign flips of
    near-zero gradient coordinates, not the precision of the critics)."""
    return float((out.latents.cpu() - ref.latents).norm() / ref.latents.norm())


@pytest.mark.parametrize(
    "backend,device",
    backend_device_params(("triton",)) + [pytest.param("eager", "cpu", id="eager-cpu")],
)
def test_bf16_weights_within_1e2_of_fp32(backend, device):
    z, y, mask, real, attr = make_problem(37, 13, (24, 20), "relu")
    kwargs = dict(steps=4, w_dist=0.3)
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kwargs)
    out = lcengine.optimize_latents(
        *on(device, z, y, mask, real, attr),
        1.0,
        backend=backend,
        weight_dtype=torch.bfloat16,
        **kwargs,
    )
    assert out.latents.dtype == torch.float32
    deviation = bf16_deviation(out, ref)
    # bf16 must change something (the option is not ignored) and stay within 1e-2. Eager runs
    # under bf16 autocast, which also stores every activation and logit in bf16 (1.2e-2 here),
    # where the fused kernels round only the GEMM inputs: it gets 3e-2.
    bound = 3e-2 if backend == "eager" else 1e-2
    assert 1e-6 < deviation < bound, deviation
    assert float((out.steps.cpu() == ref.steps).float().mean()) >= 0.9


def test_auto_backend_and_fallbacks():
    z, y, mask, real, attr = make_problem(7, 3, (5, 7), "relu")
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=5, backend="eager")
    out = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=5)
    assert_same_run(out, ref, y, mask)
    # Plain callables: auto runs the eager loop (one warning), native refuses.
    lambdas = (lambda zz, yy: real(zz, yy), lambda zz: attr(zz))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        out = lcengine.optimize_latents(z, y, mask, *lambdas, 1.0, steps=5, realism_attributes=4)
    assert torch.equal(out.latents, ref.latents)
    with pytest.raises(TypeError, match="layers"):
        lcengine.optimize_latents(
            z, y, mask, *lambdas, 1.0, steps=5, realism_attributes=4, backend="native"
        )
    # float64 stays on the eager loop under auto.
    out64 = lcengine.optimize_latents(
        z.double(), y, mask, real.double(), attr.double(), 1.0, steps=5
    )
    torch.testing.assert_close(out64.latents, ref.latents.double(), rtol=1e-4, atol=1e-4)


def test_weight_dtype_errors():
    z, y, mask, real, attr = make_problem(3, 3, (5,), "relu")
    with pytest.raises(RuntimeError, match="bfloat16 critic weights are a GPU option"):
        lcengine.optimize_latents(
            z, y, mask, real, attr, 1.0, steps=2, backend="native", weight_dtype=torch.bfloat16
        )
    with pytest.raises(TypeError, match="weight_dtype"):
        lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=2, weight_dtype=torch.float16)
    # auto on CPU with bf16 weights: the eager loop under bf16 autocast, with one warning
    with pytest.warns(RuntimeWarning, match="GPU option"):
        auto = lcengine.optimize_latents(
            z, y, mask, real, attr, 1.0, steps=2, weight_dtype=torch.bfloat16
        )
    eager = lcengine.optimize_latents(
        z, y, mask, real, attr, 1.0, steps=2, backend="eager", weight_dtype=torch.bfloat16
    )
    assert torch.equal(auto.latents, eager.latents)


class _Odd(nn.Module):
    def __init__(self, d, a, layers, activation="relu"):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self.latent_dim, self.num_attributes = d, a

    def forward(self, z):
        for layer in self.layers:
            z = layer(z)
        return z


@pytest.mark.parametrize(
    "case,exc,match",
    [
        ("critic_width", ValueError, "D=3"),
        ("attr_count", ValueError, "A=4"),
        ("y_shape", ValueError, "y must have shape"),
        ("mask_shape", ValueError, "mask must have the shape"),
        ("mask_dtype", TypeError, "mask must be a bool"),
        ("y_values", ValueError, "only 0 and 1"),
        ("nan_z", ValueError, "NaN or infinite"),
        ("z_dims", ValueError, r"\[B, D\]"),
        ("steps0", ValueError, "steps"),
        ("steps_float", TypeError, "steps"),
        ("tau_r0", ValueError, "tau_r"),
        ("tau_r1", ValueError, "tau_r"),
        ("tau_a", ValueError, "tau_a"),
        ("w_neg", ValueError, "w_dist"),
        ("sigma", ValueError, "sigma_bar"),
        ("sigma_shape", ValueError, "sigma_bar"),
        ("realism_attributes", ValueError, "realism_attributes"),
        ("non_linear", TypeError, "nn.Linear"),
        ("activation", ValueError, "activation"),
        ("backend", ValueError, "backend"),
    ],
)
def test_bad_input(case, exc, match):
    z, y, mask, real, attr = make_problem(5, 3, (5, 7), "relu")
    args = dict(
        z_start=z, y=y, mask=mask, realism_critic=real, attribute_critic=attr, sigma_bar=1.0
    )
    kwargs = dict(steps=3, backend="native")
    if case == "critic_width":
        args["attribute_critic"] = CriticMLP(4, (5,), 4)
    elif case == "attr_count":
        args["attribute_critic"] = CriticMLP(3, (5,), 2)
    elif case == "y_shape":
        args["y"] = y[:4]
    elif case == "mask_shape":
        args["mask"] = mask[:, :2]
    elif case == "mask_dtype":
        args["mask"] = mask.float()
    elif case == "y_values":
        args["y"] = y * 2
    elif case == "nan_z":
        args["z_start"] = z.clone().index_fill_(0, torch.tensor([2]), float("nan"))
    elif case == "z_dims":
        args["z_start"] = z[0]
    elif case == "steps0":
        kwargs["steps"] = 0
    elif case == "steps_float":
        kwargs["steps"] = 3.0
    elif case == "tau_r0":
        kwargs["tau_r"] = 0.0
    elif case == "tau_r1":
        kwargs["tau_r"] = 1.0
    elif case == "tau_a":
        kwargs["tau_a"] = 0.4
    elif case == "w_neg":
        kwargs["w_dist"] = -0.1
    elif case == "sigma":
        args["sigma_bar"] = 0.0
    elif case == "sigma_shape":
        args["sigma_bar"] = torch.ones(5)
    elif case == "realism_attributes":
        kwargs["realism_attributes"] = 9
    elif case == "non_linear":
        args["attribute_critic"] = _Odd(3, 4, [nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)])
    elif case == "activation":
        args["attribute_critic"] = _Odd(3, 4, [nn.Linear(3, 5), nn.Linear(5, 4)], "gelu")
    elif case == "backend":
        kwargs["backend"] = "cuda"
    with pytest.raises(exc, match=match):
        lcengine.optimize_latents(**args, **kwargs)


@pytest.mark.parametrize("backend,device", backend_device_params(("native", "triton")))
def test_non_contiguous_inputs(backend, device):
    z, y, mask, real, attr = make_problem(7, 16, (5, 7), "relu", seed=5)
    steps = TRITON_STEPS if backend == "triton" else STEPS
    z_t, y_t, mask, real, attr = on(device, z, y, mask, real, attr)
    z_t = z_t.t().contiguous().t()  # [B, D], column-major storage
    y_t = y_t.t().contiguous().t()  # [B, A]
    assert not z_t.is_contiguous() and not y_t.is_contiguous()
    ref = lcengine.optimize_latents(
        z, y, mask.cpu(), real.cpu(), attr.cpu(), 1.0, steps=steps, backend="eager"
    )
    real.to(device), attr.to(device)  # Module.cpu() above moved them in place: back
    out = lcengine.optimize_latents(z_t, y_t, mask, real, attr, 1.0, steps=steps, backend=backend)
    assert_same_run(to_cpu(out), ref, y, mask.cpu())


def test_auto_order_on_cuda_prefers_the_row_tile_kernel_only_for_narrow_fp32():
    from lcengine.ops.optimize_latents.op import _auto_order
    from lcengine.ops.optimize_latents.prepare import parse_critics

    cuda = torch.device("cuda")
    narrow = parse_critics(*make_problem(2, 16, (32, 32), "relu")[3:], 16, 4, 4)
    wide = parse_critics(*make_problem(2, 16, (300,), "relu")[3:], 16, 4, 4)
    assert _auto_order(cuda, narrow, torch.float32, 4096) == ("native", "triton")
    assert _auto_order(cuda, narrow, torch.bfloat16, 4096) == ("triton", "native")
    assert _auto_order(cuda, narrow, torch.float32, 2**20) == ("triton", "native")
    assert _auto_order(cuda, wide, torch.float32, 4096) == ("triton", "native")
    assert _auto_order(torch.device("cpu"), wide, torch.float32, 4) == ("native",)
