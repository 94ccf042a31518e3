# SPDX-License-Identifier: Apache-2.0
"""optimize_latents' contracts: the critic Protocol, the hyper-parameters, the tuning (and its
environment variables), and the native argument struct."""

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import lcengine
from lcengine.backend import native_module, unavailable_reason
from lcengine.ops.optimize_latents import (
    CriticNet,
    CriticStack,
    OptimizeHyperParams,
    OptimizeTuning,
    RealismCriticNet,
    current_tuning,
    optimize_tuning,
)
from lcengine.ops.optimize_latents import config as tuning_config
from lcengine.ops.optimize_latents.prepare import parse_critics, prepare
from lcengine.reference import CriticMLP, optimize_latents_ref
from support.optimize_problems import CriticStack as StackOfMLPs
from support.optimize_problems import make_problem

STEPS = 25


# ---------------------------------------------------------------------------------------------
# The critic contract.
# ---------------------------------------------------------------------------------------------


def test_method_and_reference_critics_follow_the_protocol():
    from lcengine.method.critics import (
        Actor,
        AttributeCritic,
        RealismCritic,
        StackedAttributeCritic,
    )

    d, a = 6, 3
    real = RealismCritic(d, a, hidden=(8, 8), embed_dim=4)
    attr = AttributeCritic(d, a - 1, hidden=(8,), activation="softplus")
    stack = StackedAttributeCritic([attr, AttributeCritic(d, 1, hidden=(5, 5))])
    actor = Actor(d, a, hidden=(8,), embed_dim=2)
    plain = CriticMLP(d, (8,), a)
    conditional = CriticMLP(d, (8,), 1, num_attributes=a, embed_dim=2)
    for critic in (real, attr, actor, plain, conditional):
        assert isinstance(critic, CriticNet), type(critic).__name__
    for critic in (real, actor, conditional):
        assert isinstance(critic, RealismCriticNet), type(critic).__name__
    assert isinstance(stack, CriticStack) and isinstance(StackOfMLPs([plain]), CriticStack)
    for not_a_critic in (lambda z: z, nn.Sequential(nn.Linear(d, 1)), stack):
        assert not isinstance(not_a_critic, CriticNet)
    # conforming critics parse, whichever package they come from
    for realism, attribute, num_attr in (
        (real, attr, a - 1),
        (real, stack, a),
        (conditional, plain, a),
    ):
        critics = parse_critics(realism, attribute, d, num_attr, a)
        assert len(critics.nets) == 1 + len(getattr(attribute, "critics", [attribute]))


def test_reference_is_the_method_loop():
    from lcengine.method.sampling import optimize_latents_eager

    z, y, mask, real, attr = make_problem(7, 5, (8, 8), "relu")
    with lcengine.use_backend("eager"):
        expected = optimize_latents_eager(z, y, mask, real, attr, 0.8, steps=STEPS)
    got = optimize_latents_ref(z, y, mask, real, attr, 0.8, steps=STEPS)
    names = ("latents", "converged", "steps", "realism_prob", "attribute_prob")
    for name, value in zip(names, got, strict=True):
        assert torch.equal(value, getattr(expected, name)), name
    public = lcengine.optimize_latents(z, y, mask, real, attr, 0.8, steps=STEPS, backend="eager")
    assert torch.equal(public.latents, expected.latents)
    assert torch.equal(public.steps, expected.steps)


# ---------------------------------------------------------------------------------------------
# Hyper-parameters.
# ---------------------------------------------------------------------------------------------


def test_hyper_params_validate_and_reach_the_reference():
    hyper = OptimizeHyperParams(steps=7, lr=1, tau_a=0.5, w_dist=0)
    assert isinstance(hyper.lr, float) and hyper.lr == 1.0 and hyper.betas == (0.9, 0.999)
    kwargs = hyper.reference_kwargs()
    assert set(kwargs) <= set(inspect.signature(optimize_latents_ref).parameters)
    assert kwargs["steps"] == 7 and kwargs["betas"] == (0.9, 0.999)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hyper.steps = 3
    for change, exc, match in (
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.0), TypeError, "steps"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(beta2=1.0), ValueError, r"betas\[1\]"),
        (dict(tau_r=1.0), ValueError, "tau_r"),
        (dict(tau_a=0.49), ValueError, "tau_a"),
        (dict(w_attr=-1.0), ValueError, "w_attr"),
        (dict(eps=float("nan")), ValueError, "eps"),
    ):
        with pytest.raises(exc, match=match):
            OptimizeHyperParams(**change)


# ---------------------------------------------------------------------------------------------
# Tuning.
# ---------------------------------------------------------------------------------------------


def test_tuning_fields_are_validated():
    assert OptimizeTuning() == OptimizeTuning.from_env({})
    for change, exc, match in (
        (dict(cuda_path="sideways"), ValueError, "cuda_path"),
        (dict(cuda_graph="1"), ValueError, "cuda_graph"),
        (dict(cuda_tile_rows=12), ValueError, "cuda_tile_rows"),
        (dict(cpu_tile_rows=-1), ValueError, "cpu_tile_rows"),
        (dict(cpu_threads=1.5), TypeError, "cpu_threads"),
        (dict(triton_chunk_steps=0), ValueError, "triton_chunk_steps"),
        (dict(triton_graph=1), TypeError, "triton_graph"),
    ):
        with pytest.raises(exc, match=match):
            OptimizeTuning(**change)


