# SPDX-License-Identifier: Apache-2.0
"""Evaluation of a digits run, independent of the method's critics.

* :func:`measure_attributes` is the one measurement of attributes on images: digit one-hot from
  the pixel classifier, shape attributes measured on the image itself
  (:func:`~lcengine.apps.digits.data.shape_attributes`), zero-shot attributes by their rule.
* :func:`evaluate_run` runs every measurement of the demo: conditional generation for held-out
  attribute vectors (attribute metrics and FCD per method), attribute requests, identity-
  preserving transforms, the zero-shot constraint, and the optimizer's speed.
* :func:`evaluate_decoder_only` scores the decoder-only model (the GAN generator's
  constraints) on the same targets with the same measurements.
* :func:`quality_goals` states the demo's targets against those figures.

Targets come from one half of the held-out digits (:func:`evaluation_rows`): settings are
chosen on ``validation`` and the demo reports ``test``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from lcengine.method.metrics import (
    attribute_metrics,
    evaluate_methods,
    feature_diversity,
    frechet_distance,
)
from lcengine.method.run import Run
from lcengine.method.sampling import METHODS
from lcengine.method.timing import time_optimizer
from lcengine.method.zeroshot import Rule, apply_rule

from .classifier import PixelClassifier
from .conditional import KINDS
from .data import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    DIGIT_COLUMNS,
    check_images,
    digit_one_hot,
    shape_attributes,
)

_A = len(ATTRIBUTE_NAMES)  # the data's attribute columns (15); zero-shot columns follow


def measure_attributes(
    images: np.ndarray,
    classifier: PixelClassifier,
    thresholds: Mapping[str, float],
    names: Sequence[str] = ATTRIBUTE_NAMES,
    rules: Optional[Mapping[str, Rule]] = None,
) -> np.ndarray:
    """Attributes measured on images, without the method's models.

    Built-in attributes (:data:`~lcengine.apps.digits.data.ATTRIBUTE_NAMES`): the digit one-hot
    from the classifier, then the shape attributes measured on the image. Any other name (a
    zero-shot constraint) is measured by its rule in ``rules``.

    Args:
        images: values in [0, 1]. # [N, 28, 28]
        classifier: the pixel classifier (digit identity).
        thresholds: shape thresholds (``MnistAttributes.shape_thresholds``).
        names: the columns to return (default: the 15 built-in attributes).
        rules: ``name -> rule(images) -> bool [N]`` for names that are not built in.

    Returns:
        int8 0/1, columns ``names``. # [N, len(names)]

    Raises:
        ValueError: a name that is neither built in nor has a rule.
    """
    if not isinstance(classifier, PixelClassifier):
        raise TypeError(f"classifier must be a PixelClassifier, got {type(classifier).__name__}")
    x = check_images(images)  # [N, 28, 28] float64
    builtin = np.concatenate(
        [digit_one_hot(classifier.predict(x)), shape_attributes(x, thresholds)], axis=1
    ).astype(np.int8)  # [N, 15]
    names = tuple(names)
    if names == ATTRIBUTE_NAMES:
        return builtin
    rules = dict(rules or {})
    cols = []
    for name in names:
        if name in ATTRIBUTE_NAMES:
            cols.append(builtin[:, ATTRIBUTE_NAMES.index(name)])
        elif name in rules:
            cols.append(apply_rule(rules[name], images).astype(np.int8))
        else:
            raise ValueError(
                f"cannot measure attribute {name!r}: it is not built in "
                f"({list(ATTRIBUTE_NAMES)}) and has no rule; pass "
                "rules={name: predicate}"
            )
    return np.stack(cols, axis=1).astype(np.int8).reshape(x.shape[0], len(names))


EVAL_SPLITS = ("validation", "test")
"""The two halves of the held-out digits: settings are tuned on ``validation``; the demo reports
on ``test``, which no setting was chosen by."""
FCD_REFERENCE_ROWS = 1000  # training images whose classifier features are the FCD reference


def evaluation_rows(seed: int, heldout_digits: np.ndarray, split: str, rows: int) -> np.ndarray:
    """Indices into the held-out set of one evaluation split, at most ``rows`` of them.

    The held-out set is halved per digit by a permutation seeded by ``seed``: the first half
    of each digit's rows is ``validation``, the second ``test`` (disjoint, each with the same
    count of every digit). The first ``rows`` of the split, in a seeded random order, are
    returned sorted. # heldout_digits [M] -> [min(rows, M // 2)]

    Raises:
        ValueError: ``split`` is not one of :data:`EVAL_SPLITS`.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    digits = np.asarray(heldout_digits)
    rng = np.random.default_rng(seed + 12345)
    halves: dict[str, list] = {"validation": [], "test": []}
    for k in np.unique(digits):
        idx = np.flatnonzero(digits == k)
        idx = idx[rng.permutation(idx.size)]
        half = idx.size // 2
        halves["validation"].append(idx[:half])
        halves["test"].append(idx[half : 2 * half])
    part = np.concatenate(halves[split])
    part = part[rng.permutation(part.size)]
    return np.sort(part[:rows])


