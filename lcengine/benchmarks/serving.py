# SPDX-License-Identifier: Apache-2.0
"""Per-request latency of a fitted run's sampler (``lcengine bench --ops serving``).

One request is one call on a batch of ``B`` rows (``B`` in ``--serving-batches``, default 1 and
64) whose inputs were prepared beforehand (:meth:`ConditionalSampler.inputs
<lcengine.method.sampler.ConditionalSampler.inputs>`: a pool of requests, each naming one of
the data's attributes with the rest completed from the training set's combinations, prior
latents), timed from the call to its output being materialized (on CUDA, after
``torch.cuda.synchronize``; ONNX Runtime returns host arrays). The contenders:

- ``eager module``: :class:`~lcengine.method.sampler.SamplerModule` (actor, then decoder) under
  ``torch.no_grad()``;
- ``ConditionalSampler``: ``sampler(targets, latents)``, actor mode with its input checks;
- ``AOTInductor package``: the ``.pt2`` of :func:`~lcengine.method.export.export_sampler`,
  loaded with ``torch._inductor.aoti_load_package``;
- ``ONNX Runtime``: the ``.onnx`` of the same exporter in an ``InferenceSession`` with the CPU
  provider (CUDA provider on a GPU when ONNX Runtime has it), its intra-op threads set to torch's
  thread count, one inter-op thread, sequential execution;
- ``torch.compile`` (``compile_module=True``, ``--serving-compile``): the eager module under
  ``torch.compile`` (its first call per batch size, the compile, is reported apart);
- ``optimize (fused)`` and ``optimize (eager)``: ``sampler(targets, latents, mode="optimize")``
  with the default backend (the fused ``lcengine.optimize_latents``) and under
  ``lcengine.use_backend("eager")``; fewer requests, the optimizer takes milliseconds per call.
  Both see the same sequence of requests; the steps the optimizer took (mean per row and the
  longest row per request: a batch's call lasts as long as its slowest row) are reported.

Contenders of one mode are timed in alternating blocks (:func:`~.timing.measure_samples`): every
contender's figure is what it measures in its own steady state and a slow phase of the machine
hits all of them. Each row reports p50 and p99 of the per-request wall time (linear
interpolation between order statistics), the mean, and requests/s = 1 / mean latency (one
client sending requests back to back) with the rows/s it means.

The run benched is ``--serving-run RUN`` or, by default, a synthetic run of the digits
application's size (:data:`SERVING_APPLICATION`, no data set): latent dimension 16, the digits
VAE decoder's MLP ``16 -> 512 -> 512 -> 784`` with a sigmoid as an ``nn.Module`` (random
weights: timing does not depend on them), 15 attributes (a one-hot group of 10 and 5 binary),
critics and actor of the digits preset (4 x 256 ReLU, label embedding 32) fitted briefly on
clustered Gaussian latents, and the digits preset's sampling settings (at most 300 steps,
``tau_r`` 0.9, ``tau_a`` 0.99, starting from the actor); every size is read from
:func:`lcengine.apps.digits.config.demo_config`, so the figures follow the application. Its
briefly fitted realism critic accepts few rows, so the optimizer runs most of its 300 steps
(2026-12-07: every step on every batch-1 request; a mean of 234 per row at batch 64): the
synthetic run's optimize rows are near the preset's worst case. A fitted digits run
(``--serving-run``) stops most rows much earlier; the report gives the steps taken.

The goals (:func:`serving_goals`) are computed from the measured numbers: the AOTInductor
package's p50 at batch 1 at most half the eager module's, and the fused optimizer at least 2x
faster than the eager one at batch 1 (p50).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

SERVING_APPLICATION_PATH = "lcengine.benchmarks.serving:SERVING_APPLICATION"

EAGER_MODULE = "eager module"
SAMPLER = "ConditionalSampler"
AOTI = "AOTInductor package"
ONNX = "ONNX Runtime"
COMPILE = "torch.compile"
OPTIMIZE_FUSED = "optimize (fused)"
OPTIMIZE_EAGER = "optimize (eager)"
ACTOR_CONTENDERS = (EAGER_MODULE, SAMPLER, AOTI, ONNX, COMPILE)
OPTIMIZE_CONTENDERS = (OPTIMIZE_FUSED, OPTIMIZE_EAGER)

PACKAGE_GOAL = 0.5  # the package's p50 at batch 1 over the eager module's, at most
OPTIMIZE_GOAL = 2.0  # the eager optimizer's p50 at batch 1 over the fused one's, at least
INPUT_POOL = 16  # distinct prepared requests per batch size, cycled
OPTIMIZE_POOL = 8  # the first of them, for the optimize contenders


# --------------------------------------------------------------------------- synthetic run


def digits_sizes() -> dict[str, Any]:
    """The digits application's sizes (its full preset): latent dimension, the VAE decoder's
    hidden widths, the critics' and actor's widths, the label embedding, the sampling
    settings, the number of attributes (digit group and binary shape attributes)."""
    from lcengine.apps.digits.config import demo_config
    from lcengine.apps.digits.data import IMAGE_SIDE, NUM_DIGITS, SHAPE_ATTRIBUTE_NAMES

    cfg = demo_config(fast=False)
    t = cfg.training
    return {
        "latent_dim": int(cfg.vae["latent_dim"]),
        "decoder_hidden": [int(h) for h in reversed(cfg.vae["hidden"])],
        "image_side": int(IMAGE_SIDE),
        "digit_classes": int(NUM_DIGITS),
        "binary_attributes": len(SHAPE_ATTRIBUTE_NAMES),
        "hidden": [int(h) for h in t.hidden],
        "attribute_hidden": [int(h) for h in t.attribute_hidden],
        "embed_dim": int(t.embed_dim),
        "sampling": cfg.sampling.to_dict(),
    }


class MLPDecoder(nn.Module):
    """The digits VAE's decoder shape: ``z [B, D] -> ReLU MLP -> sigmoid -> [B, side, side]``,
    weights drawn from ``seed`` (untrained)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], side: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        sizes = [int(latent_dim), *[int(h) for h in hidden], int(side) * int(side)]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            lin = nn.Linear(sizes[i], sizes[i + 1])
            bound = 1.0 / math.sqrt(sizes[i])
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.latent_dim = int(latent_dim)
        self.data_shape = (int(side), int(side))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """# [B, D] -> [B, side, side]"""
        return torch.sigmoid(self.net(z)).reshape((z.shape[0],) + self.data_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)


