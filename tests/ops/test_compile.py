# SPDX-License-Identifier: Apache-2.0
"""The public ops inside production graphs: ``torch.compile(fullgraph=True)`` (forward and
backward), ``torch.export`` with a dynamic batch, CUDA graph capture; the backend chosen once at
trace time; no host read of device values in any backward; ``optimize_latents`` refusing to be
traced with a clear reason."""

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import lcengine
from lcengine import backend as be
from lcengine.ops.optimize_latents.op import NOT_TRACEABLE
from support.optimize_problems import make_problem
from support.params import DEVICES, backend_device_params

D, A = 6, 3
COMPILERS = ("inductor", "aot_eager")
ROW_OPS = (
    "reparameterize",
    "standard_normal",
    "gaussian_kl",
    "distance_penalty",
    "constraint_loss",
)


class LatentLosses(nn.Module):
    """Every differentiable public op in one forward: an encoder, ``reparameterize``, prior noise
    from ``standard_normal``, and the three losses (per-dimension and scalar ``sigma_bar``, a
    weighted critic loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(D, 2 * D)
        self.critic = nn.Linear(D, A)
        self.register_buffer("sigma_bar", torch.linspace(0.5, 1.5, D))
        self.register_buffer("weight", torch.tensor([1.0, 0.5, 2.0]))

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        """``(kl [B], distance [], bce [])`` for inputs ``x [B, D]`` and targets ``y [B, A]``."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # [B, D] each
        z = lcengine.reparameterize(mu, logvar, seed=11, offset=5)  # [B, D]
        prior = lcengine.standard_normal((x.shape[0], D), seed=12, device=x.device, dtype=x.dtype)
        kl = lcengine.gaussian_kl(mu, logvar, reduction="none")  # [B]
        distance = lcengine.distance_penalty(z, prior, self.sigma_bar) + lcengine.distance_penalty(
            z, mu, 0.7, reduction="sum"
        )
        bce = lcengine.constraint_loss(self.critic(z), y, weight=self.weight)
        return kl, distance, bce