def _fcd(clf: PixelClassifier, images: np.ndarray, ref: np.ndarray) -> float:
    return frechet_distance(clf.features(images), ref)


def _digit(attributes: np.ndarray) -> np.ndarray:
    """The digit class of each 15-column attribute row. # [N, 15] -> [N]"""
    return np.asarray(attributes)[:, DIGIT_COLUMNS].argmax(1)


def _diversity(
    clf: PixelClassifier, images: np.ndarray, targets: np.ndarray, real: Optional[float]
) -> Optional[float]:
    """Within-digit feature diversity of images for their target digits, over real images'
    (:func:`~lcengine.method.metrics.feature_diversity`; 1 = as diverse as real digits)."""
    d = feature_diversity(clf.features(images), _digit(targets))
    return None if d is None or not real else d / real


def measure_transform(
    run: Run, x: np.ndarray, change: str, *, method: str, progress: bool = False, **overrides: Any
) -> tuple[Any, dict, np.ndarray, np.ndarray]:
    """One edit of images, measured: ``(result, summary, success, preserved)``.

    ``success[i]``: the edited image measures the requested value of every requested
    attribute; ``preserved[i]``: every unrequested attribute measures as on the reconstruction.
    The summary is the result's (:meth:`~lcengine.method.sampling.TransformResult.summary`) with
    ``measured_success``, ``unrequested_preserved`` and ``digit_preserved`` (rates).

    Args:
        run: the run (its constraints edit, its measurement reads).
        x: the images to edit. # [B, 28, 28]
        change: the request, e.g. ``"thick"``.
        method: "optimize", "actor" or "baseline".
        progress: tqdm bar.
        **overrides: :class:`~lcengine.method.config.SamplingConfig` fields.
    """
    tr = run.constraints.transform(x, change, method=method, progress=progress, **overrides)
    meas_edit = run.measure(tr.images)  # [B, A]
    meas_src = run.measure(tr.source_images)  # [B, A]
    req = tr.mask
    success = ((meas_edit == tr.attributes) | ~req).all(axis=1)  # [B]
    kept = ((meas_edit == meas_src) | req).all(axis=1)  # [B]
    s = tr.summary()
    s.update(
        {
            "measured_success": float(success.mean()),
            "unrequested_preserved": float(kept.mean()),
            "digit_preserved": float(
                (
                    meas_edit[:, DIGIT_COLUMNS].argmax(1) == meas_src[:, DIGIT_COLUMNS].argmax(1)
                ).mean()
            ),
        }
    )
    return tr, s, success, kept


def transform_sources(
    run: Run, x: np.ndarray, attributes: np.ndarray, change: str, rows: int
) -> np.ndarray:
    """Indices of the first ``rows`` images that do not already have ``change``: for a data
    attribute their labels differ from the request; for a zero-shot one its rule says so.
    # x [N, 28, 28], attributes [N, 15] -> [<= rows]"""
    lc = run.constraints
    values, mask = lc.parse(change)
    base_cols = np.flatnonzero(mask[:_A])
    zero_shot = mask[_A:]
    if zero_shot.any():
        name = lc.attribute_names[_A + int(np.flatnonzero(zero_shot)[0])]
        truth = np.asarray(lc.rules()[name](x), dtype=np.int8)
        needs = truth != values[_A:][zero_shot][0]
    else:
        needs = ~(attributes[:, base_cols] == values[base_cols]).all(axis=1)
    return np.flatnonzero(needs)[:rows]