class ServingApplication:
    """A run-folder application of the digits' size with no data set (module docstring): a
    random MLP decoder, critics and actor fitted for ``fit_steps`` updates (one torch thread)
    on latents in one cluster per class of the group (posterior scale 0.08, about the digits
    VAE's ``sigma_bar``), the binary attributes signs of coordinates."""

    def default_config(
        self, *, fast: bool = False, seed: int = 0, training_overrides: Optional[Mapping] = None
    ) -> dict:
        cfg = digits_sizes()
        cfg.update(
            seed=int(seed),
            rows=2048,
            fit_steps=20 if fast else 100,
            batch_size=128,
            training_overrides=dict(training_overrides or {}),
        )
        return cfg

    def _model(self, config: Mapping[str, Any]):
        from lcengine.method.latent_model import LatentModel

        decoder = MLPDecoder(
            config["latent_dim"], config["decoder_hidden"], config["image_side"], config["seed"]
        )
        return LatentModel.from_decoder(decoder, int(config["latent_dim"]))

    def _spec(self, config: Mapping[str, Any]):
        from lcengine.method.attributes import AttributeSpec

        return AttributeSpec(
            binary=tuple(f"b{i}" for i in range(int(config["binary_attributes"]))),
            groups={"digit": tuple(str(k) for k in range(int(config["digit_classes"])))},
        )

    def _data(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Latents in one cluster per class of the group (centres 3 apart in random
        directions, unit spread: the data occupy a part of the prior, as a VAE's encodings
        do), the binary attributes the signs of coordinates of the spread."""
        rng = np.random.default_rng(int(config["seed"]))
        d, g, b = (int(config[k]) for k in ("latent_dim", "digit_classes", "binary_attributes"))
        n = int(config["rows"])
        centres = rng.standard_normal((g, d))
        centres *= 3.0 / np.linalg.norm(centres, axis=1, keepdims=True)  # [g, D]
        label = rng.integers(0, g, n)
        spread = 0.5 * rng.standard_normal((n, d))  # [N, D]
        mu = (centres[label] + spread).astype(np.float32)
        onehot = np.eye(g, dtype=np.int8)[label]  # [N, g]
        att = np.concatenate([onehot, (spread[:, :b] > 0).astype(np.int8)], axis=1)
        logvar = np.full_like(mu, 2.0 * math.log(0.08))
        return {"mu": mu, "logvar": logvar, "attributes": att}

    def prepare_run(self, folder, config, *, cache_dir=None, use_cache=False, progress=False,
                    log=None, checkpoint_every=0, stop_requested=None, device="cpu"):  # fmt: skip
        from lcengine.method.config import SamplingConfig, TrainingConfig
        from lcengine.method.constraints import LatentConstraints
        from lcengine.method.run import CONSTRAINTS_DIR, Run, write_run_file

        steps = int(config["fit_steps"])
        fields = {
            "hidden": tuple(config["hidden"]),
            "attribute_hidden": tuple(config["attribute_hidden"]),
            "embed_dim": int(config["embed_dim"]),
            "batch_size": int(config["batch_size"]),
            "attribute_steps": steps,
            "realism_steps": steps,
            "actor_every": 2,
            "realism_lr": 1e-3,
            "actor_lr": 1e-3,
            "lambda_dist": 0.01,
            "seed": int(config["seed"]),
            "log_every": max(1, steps),
        }
        fields.update(config.get("training_overrides", {}))
        training = TrainingConfig(**fields)
        lc = LatentConstraints(
            self._model(config),
            self._spec(config),
            training=training,
            sampling=SamplingConfig.from_dict(config["sampling"]),
            device=device,
        )
        write_run_file(folder, SERVING_APPLICATION_PATH, dict(config))
        lc.fit(**self._data(config), progress=progress,
               checkpoint_dir=Path(folder) / CONSTRAINTS_DIR,
               checkpoint_every=checkpoint_every)  # fmt: skip
        return Run(Path(folder), self, SERVING_APPLICATION_PATH, dict(config), lc, None)

    def load_model(self, folder, config):
        return self._model(config), None

    def load_decoder(self, folder, config):
        return self._model(config)

    def zero_shot_rules(self):
        return {}

    def training_data(self, run) -> dict:
        return self._data(run.config)

    def measure(self, run, outputs, names):
        return None

    def example_inputs(self, run, n):
        raise ValueError("the serving benchmark's synthetic run has no data to transform")

    def check_inputs(self, x):
        return x

    def updated_config(self, config, lc):
        return dict(config)


SERVING_APPLICATION = ServingApplication()


def make_serving_run(
    folder: os.PathLike | str, *, device: torch.device | str = "cpu", **overrides: Any
) -> Path:
    """Writes the synthetic run (:data:`SERVING_APPLICATION`'s default config with
    ``overrides``, e.g. ``fit_steps=20, hidden=[32, 32]`` for tests) into ``folder``."""
    config = SERVING_APPLICATION.default_config()
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown synthetic run settings {unknown}; known: {sorted(config)}")
    config.update(overrides)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = torch.get_num_threads()
    try:  # one thread, as `lcengine fit` by default (2 collapse on a busy 2-core machine)
        torch.set_num_threads(1)
        SERVING_APPLICATION.prepare_run(folder, config, device=str(device))
    finally:
        torch.set_num_threads(n)
    return folder


# --------------------------------------------------------------------------- measuring


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, linear between order statistics."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def latency_row(name: str, batch: int, samples: Sequence[float], **extra: Any) -> dict:
    """A table row from per-request seconds."""
    mean = float(np.mean(samples))
    return {
        "contender": name,
        "batch": int(batch),
        "requests": len(samples),
        "p50_ms": percentile(samples, 50) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "mean_ms": mean * 1e3,
        "min_ms": float(min(samples)) * 1e3,
        "max_ms": float(max(samples)) * 1e3,
        "requests_per_second": 1.0 / mean,
        "rows_per_second": batch / mean,
        "skipped": None,
        **extra,
    }


def skipped_row(name: str, batch: int, reason: str) -> dict:
    return {"contender": name, "batch": int(batch), "skipped": reason}


def _wall_timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def timer(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    return timer


def _cycled(fn: Callable[..., object], pool: Sequence[tuple]) -> Callable[[], object]:
    """A no-argument call of ``fn`` on the next prepared inputs of ``pool`` (round and
    round): every contender made this way sees the same sequence of requests."""
    it = itertools.cycle(pool)
    return lambda: fn(*next(it))


def serving_goals(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The goals from measured rows: the package's p50 at batch 1 over the eager module's
    (<= :data:`PACKAGE_GOAL`), the eager optimizer's p50 at batch 1 over the fused one's
    (>= :data:`OPTIMIZE_GOAL`). A goal whose rows were not measured has ``met`` None."""
    p50 = {(r["contender"], r["batch"]): r["p50_ms"] for r in rows if r.get("skipped") is None}

    def goal(name, num, den, target, at_most):
        a, b = p50.get((num, 1)), p50.get((den, 1))
        ratio = None if a is None or b is None else a / b
        met = None if ratio is None else (ratio <= target if at_most else ratio >= target)
        return {
            "goal": name,
            "ratio": ratio,
            "target": target,
            "comparison": "<=" if at_most else ">=",
            "met": met,
        }

    return [
        goal(f"{AOTI} p50 / {EAGER_MODULE} p50 at batch 1", AOTI, EAGER_MODULE, PACKAGE_GOAL, True),
        goal(
            f"{OPTIMIZE_EAGER} p50 / {OPTIMIZE_FUSED} p50 at batch 1",
            OPTIMIZE_EAGER,
            OPTIMIZE_FUSED,
            OPTIMIZE_GOAL,
            False,
        ),
    ]


def onnx_unavailable_reason() -> Optional[str]:
    """Why the ONNX Runtime contender cannot run (None: it can): the ``onnx`` extra's
    packages are not all installed."""
    for name in ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError as exc:
            return f"{name} is not installed ({exc}): pip install 'lcengine[onnx]'"
    return None


def _onnx_session(path: Path, device: torch.device):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return None, "this onnxruntime has no CUDAExecutionProvider"
        providers = ["CUDAExecutionProvider"]
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    settings = {
        "onnxruntime": ort.__version__,
        "providers": session.get_providers(),
        "intra_op_num_threads": opts.intra_op_num_threads,
        "inter_op_num_threads": opts.inter_op_num_threads,
        "execution_mode": "sequential",
    }
    return session, settings


def run_serving_bench(
    *,
    run: Optional[os.PathLike | str] = None,
    batches: Sequence[int] = (1, 64),
    device: Optional[torch.device] = None,
    requests: int = 1000,
    optimize_requests: int = 30,
    warmup: int = 20,
    compile_module: bool = False,
    onnx: bool = True,
    synthetic: Optional[Mapping[str, Any]] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Times the contenders of the module docstring on one run, at torch's current thread
    count.

    Args:
        run: a run folder (``lcengine fit``); None: the synthetic digits-sized run, fitted
            in a temporary folder (``synthetic``: overrides of its config, see
            :func:`make_serving_run`).
        batches: rows per request, each at least 1.
        device: where the sampler runs (default CPU).
        requests: timed requests per actor-mode contender and batch.
        optimize_requests: timed requests per optimize contender and batch.
        warmup: untimed requests per contender and batch before timing (optimize: at most
            2); :func:`~.timing.measure_samples` adds one before each block.
        compile_module: also time ``torch.compile`` of the eager module.
        onnx: time the ONNX Runtime contender (when onnxruntime is installed).
        log: progress lines.

    Returns:
        ``{"run", "synthetic", "model", "device", "environment", "settings", "export",
        "onnx", "rows": [...], "goals": [...]}``: rows as :func:`latency_row` (optimize rows
        with the steps taken) or :func:`skipped_row`; goals as :func:`serving_goals`.

    Raises:
        ValueError: a batch or request count below 1, a run folder that does not exist or
            cannot be loaded, a decoder that is not an ``nn.Module``.
    """
    import lcengine
    from lcengine.method.export import export_sampler
    from lcengine.method.sampler import ConditionalSampler

    from .timing import environment, measure_samples

    device = torch.device("cpu") if device is None else torch.device(device)
    batches = [int(b) for b in batches]
    if not batches or min(batches) < 1:
        raise ValueError(f"serving batches must be >= 1, got {list(batches)}")
    if requests < 1 or optimize_requests < 1 or warmup < 0:
        raise ValueError(
            f"requests ({requests}) and optimize requests ({optimize_requests}) must be >= 1, "
            f"warmup ({warmup}) >= 0"
        )
    if run is not None and not Path(run).is_dir():
        raise ValueError(f"serving run folder {run} does not exist")
    report: dict[str, Any] = {"device": str(device), "rows": []}
    with tempfile.TemporaryDirectory(prefix="lcengine-serving-bench-") as tmp:
        root = Path(tmp)
        if run is None:
            log("serving: fitting the synthetic digits-sized run (one thread) ...")
            t0 = time.perf_counter()
            folder = make_serving_run(root / "run", device=device, **dict(synthetic or {}))
            report["run"] = None
            report["synthetic"] = {
                **SERVING_APPLICATION.default_config(),
                **dict(synthetic or {}),
                "fit_seconds": time.perf_counter() - t0,
            }
        else:
            folder = Path(run)
            report["run"] = str(folder)
            report["synthetic"] = None
        sampler = ConditionalSampler.from_run(folder, device=device)
        module = sampler.module()  # ValueError when the decoder is not an nn.Module
        a = sampler.num_data_attributes
        probe = (
            torch.zeros(1, a, device=device),
            torch.zeros(1, sampler.latent_dim, device=device),
        )  # [1, A], [1, D]
        report["model"] = {
            "attributes": len(sampler.attribute_names),
            "data_attributes": a,
            "latent_dim": sampler.latent_dim,
            "data_shape": list(sampler.data_shape),
            "parameters": sum(p.numel() for p in module.parameters()),  # an encoder's too
            "parameters_read": parameters_read(module, *probe),  # what a forward uses
            "sampling": sampler.sampling.to_dict(),
        }
        report["environment"] = environment(device)
        report["settings"] = {
            "batches": batches,
            "requests": requests,
            "optimize_requests": optimize_requests,
            "warmup": warmup,
            "input_pool": INPUT_POOL,
            "optimize_input_pool": OPTIMIZE_POOL,
        }

        log("serving: exporting the AOTInductor package ...")
        export: dict[str, Any] = {}
        package, aoti_error = None, None
        try:
            res = export_sampler(sampler, root / "sampler.pt2", format="aoti")
            export["aoti"] = {"seconds": res.seconds, "max_abs_diff": res.max_abs_diff}
            from torch._inductor import aoti_load_package

            package = aoti_load_package(str(res.path))
        except Exception as exc:  # the row says why; the others still run
            aoti_error = f"export failed: {type(exc).__name__}: {exc}"[:500]
        session, onnx_info = None, onnx_unavailable_reason() if onnx else "not requested"
        if onnx_info is None:
            log("serving: exporting the ONNX model ...")
            cpu_sampler = (
                sampler if device.type == "cpu" else ConditionalSampler.from_run(folder)
            )  # the exporter traces on the CPU
            try:
                res = export_sampler(cpu_sampler, root / "sampler.onnx", format="onnx")
                export["onnx"] = {"seconds": res.seconds, "max_abs_diff": res.max_abs_diff}
                session, onnx_info = _onnx_session(res.path, device)
            except Exception as exc:
                onnx_info = f"export failed: {type(exc).__name__}: {exc}"[:500]
        report["export"] = export
        report["onnx"] = onnx_info
        compiled = torch.compile(module) if compile_module else None

        zero_shot = len(sampler.attribute_names) > a
        timer = _wall_timer(device)
        words = list(sampler.attribute_names[:a])
        for b in batches:
            pool = []
            for k in range(INPUT_POOL):
                t, _, z = sampler.inputs(words[k % len(words)], b, seed=k)
                mask = None
                if zero_shot:  # actor mode refuses zero-shot columns: the data's only
                    mask = torch.zeros(t.shape, dtype=torch.bool, device=device)
                    mask[:, :a] = True
                pool.append((t, z, mask, t[:, :a].contiguous()))
            if b == 1:
                n = report["model"]["parameters_read"]
                report["weight_read_floor"] = _weight_read_floor(n, device, timer, requests)

            def module_call(t, z, mask, t_data, fn=module):
                with torch.no_grad():
                    return fn(t_data, z)

            actor = {
                EAGER_MODULE: _cycled(module_call, pool),
                SAMPLER: _cycled(lambda t, z, mask, _: sampler(t, z, mask=mask), pool),
            }
            if package is not None:
                actor[AOTI] = _cycled(lambda t, z, mask, t_data: package(t_data, z), pool)
            if session is not None:
                feeds = [({"targets": p[3].cpu().numpy(), "latents": p[1].cpu().numpy()},)
                         for p in pool]  # fmt: skip
                actor[ONNX] = _cycled(lambda f: session.run(["images"], f)[0], feeds)
            compile_error = None if compile_module else "not requested"
            if compiled is not None:
                log(f"serving: compiling the module for batch {b} ...")
                t0 = time.perf_counter()
                try:
                    module_call(*pool[0], fn=compiled)
                    actor[COMPILE] = _cycled(lambda *p: module_call(*p, fn=compiled), pool)
                except Exception as exc:
                    compile_error = f"compile failed: {type(exc).__name__}: {exc}"[:500]
                report.setdefault("compile_seconds", {})[str(b)] = time.perf_counter() - t0
            log(f"serving: batch {b}: {requests} requests per actor-mode contender ...")
            samples = measure_samples(actor, timer, warmup=warmup, reps=requests)
            why = {AOTI: aoti_error, ONNX: str(onnx_info), COMPILE: compile_error}
            for name in ACTOR_CONTENDERS:
                if name in samples:
                    report["rows"].append(latency_row(name, b, samples[name]))
                else:
                    report["rows"].append(skipped_row(name, b, why[name]))

            def optimize(t, z, mask, _, backend=None):
                with lcengine.use_backend(backend) if backend else contextlib.nullcontext():
                    return sampler(t, z, mode="optimize", mask=mask)

            opt_pool = pool[:OPTIMIZE_POOL]
            log(f"serving: batch {b}: {optimize_requests} optimize requests per backend ...")
            samples = measure_samples(
                {
                    OPTIMIZE_FUSED: _cycled(optimize, opt_pool),
                    OPTIMIZE_EAGER: _cycled(lambda *p: optimize(*p, backend="eager"), opt_pool),
                },
                timer,
                warmup=min(warmup, 2),
                reps=optimize_requests,
            )
            for name, backend in ((OPTIMIZE_FUSED, None), (OPTIMIZE_EAGER, "eager")):
                steps = _optimizer_steps(sampler, opt_pool, backend)
                report["rows"].append(latency_row(name, b, samples[name], **steps))
    report["goals"] = serving_goals(report["rows"])
    return report


def parameters_read(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Elements of the parameters one forward of ``module`` on ``inputs`` passes to torch
    functions (an encoder the graph never calls is not counted)."""
    from torch.overrides import TorchFunctionMode

    seen: dict[int, int] = {}

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            for a in itertools.chain(args, kwargs.values()):
                for t in a if isinstance(a, (list, tuple)) else (a,):
                    if isinstance(t, nn.Parameter):
                        seen[id(t)] = t.numel()
            return func(*args, **kwargs)

    with torch.no_grad(), Record():
        module(*inputs)
    return sum(seen.values())


def _weight_read_floor(n: int, device: torch.device, timer, reps: int) -> dict:
    """A measured lower bound of one batch-1 request: one ``torch.mv`` reading a float32
    matrix of ``n`` numbers, as many as the parameters one forward reads (each weight read
    once, in one op). At batch 1 the actor and the decoder are matrix-vector products: a
    request cannot take less than reading its weights."""
    from .timing import measure_samples

    cols = 256
    w = torch.randn((n + cols - 1) // cols, cols, device=device)  # [n / 256, 256]
    x = torch.randn(cols, device=device)  # [256]
    out = torch.empty(w.shape[0], device=device)
    samples = measure_samples(
        {"mv": lambda: torch.mv(w, x, out=out)}, timer, warmup=20, reps=max(10, min(reps, 500))
    )["mv"]
    return {"parameters": n, "bytes": int(w.numel() * 4), "p50_ms": percentile(samples, 50) * 1e3}


def _optimizer_steps(sampler, pool: Sequence[tuple], backend: Optional[str]) -> dict[str, Any]:
    """The steps the sampler's optimize mode takes on the requests of ``pool`` with
    ``backend`` (None: the default): the mean per row, the mean over requests of the longest
    row (a batch's call lasts as long as its slowest row), the share of rows accepted."""
    import lcengine

    per_row, longest, accepted, ran = [], [], [], None
    for t, z, mask, _ in pool:
        m = torch.ones_like(t, dtype=torch.bool) if mask is None else mask
        with lcengine.use_backend(backend) if backend else contextlib.nullcontext():
            # what sampler(t, z, mode="optimize") computes, with the steps and verdicts
            res = sampler.generate(t, z, mask=m, mode="optimize")
        s = res.steps.double()
        per_row.append(float(s.mean()))
        longest.append(float(s.max()))
        accepted.append(float(res.accepted.double().mean()))
        ran = res.backend
    return {
        "mean_steps_per_row": float(np.mean(per_row)),
        "mean_longest_row_steps": float(np.mean(longest)),
        "accepted": float(np.mean(accepted)),
        "max_steps": int(sampler.sampling.steps),
        "backend": ran,
    }


# --------------------------------------------------------------------------- printing


def _goal_line(g: Mapping[str, Any]) -> str:
    if g["met"] is None:
        return f"goal: {g['goal']} {g['comparison']} {g['target']:g}: not measured"
    verdict = "met" if g["met"] else "missed"
    return f"goal: {g['goal']} = {g['ratio']:.2f} ({g['comparison']} {g['target']:g}): {verdict}"


def format_serving_table(report: Mapping[str, Any]) -> str:
    """The latency table of :func:`run_serving_bench`, its goals and settings."""
    m = report["model"]
    what = f"run {report['run']}" if report["run"] else "synthetic digits-sized run"
    lines = [
        f"serving: {what} (D={m['latent_dim']}, {m['data_attributes']} attributes, "
        f"data {m['data_shape']}, {m['parameters_read']:,} parameters read per forward), "
        f"{report['device']}, {report['environment']['torch_threads']} torch threads",
        f"{'contender':<22} {'batch':>5} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'req/s':>9} {'rows/s':>10} {'steps/row':>9} {'longest':>8} {'accepted':>8}",
    ]
    for r in report["rows"]:
        if r.get("skipped"):
            lines.append(f"{r['contender']:<22} {r['batch']:>5} skipped: {r['skipped']}")
            continue
        steps = longest = accepted = ""
        if "mean_steps_per_row" in r:
            steps = f"{r['mean_steps_per_row']:.1f}"
            longest = f"{r['mean_longest_row_steps']:.1f}"
            accepted = f"{100 * r['accepted']:.0f}%"
        lines.append(
            f"{r['contender']:<22} {r['batch']:>5} {r['requests']:>8} {r['p50_ms']:>9.3f} "
            f"{r['p99_ms']:>9.3f} {r['requests_per_second']:>9.1f} "
            f"{r['rows_per_second']:>10.1f} {steps:>9} {longest:>8} {accepted:>8}"
        )
    for g in report["goals"]:
        lines.append(_goal_line(g))
    floor = report.get("weight_read_floor")
    if floor:
        eager = next((r for r in report["rows"] if r["contender"] == EAGER_MODULE
                      and r["batch"] == 1 and not r.get("skipped")), None)  # fmt: skip
        best = (
            f" ({floor['p50_ms'] / eager['p50_ms']:.2f}x the eager module's p50)" if eager else ""
        )
        lines.append(
            f"weight-read floor at batch 1: {floor['p50_ms']:.3f} ms{best}: one torch.mv over "
            f"{floor['bytes'] / 2**20:.1f} MiB, the bytes of the parameters a forward reads"
        )
    ex = report["export"]
    lines.append(
        "export: "
        + ", ".join(
            f"{k} {v['seconds']:.1f} s (max |diff| {v['max_abs_diff']:.1e})" for k, v in ex.items()
        )  # fmt: skip
    )
    if isinstance(report["onnx"], dict):
        o = report["onnx"]
        lines.append(
            f"onnxruntime {o['onnxruntime']} {o['providers']}: {o['intra_op_num_threads']} "
            f"intra-op, {o['inter_op_num_threads']} inter-op threads, {o['execution_mode']}"
        )
    if report.get("compile_seconds"):
        secs = ", ".join(f"batch {k}: {v:.1f} s" for k, v in report["compile_seconds"].items())
        lines.append(f"torch.compile first call: {secs}")
    s = m["sampling"]
    lines.append(
        f"optimize: up to {s['steps']} steps, tau_r {s['tau_r']}, tau_a {s['tau_a']}, start "
        f"{s['start']}; steps/row: Adam updates per row, longest: the request's slowest row, "
        "accepted: rows both critics accept (means over the optimize requests)"
    )
    return "\n".join(lines)


__all__ = [
    "ACTOR_CONTENDERS",
    "MLPDecoder",
    "OPTIMIZE_CONTENDERS",
    "SERVING_APPLICATION",
    "SERVING_APPLICATION_PATH",
    "ServingApplication",
    "digits_sizes",
    "format_serving_table",
    "latency_row",
    "make_serving_run",
    "onnx_unavailable_reason",
    "parameters_read",
    "run_serving_bench",
    "serving_goals",
]