def test_tuning_from_environment_variables():
    env = {
        "LCENGINE_OPTIMIZE_CUDA_PATH": "Generic",
        "LCENGINE_OPTIMIZE_CUDA_TILE_ROWS": "16",
        "LCENGINE_OPTIMIZE_CUDA_GRAPH": "off",
        "LCENGINE_OPTIMIZE_CUDA_CHUNK_ROWS": " 64 ",
        "LCENGINE_OPTIMIZE_CPU_TILE_ROWS": "5",
        "LCENGINE_OPTIMIZE_CPU_THREADS": "",
        "LCENGINE_OPTIMIZE_TRITON_GRAPH": "0",
        "LCENGINE_OPTIMIZE_TRITON_CHUNK_STEPS": "11",
        "LCENGINE_OPTIMIZE_TRITON_WORKSPACE_BYTES": "1000",
        "LCENGINE_BACKEND": "eager",
    }
    assert OptimizeTuning.from_env(env) == OptimizeTuning(
        cuda_path="generic",
        cuda_tile_rows=16,
        cuda_graph="off",
        cuda_chunk_rows=64,
        cpu_tile_rows=5,
        triton_graph=False,
        triton_chunk_steps=11,
        triton_workspace_bytes=1000,
    )
    for key, value in (
        ("LCENGINE_OPTIMIZE_CUDA_PATH", "sideways"),
        ("LCENGINE_OPTIMIZE_CUDA_TILE_ROWS", "12"),
        ("LCENGINE_OPTIMIZE_CUDA_CHUNK_ROWS", "many"),
        ("LCENGINE_OPTIMIZE_CPU_THREADS", "-2"),
        ("LCENGINE_OPTIMIZE_TRITON_GRAPH", "maybe"),
        ("LCENGINE_OPTIMIZE_CUDA_TILES", "8"),
    ):
        with pytest.raises(ValueError, match=key):
            OptimizeTuning.from_env({key: value})


def test_tuning_precedence_call_then_context_then_environment(monkeypatch):
    # the environment is read once, at the first call that needs it
    monkeypatch.setattr(tuning_config, "_env_tuning", {})
    monkeypatch.setenv("LCENGINE_OPTIMIZE_CPU_TILE_ROWS", "7")
    assert current_tuning().cpu_tile_rows == 7
    monkeypatch.setenv("LCENGINE_OPTIMIZE_CPU_TILE_ROWS", "9")
    assert current_tuning().cpu_tile_rows == 7
    with optimize_tuning(cpu_threads=3) as outer:
        assert outer == current_tuning() == OptimizeTuning(cpu_tile_rows=7, cpu_threads=3)
        with optimize_tuning(OptimizeTuning(cuda_path="tile")):
            assert current_tuning() == OptimizeTuning(cuda_path="tile")
        assert current_tuning() is outer
    assert current_tuning() == OptimizeTuning(cpu_tile_rows=7)
    with pytest.raises(ValueError, match="cuda_graph"):
        with optimize_tuning(cuda_graph="sometimes"):
            pass
    with pytest.raises(TypeError, match="tuning"):
        with optimize_tuning({"cpu_threads": 2}):
            pass
    # a bad variable is an error naming it, at the first call that reads the environment
    monkeypatch.setattr(tuning_config, "_env_tuning", {})
    monkeypatch.setenv("LCENGINE_OPTIMIZE_CUDA_GRAPH", "sometimes")
    z, y, mask, real, attr = make_problem(3, 3, (5,), "relu")
    with pytest.raises(ValueError, match="LCENGINE_OPTIMIZE_CUDA_GRAPH"):
        lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=2)
    out = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=2, tuning=OptimizeTuning())
    assert out.latents.shape == z.shape
    with pytest.raises(TypeError, match="tuning must be an OptimizeTuning"):
        lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=2, tuning={"cpu_threads": 1})


# ---------------------------------------------------------------------------------------------
# The native argument struct (_C.OptimizeLatentsArgs).
# ---------------------------------------------------------------------------------------------


def _native():
    reason = unavailable_reason("native", "cpu")
    if reason is not None:
        pytest.skip(reason)
    return native_module()