def evaluate_run(
    run: Run,
    *,
    split: str = "test",
    conditional_models: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """All the demo's measurements. -> (metrics, artifacts for figures and samples.npz)

    Args:
        run: a digits run folder (its context is a
            :class:`~lcengine.apps.digits.app.DigitsContext`).
        split: the held-out half whose images give the targets and the transforms' sources
            (:func:`evaluation_rows`): ``"validation"`` to choose settings, ``"test"`` to
            report. The FCD reference is :data:`FCD_REFERENCE_ROWS` training images.
        conditional_models: ``{method: ConditionalModel}`` to score on the same targets
            (:func:`~lcengine.apps.digits.app.obtain_conditional_models`).
        progress: tqdm bars.
        log: stage messages.
    """
    ctx = run.context
    cfg, ds, clf, lc = ctx.config, ctx.data, ctx.classifier, run.constraints
    eval_idx = evaluation_rows(cfg.seed, ds.heldout_digits, split, cfg.eval_rows)
    ref_images = ds.train_images[:FCD_REFERENCE_ROWS]  # a seeded random order: representative
    ref = clf.features(ref_images)  # [M, F]
    x_eval = ds.heldout_images[eval_idx]  # [N, 28, 28]
    y_eval = ds.heldout_attributes[eval_idx]  # [N, 15]
    measure15 = lambda im: measure_attributes(im, clf, ds.shape_thresholds)  # noqa: E731
    metrics: dict[str, Any] = {}
    art: dict[str, Any] = {"requests": {}, "transforms": {}}

    # 1. conditional generation for held-out attribute vectors (every attribute requested)
    log(f"evaluating on {len(eval_idx)} attribute vectors of the {split} split")
    t0 = time.perf_counter()
    table: dict[str, dict] = {}
    measured_real = measure15(x_eval)  # [N, 15]
    real = attribute_metrics(y_eval, measured_real, None, ATTRIBUTES)
    real["fcd"] = _fcd(clf, x_eval, ref)
    real_diversity = feature_diversity(clf.features(x_eval), _digit(y_eval))
    real["diversity_vs_real"] = 1.0
    table["real"] = real
    # chance: real images read against the targets of other rows
    shuffled = np.random.default_rng(cfg.seed + 777).permutation(len(eval_idx))
    table["chance"] = attribute_metrics(y_eval[shuffled], measured_real, None, ATTRIBUTES)
    mu, _ = lc.model.encode_dataset(x_eval)
    recon = lc.model.decode_batched(mu).numpy().astype(np.float32)
    rec = attribute_metrics(y_eval, measure15(recon), None, ATTRIBUTES)
    rec["fcd"] = _fcd(clf, recon, ref)
    rec["diversity_vs_real"] = _diversity(clf, recon, y_eval, real_diversity)
    table["reconstruction"] = rec
    y_full = np.zeros((len(eval_idx), lc.num_attributes), dtype=np.int8)
    y_full[:, :_A] = y_eval
    mask_full = np.zeros_like(y_full, dtype=bool)
    mask_full[:, :_A] = True
    gen_metrics, gen_samples = evaluate_methods(
        lc,
        y_full,
        mask_full,
        measure=lambda im: run.measure(im),
        features=clf.features,
        reference_features=ref,
        methods=METHODS,
        seed=cfg.seed + 1,
        progress=progress,
    )
    for k, v in gen_metrics.items():
        v["diversity_vs_real"] = _diversity(
            clf, gen_samples[k].images, gen_samples[k].attributes[:, :_A], real_diversity
        )
        table[k] = v
    metrics["conditional"] = table
    metrics["conditional_info"] = {
        "split": split,
        "rows": int(len(eval_idx)),
        "reference_rows": int(len(ref_images)),
        "seconds": time.perf_counter() - t0,
    }
    art["conditional"] = gen_samples
    art["conditional_targets"] = y_full
    art["conditional_mask"] = mask_full
    if ctx.gan_constraints is not None:
        metrics["decoder_only"], art["decoder_only"] = evaluate_decoder_only(
            run,
            y_eval,
            ref,
            seed=cfg.seed + 1,
            reference_diversity=real_diversity,
            progress=progress,
            log=log,
        )
    if conditional_models:
        metrics["conditional_models"], art["conditional_models"] = evaluate_conditional_models(
            conditional_models, clf, ds.shape_thresholds, y_eval, ref, real_diversity, cfg.seed + 1
        )
    # the fused optimizer against its eager autograd loop, on the same conditional workload
    log("timing the optimizer: fused vs the eager autograd loop")
    metrics["optimizer_timing"] = time_optimizer(lc, y_full, mask_full, seed=cfg.seed + 1)

    # 2. attribute requests (grids)
    log(f"sampling {len(cfg.requests)} attribute requests")
    req_metrics: dict[str, dict] = {}
    for i, request in enumerate(
        tqdm(
            cfg.requests, desc="attribute requests", disable=None if progress else True, leave=False
        )
    ):
        per_method = {}
        art["requests"][request] = {}
        for method in METHODS:
            res = lc.sample(request, cfg.request_samples, method=method, seed=cfg.seed + 100 + i)
            meas = run.measure(res.images)
            m = attribute_metrics(res.attributes, meas, res.mask, lc.attribute_spec)
            per_method[method] = {
                "overall_accuracy": m["overall_accuracy"],
                "row_accuracy": m["row_accuracy"],
                "accepted_fraction": float(res.converged.mean()),
                "mean_steps": float(res.steps.mean()),
            }
            art["requests"][request][method] = (res, meas)
        req_metrics[request] = per_method
    metrics["requests"] = req_metrics

    # 3. identity-preserving transforms of held-out images
    log(f"transforming held-out images ({len(cfg.transform_changes)} edits)")
    tr_metrics: dict[str, dict] = {}
    all_conv, all_steps, all_success, all_kept = [], [], [], []
    for change in tqdm(
        list(cfg.transform_changes) + [cfg.zero_shot_rule],
        desc="transforms",
        disable=None if progress else True,
        leave=False,
    ):
        src = transform_sources(run, x_eval, y_eval, change, cfg.transform_rows)
        if src.size == 0:
            continue
        x_src = x_eval[src]
        entry = {}
        # the attribute-vector baseline only knows the data's attributes (no zero-shot vector)
        methods = ("optimize",) if change == cfg.zero_shot_rule else ("optimize", "baseline")
        for method in methods:
            tr, s, success, kept = measure_transform(
                run, x_src, change, method=method, progress=progress
            )
            entry[method] = s
            if method == "optimize":
                art["transforms"][change] = (x_src, tr)
                if change != cfg.zero_shot_rule:
                    all_conv.append(tr.converged)
                    all_steps.append(tr.steps)
                    all_success.append(success)
                    all_kept.append(kept)
        tr_metrics[change] = entry
    metrics["transforms"] = tr_metrics
    conv = np.concatenate(all_conv) if all_conv else np.zeros(0, bool)
    metrics["transforms_overall"] = {
        "measured_success": float(np.concatenate(all_success).mean()) if all_success else None,
        "unrequested_preserved": float(np.concatenate(all_kept).mean()) if all_kept else None,
        "converged_fraction": float(conv.mean()) if conv.size else None,
        "mean_steps": float(np.concatenate(all_steps).mean()) if all_steps else None,
        "rows": int(conv.size),
        "step_limit": int(lc.transform_config.steps),
    }

    # 4. zero-shot
    zs = next(c for c in lc.zero_shot if c.name == cfg.zero_shot_rule)
    rule = lc.rules()[zs.name]
    n = cfg.request_samples * 4
    zs_m = {
        "critic_heldout_balanced_accuracy": zs.heldout_accuracy,
        "rule_positive_rate_on_labelled_prior": zs.positive_rate,
        "labelled_prior_samples": zs.num_samples,
        "real_heldout_positive_rate": float(np.mean(rule(x_eval))),
    }
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


def evaluate_decoder_only(
    run: Run,
    y_eval: np.ndarray,
    reference_features: np.ndarray,
    *,
    seed: int,
    reference_diversity: Optional[float] = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """The decoder-only model (``run.context.gan_constraints``) on the same held-out targets as
    the VAE: every method, every data attribute requested, measured by the same pixel classifier
    and shape measurements, FCD against the same reference features.

    Args:
        run: a digits run whose context holds the generator's constraints.
        y_eval: the held-out target vectors. # [N, 15]
        reference_features: classifier features of the FCD reference images. # [M, F]
        seed: seed of the prior samples every method starts from.
        reference_diversity: within-digit feature diversity of the real images of the targets
            (None: no diversity figure).
        progress: tqdm bars.
        log: stage messages.

    Returns:
        ``({"conditional": per-method metrics, "info": ...}, per-method samples)``. The
        baseline's entry is ``{"unavailable": reason}`` when some attribute value has no
        labelled latent (a generator that never draws some digit).
    """
    ctx = run.context
    glc = ctx.gan_constraints
    if glc is None:
        raise ValueError("the run has no fitted decoder-only constraints")
    log(f"evaluating the decoder-only model (GAN generator) on {len(y_eval)} targets")
    t0 = time.perf_counter()
    clf, ds = ctx.classifier, ctx.data
    table: dict[str, dict] = {}
    samples: dict[str, Any] = {}
    for method in METHODS:
        try:
            t, smp = evaluate_methods(
                glc,
                y_eval,
                np.ones_like(y_eval, dtype=bool),
                measure=lambda im: measure_attributes(im, clf, ds.shape_thresholds),
                features=clf.features,
                reference_features=reference_features,
                methods=(method,),
                seed=seed,
                progress=progress,
            )
        except ValueError as exc:
            if method != "baseline":
                raise
            # the baseline needs latents of every attribute value among the labelled samples
            table[method] = {"unavailable": str(exc)}
            log(f"decoder-only baseline unavailable: {exc}")
            continue
        t[method]["diversity_vs_real"] = _diversity(
            clf, smp[method].images, y_eval, reference_diversity
        )
        table.update(t)
        samples.update(smp)
    tr = glc.trainer
    info = {
        "rows": int(len(y_eval)),
        "labelled_prior_samples": int(ctx.config.gan_label_samples),
        "generator": ctx.gan.config() if ctx.gan is not None else None,
        "gan_final_epoch": (ctx.gan.history[-1] if getattr(ctx.gan, "history", None) else None),
        "attribute_steps": tr.attribute_step,
        "realism_steps": tr.realism_step,
        "actor_steps": tr.actor_step,
        "seconds": time.perf_counter() - t0,
    }
    return {"conditional": table, "info": info}, samples


def evaluate_conditional_models(
    models: Mapping[str, Any],
    clf: PixelClassifier,
    thresholds: Mapping[str, float],
    y_eval: np.ndarray,
    reference_features: np.ndarray,
    reference_diversity: Optional[float],
    seed: int,
) -> tuple[dict, dict]:
    """Each conditional model (:mod:`~lcengine.apps.digits.conditional`) generating for the
    held-out targets, read like the method's samples: attribute metrics, FCD, diversity, and
    its training and generation seconds.

    Returns:
        ``({method: metrics}, {method: (images, measured)})``.
    """
    table, samples = {}, {}
    for name, cm in models.items():
        t0 = time.perf_counter()
        images = np.asarray(cm.model.generate(y_eval, seed), dtype=np.float32)  # [N, 28, 28]
        seconds = time.perf_counter() - t0
        measured = measure_attributes(images, clf, thresholds)  # [N, 15]
        m = attribute_metrics(y_eval, measured, None, ATTRIBUTES)
        m["fcd"] = frechet_distance(clf.features(images), reference_features)
        m["diversity_vs_real"] = _diversity(clf, images, y_eval, reference_diversity)
        m["seconds"] = seconds
        m["train_seconds"] = cm.train_seconds
        m["cached"] = cm.cached
        m["retrains"] = KINDS[name].retrains
        table[name] = m
        samples[name] = (images, measured)
    return table, samples


IDENTITY_TARGET = 0.97  # digit identity of the actor's and the optimizer's samples
FCD_RATIO_TARGET = 0.3  # their FCD over the raw prior samples'
TRANSFORM_SUCCESS_TARGET = 0.9  # measured success of every edit of the optimizer


def digit_identity(metrics: Mapping[str, Any]) -> Optional[float]:
    """The digit identity of one row of a conditional table: the argmax over the digit group's
    columns is the requested digit (``attribute_metrics``' ``per_group["digit"]``)."""
    return metrics.get("per_group", {}).get("digit", {}).get("accuracy")


def quality_goals(metrics: dict) -> dict:
    """The demo's quality goals, each with its target, measured value and verdict.

    For the actor and the optimizer on the evaluation split's targets: digit identity at least
    :data:`IDENTITY_TARGET`; the rate of rows with all 15 attributes right at least the VAE
    reconstructions' (the model's own ceiling); FCD at most :data:`FCD_RATIO_TARGET` times the
    raw prior samples'. For every data-attribute edit: the optimizer's measured success at least
    :data:`TRANSFORM_SUCCESS_TARGET` and above the baseline's, and unrequested attributes
    preserved at least as often as by the baseline. Chance levels ride along in the targets.
    """
    t = metrics["conditional"]
    chance = t.get("chance", {})
    rec_rows = t["reconstruction"]["row_accuracy"]
    prior_fcd = t["prior"]["fcd"]
    goals = {}
    for method in ("actor", "optimize"):
        ident, rows, fcd = digit_identity(t[method]), t[method]["row_accuracy"], t[method]["fcd"]
        goals[f"{method}_digit_identity"] = {
            "target": f">= {IDENTITY_TARGET:.2f} (chance {_f3(digit_identity(chance))})",
            "value": ident,
            "met": bool(ident is not None and ident >= IDENTITY_TARGET),
        }
        goals[f"{method}_all_attributes_right"] = {
            "target": f">= {rec_rows:.4f} (VAE reconstructions; chance "
            f"{_f3(chance.get('row_accuracy'))})",
            "value": rows,
            "met": bool(rows >= rec_rows),
        }
        goals[f"{method}_fcd"] = {
            "target": f"<= {FCD_RATIO_TARGET * prior_fcd:.2f} ({FCD_RATIO_TARGET} x prior "
            f"{prior_fcd:.2f})",
            "value": fcd,
            "ratio_to_prior": fcd / prior_fcd,
            "met": bool(fcd <= FCD_RATIO_TARGET * prior_fcd),
        }
    for change, per in metrics.get("transforms", {}).items():
        if "baseline" not in per:  # a zero-shot edit: the baseline has no vector for it
            continue
        o, b = per["optimize"], per["baseline"]
        goals[f"transform_{change}_success"] = {
            "target": f">= {TRANSFORM_SUCCESS_TARGET:.2f} and > baseline "
            f"{b['measured_success']:.4f}",
            "value": o["measured_success"],
            "met": bool(
                o["measured_success"] >= TRANSFORM_SUCCESS_TARGET
                and o["measured_success"] > b["measured_success"]
            ),
        }
        goals[f"transform_{change}_preserved"] = {
            "target": f">= baseline {b['unrequested_preserved']:.4f}",
            "value": o["unrequested_preserved"],
            "met": bool(o["unrequested_preserved"] >= b["unrequested_preserved"]),
        }
    return goals


def _f3(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3f}"


__all__ = [
    "EVAL_SPLITS",
    "FCD_RATIO_TARGET",
    "FCD_REFERENCE_ROWS",
    "IDENTITY_TARGET",
    "TRANSFORM_SUCCESS_TARGET",
    "digit_identity",
    "evaluate_conditional_models",
    "evaluate_decoder_only",
    "evaluate_run",
    "evaluation_rows",
    "measure_attributes",
    "measure_transform",
    "quality_goals",
    "transform_sources",
]