class AdamState(nn.Module):
    """Latents and Adam moments as buffers, updated in place by ``latent_adam_``."""

    def __init__(self, z: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("z", z.clone())
        self.register_buffer("exp_avg", torch.zeros_like(z))
        self.register_buffer("exp_avg_sq", torch.zeros_like(z))

    def forward(self, grad: torch.Tensor, step: int, active: torch.Tensor) -> torch.Tensor:
        lcengine.latent_adam_(
            self.z, grad, self.exp_avg, self.exp_avg_sq, step, lr=0.05, active=active
        )
        return self.z * 1.0


def _inputs(device, batch=5):
    x = torch.randn(batch, D, device=device)
    y = (torch.rand(batch, A, device=device) > 0.5).float()
    row_weight = torch.rand(batch, device=device) + 0.5  # a non-unit upstream gradient for kl
    return x, y, row_weight


def _forward_backward(module, x, y, row_weight):
    """Outputs and the gradients of a loss that reaches each op with a non-unit upstream
    gradient (kl per row, bce times 3) and with exactly one (distance)."""
    x = x.clone().requires_grad_(True)
    kl, distance, bce = module(x, y)
    loss = (kl * row_weight).sum() + distance + 3.0 * bce
    grads = torch.autograd.grad(loss, [x, *module.parameters()])
    return [t.detach() for t in (kl, distance, bce)], list(grads)


def _lcengine_targets(graphs) -> set:
    """Names of the ``torch.ops.lcengine.*`` ops called in FX graphs, with their backend."""
    found = set()
    for gm in graphs:
        for node in gm.graph.nodes:
            target = getattr(node, "target", None)
            if node.op == "call_function" and str(target).startswith("lcengine."):
                found.add((str(target).split(".")[1], node.args[-1]))
    return found


def _reference(module, *args):
    with lcengine.use_backend("eager"):
        return _forward_backward(module, *args)


def _cases():
    """(backend, device) for every fused backend available here, plus eager on every device."""
    cases = list(backend_device_params())
    for device in DEVICES:
        marks = [pytest.mark.gpu] if device == "cuda" else []
        cases.append(pytest.param("eager", device, marks=marks, id=f"eager-{device}"))
    return cases


def _assert_all_close(got, want, atol=2e-5, rtol=2e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol)


def _compile_cases():
    """_cases() times the compilers: Inductor for the fused backends' graphs (the registered ops
    stay opaque calls), aot_eager for all. Inductor over the references takes minutes (the
    Philox stream's ten rounds of int64 ops), and the interpreted Triton kernels gain nothing
    from it."""
    cases = []
    for case in _cases():
        backend, device = case.values
        interpreted = backend == "triton" and device == "cpu"
        compilers = ("aot_eager",) if backend == "eager" or interpreted else COMPILERS
        for compiler in compilers:
            name = f"{case.id}-{compiler}"
            cases.append(pytest.param(backend, device, compiler, marks=case.marks, id=name))
    return cases


@pytest.mark.parametrize("backend,device,compiler", _compile_cases())
def test_compiled_module_matches_eager(backend, device, compiler):
    torch._dynamo.reset()
    module = LatentLosses().to(device)
    counter = CompileCounterWithBackend(compiler)
    compiled = torch.compile(module, fullgraph=True, backend=counter)
    x, y, row_weight = _inputs(device)
    with lcengine.use_backend(backend):
        outs, grads = _forward_backward(compiled, x, y, row_weight)
    ref_outs, ref_grads = _reference(module, x, y, row_weight)
    _assert_all_close(outs, ref_outs)
    _assert_all_close(grads, ref_grads)
    assert counter.frame_count == 1
    found = _lcengine_targets(counter.graphs)
    if backend == "eager":
        assert found == set()  # the references' ATen ops, traced through
    else:
        assert found == {(op, backend) for op in ROW_OPS}


@pytest.mark.parametrize("backend,device", _cases())
def test_compiled_latent_adam_updates_buffers_in_place(backend, device):
    torch._dynamo.reset()
    z = torch.randn(7, D, device=device)
    active = torch.rand(7, device=device) > 0.3
    state, ref = AdamState(z).to(device), AdamState(z).to(device)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(state, fullgraph=True, backend=counter)
    for step in range(1, 5):
        grad = torch.randn(7, D, device=device)
        with lcengine.use_backend(backend):
            out = compiled(grad, step, active)
        with lcengine.use_backend("eager"):
            ref(grad, step, active)
        torch.testing.assert_close(out, ref.z, atol=1e-6, rtol=1e-5)
    for name in ("z", "exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(getattr(state, name), getattr(ref, name), atol=1e-6, rtol=1e-5)
    assert torch.equal(state.z[~active], z[~active])  # frozen rows untouched
    # the step is a graph input (a SymInt in the op's schema): one recompile for the dynamic
    # step, not one per step
    assert counter.frame_count <= 2
    if backend != "eager":
        assert _lcengine_targets(counter.graphs) == {("latent_adam_", backend)}


@pytest.mark.parametrize(
    "backend,dynamic",
    [
        ("native", True),
        ("eager", False),
        ("eager", True),
    ],
)
def test_export_with_a_dynamic_batch(backend, dynamic):
    if backend == "native" and be.unavailable_reason("native", "cpu"):
        pytest.skip(be.unavailable_reason("native", "cpu"))
    module = LatentLosses().eval()
    x, y, _ = _inputs("cpu", batch=4)
    batch = torch.export.Dim("batch")
    shapes = ({0: batch}, {0: batch}) if dynamic else None
    with lcengine.use_backend(backend), torch.no_grad():
        exported = torch.export.export(module, (x, y), dynamic_shapes=shapes)
    found = _lcengine_targets([exported.graph_module])
    if backend == "native":
        assert found == {(op, "native") for op in ROW_OPS}
    else:
        assert found == set()
    for rows in (3, 4, 11) if dynamic else (4,):
        x, y, _ = _inputs("cpu", batch=rows)
        with torch.no_grad():
            got = exported.module()(x, y)
            with lcengine.use_backend("eager"):
                want = module(x, y)
        _assert_all_close(got, want)


def test_export_latent_adam_mutates_buffers():
    if be.unavailable_reason("native", "cpu"):
        pytest.skip(be.unavailable_reason("native", "cpu"))
    z = torch.randn(6, D)
    active = torch.tensor([True, False, True, True, False, True])
    grad = torch.randn(6, D)
    with lcengine.use_backend("native"):
        exported = torch.export.export(AdamState(z), (grad, 2, active))
    assert _lcengine_targets([exported.graph_module]) == {("latent_adam_", "native")}
    ref = AdamState(z)
    with lcengine.use_backend("eager"):
        want = ref(grad, 2, active)
    torch.testing.assert_close(exported.module()(grad, 2, active), want, atol=1e-6, rtol=1e-5)


class _PoisonedContextVar:
    """Stands in for the backend ContextVar: any read fails the test."""

    def get(self, *args):
        raise AssertionError("the backend ContextVar was read after tracing")

    def set(self, value):
        raise AssertionError("the backend ContextVar was set after tracing")


def test_the_backend_is_baked_in_at_trace_time(monkeypatch):
    """A compiled graph keeps the backend in force when it was traced: a later use_backend block
    neither re-dispatches nor recompiles, and neither the ContextVar nor the environment is read
    when the graph runs."""
    if be.unavailable_reason("native", "cpu"):
        pytest.skip(be.unavailable_reason("native", "cpu"))
    torch._dynamo.reset()
    mu, logvar = torch.randn(4, D), torch.randn(4, D)
    want = lcengine.reference.gaussian_kl_ref(mu, logvar, reduction="none")
    functions = {  # two code objects, so that each has its own Dynamo cache entry
        "native": lambda m, lv: lcengine.gaussian_kl(m, lv, reduction="none"),
        "eager": lambda m, lv: lcengine.gaussian_kl(m, lv, reduction="none"),
    }
    counters, compiled = {}, {}
    for backend, fn in functions.items():
        counters[backend] = CompileCounterWithBackend("aot_eager")
        compiled[backend] = torch.compile(fn, fullgraph=True, backend=counters[backend])
        with lcengine.use_backend(backend):
            compiled[backend](mu, logvar)

    def runs_the_registered_op(backend):
        with torch.profiler.profile() as prof:
            out = compiled[backend](mu, logvar)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
        return any(e.name == "lcengine::gaussian_kl" for e in prof.events())

    with lcengine.use_backend("eager"):
        assert runs_the_registered_op("native")
    with lcengine.use_backend("native"):
        assert not runs_the_registered_op("eager")
    monkeypatch.setattr(be, "_context_backend", _PoisonedContextVar())
    monkeypatch.setenv(be.ENV_VAR, "not-a-backend")  # resolving again would raise
    assert runs_the_registered_op("native")
    assert not runs_the_registered_op("eager")
    assert counters["native"].frame_count == 1 and counters["eager"].frame_count == 1


def test_errors_keep_their_message_inside_compiled_code():
    torch._dynamo.reset()
    mu = torch.randn(3, D)
    with pytest.raises(Exception, match="backend must be one of"):
        torch.compile(lambda m: lcengine.gaussian_kl(m, m, backend="fast"), fullgraph=True)(mu)
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="backend must be one of"):  # without fullgraph: as is
        torch.compile(lambda m: lcengine.gaussian_kl(m, m, backend="fast"), backend="eager")(mu)
    # tensor values cannot be read while tracing: sigma_bar is checked on the device at run time
    torch._dynamo.reset()
    penalty = torch.compile(
        lambda z, sb: lcengine.distance_penalty(z, z * 2, sb), fullgraph=True, backend="aot_eager"
    )
    assert torch.isfinite(penalty(mu, torch.ones(D)))
    with pytest.raises(RuntimeError, match="sigma_bar must be finite and > 0"):
        penalty(mu, -torch.ones(D))


def test_optimize_latents_refuses_to_be_traced():
    z, y, mask, real, attr = make_problem(6, 4, [8], "relu", a=2)

    class Optimizer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.real, self.attr = real, attr

        def forward(self, z, y, mask):
            return lcengine.optimize_latents(z, y, mask, self.real, self.attr, 1.0, steps=3).latents

    module = Optimizer()
    torch._dynamo.reset()
    with pytest.raises(Exception, match="optimize_latents cannot be traced") as info:
        torch.compile(module, fullgraph=True, backend="eager")(z, y, mask)
    assert NOT_TRACEABLE in str(info.value)
    with pytest.raises(RuntimeError, match="optimize_latents cannot be traced"):
        torch.export.export(module, (z, y, mask))
    # without fullgraph, torch.compile runs it eagerly at a graph break
    torch._dynamo.reset()
    got = torch.compile(module, backend="eager")(z, y, mask)
    torch.testing.assert_close(got, module(z, y, mask))


# ---------------------------------------------------------------------------------------------
# No host reads of device values in any backward; CUDA graph capture.
# ---------------------------------------------------------------------------------------------

_HOST_READS = ("item", "__bool__", "__int__", "__float__", "tolist", "cpu", "numpy", "nonzero")


@pytest.fixture
def no_device_reads(monkeypatch):
    """Every Tensor method that copies device values to the host fails for non-CPU tensors."""
    for name in _HOST_READS:
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _name=name, _original=original, **kwargs):
            if self.device.type != "cpu":
                raise AssertionError(f"Tensor.{_name}() on a {self.device.type} tensor")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)