def test_native_args_struct_is_filled_by_field_name():
    mod = _native()
    z, y, mask, real, attr = make_problem(5, 3, (5, 7), "relu", stacked=True)
    hyper = OptimizeHyperParams(steps=4, lr=0.1, tau_r=0.6)
    tuning = OptimizeTuning(
        cpu_tile_rows=2,
        cpu_threads=1,
        cuda_path="generic",
        cuda_tile_rows=16,
        cuda_graph="off",
        cuda_chunk_rows=64,
    )
    prep = prepare(parse_critics(real, attr, 3, 4, 4), z, y, mask, 1.0, hyper, realism_attributes=4)
    outs = (
        torch.empty(5, 3),
        torch.empty(5, dtype=torch.uint8),
        torch.empty(5, dtype=torch.int64),
        torch.empty(5, 5),
    )
    args = prep.native_args(mod, *outs, hyper=hyper, tuning=tuning, sgemm=1)
    assert isinstance(args, mod.OptimizeLatentsArgs)
    assert (args.rows, args.dim, args.first_width, args.num_outputs) == (5, 3, 15, 5)
    assert args.activations == [0, 0, 0]
    assert args.widths == [[3, 5, 7, 1], [3, 5, 7, 3], [3, 5, 1]]
    assert args.weights == [[w.data_ptr() for w in n.weights] for n in prep.nets]
    assert (args.z_out, args.logits_out) == (outs[0].data_ptr(), outs[3].data_ptr())
    assert (args.steps, args.lr, args.beta1, args.eps) == (4, 0.1, 0.9, 1e-8)
    assert (
        args.cpu_tile_rows,
        args.cpu_threads,
        args.cuda_path,
        args.cuda_tile_rows,
        args.cuda_graph,
        args.cuda_chunk_rows,
    ) == (2, 1, 2, 16, 2, 64)
    assert args.sgemm == 1 and args.blas_set_threads_local == 0 and not args.weights_bf16
    args.rows = 4  # every field is writable by name
    assert args.rows == 4
    with pytest.raises(TypeError, match="no field 'tile_rows'"):
        mod.OptimizeLatentsArgs(tile_rows=2)
    with pytest.raises(AttributeError):
        args.tile_rows = 2
    with pytest.raises(TypeError):
        args.steps = "many"


def test_native_binding_rejects_inconsistent_fields():
    mod = _native()
    w = torch.zeros(8)
    p = w.data_ptr()
    base = dict(
        activations=[0],
        widths=[[3, 4, 1]],
        weights=[[p]],
        biases=[[p]],
        w_first=p,
        b_first=p,
        first_width=4,
        row_bias=0,
        row_bias_width=0,
        num_outputs=1,
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
        rows=1,
        dim=3,
        steps=1,
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
    )
    with pytest.raises(ValueError, match="sgemm"):
        mod.optimize_latents_cpu(mod.OptimizeLatentsArgs(**base))
    for change in (
        {"activations": [7]},
        {"widths": [[4, 4, 1]]},
        {"first_width": 5},
        {"num_outputs": 2},
        {"steps": 0},
        {"weights": [[]]},
        {"activations": []},
        {"widths": [[3, 1]], "weights": [[]], "biases": [[]]},
        {"z_out": 0},
        {"rows": -1},
        {"row_bias": p, "row_bias_width": 3},
        {"cpu_threads": -1},
        {"cpu_tile_rows": -4},
        {"cuda_path": 3},
        {"cuda_tile_rows": 12},
        {"cuda_graph": -1},
        {"cuda_chunk_rows": -1},
    ):
        with pytest.raises(ValueError):
            mod.optimize_latents_cpu(mod.OptimizeLatentsArgs(**{**base, "sgemm": 1, **change}))


class _Calibrated(CriticMLP):
    """Temperature-scaled logits: a forward that is not the MLP of its layers."""

    def forward(self, z, y=None):
        return super().forward(z, y) / 2.0


class _Delegating(CriticMLP):
    """Overrides forward but computes the same function: proven by the probe, not the type."""

    def forward(self, z, y=None):
        return super().forward(z, y) * 1.0


def _critics(attr_cls=CriticMLP):
    torch.manual_seed(3)
    real = CriticMLP(6, (16, 16), 1, "relu", num_attributes=3, embed_dim=4).requires_grad_(False)
    attr = attr_cls(6, (16, 16), 3, "relu").requires_grad_(False)
    z = torch.randn(10, 6)
    y = (torch.rand(10, 3) > 0.5).float()
    return z, y, torch.ones(10, 3, dtype=torch.bool), real, attr


def test_fused_optimizer_refuses_a_critic_whose_forward_is_not_its_layers():
    z, y, mask, real, attr = _critics(_Calibrated)
    with pytest.raises(TypeError, match="does not compute the MLP of its layers"):
        lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=3, backend="native")
    with pytest.warns(RuntimeWarning, match="does not compute the MLP"):
        res = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=3, backend="auto")
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=3, backend="eager")
    assert res.backend == "eager" and torch.equal(res.latents, ref.latents)


def test_fused_optimizer_refuses_a_critic_changed_by_a_forward_hook():
    z, y, mask, real, attr = _critics()
    attr.register_forward_hook(lambda module, args, out: out * 3.0)
    with pytest.raises(TypeError, match="attribute_critic's forward does not compute"):
        lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=3, backend="native")


def test_fused_optimizer_accepts_an_override_that_computes_the_same_function():
    z, y, mask, real, attr = _critics(_Delegating)
    res = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=3, backend="native")
    assert res.backend == "native"