@pytest.mark.parametrize("upstream", ["ones", "scaled"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_backward_reads_no_device_values(no_device_reads, reduction, upstream):
    """The registered ops' backward on a non-CPU device (meta: the fake kernels, the real
    autograd formulas) never copies a value to the host, with an upstream gradient of exactly
    one (where the CPU takes its shortcut) and otherwise."""
    ops = torch.ops.lcengine
    dev = "meta"
    x = torch.empty(4, D, device=dev, requires_grad=True)
    x2 = torch.empty(4, D, device=dev, requires_grad=True)
    inv = torch.empty(D, device=dev)
    target = torch.empty(4, D, device=dev)
    outs = {
        "gaussian_kl": (ops.gaussian_kl(x, x2, reduction, True, "native")[0], (x, x2)),
        "distance_penalty": (
            ops.distance_penalty(x, x2, inv, reduction, True, "native")[0],
            (x, x2),
        ),
        "constraint_loss": (
            ops.constraint_loss(x, target, None, 0, reduction, True, "native")[0],
            (x,),
        ),
        "reparameterize": (ops.reparameterize(x, x2, 3, 0, "native"), (x, x2)),
    }
    for name, (out, inputs) in outs.items():
        seed = torch.ones_like(out) if upstream == "ones" else torch.empty_like(out)
        grads = torch.autograd.grad(out, inputs, seed)
        assert all(g.shape == t.shape and g.device.type == dev for g, t in zip(grads, inputs)), name


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["native", "triton", "eager"])
def test_cuda_graph_capture_of_every_op(backend):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    reason = be.unavailable_reason(backend, torch.device("cuda"))
    if reason is not None:
        pytest.skip(reason)
    torch.manual_seed(0)
    module = LatentLosses().cuda()
    x, y, row_weight = _inputs("cuda")
    x = x.requires_grad_(True)
    adam = AdamState(torch.randn(5, D, device="cuda"))
    adam_ref = AdamState(adam.z)
    active = torch.rand(5, device="cuda") > 0.3

    def step():
        kl, distance, bce = module(x, y)
        loss = (kl * row_weight).sum() + distance + 3.0 * bce
        grads = torch.autograd.grad(loss, [x, *module.parameters()])
        adam(grads[0], 3, active)
        return [kl, distance, bce], list(grads)

    with lcengine.use_backend(backend):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: Triton compiles, the allocator fills
            step()
        torch.cuda.current_stream().wait_stream(side)
        adam.load_state_dict(adam_ref.state_dict())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # (entering and leaving synchronize on purpose)
            torch.cuda.set_sync_debug_mode("error")
            try:
                outs, grads = step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    with torch.no_grad():  # new inputs and a fresh state, then replay
        x.copy_(torch.randn_like(x))
    adam.load_state_dict(adam_ref.state_dict())
    torch.cuda.set_sync_debug_mode("error")
    try:
        graph.replay()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    ref_outs, ref_grads = _reference(module, x.detach(), y, row_weight)
    _assert_all_close([t.detach() for t in outs], ref_outs, atol=1e-4, rtol=1e-4)
    _assert_all_close(grads, ref_grads, atol=1e-4, rtol=1e-4)
    with lcengine.use_backend("eager"):
        adam_ref(ref_grads[0], 3, active)
    torch.testing.assert_close(adam.z, adam_ref.z, atol=1e-5, rtol=1e-5)
