# SPDX-License-Identifier: Apache-2.0
"""Choosing the optimizer's settings on the validation split.

:func:`tune` scores candidate :class:`~lcengine.method.config.SamplingConfig` overrides of a
digits run on the **validation** half of the held-out digits only
(:func:`~lcengine.apps.digits.evaluation.evaluation_rows`); the demo reports the test half,
which no setting was chosen by. There is no way to tune on ``test`` here.

* generation: for every candidate, optimizer samples for the split's attribute vectors; digit
  identity, all-15-right rate, FCD, and the critics' acceptance;
* transforms: for every candidate, each of the demo's edits on the split's images; measured
  success and preservation, beside the baseline's.

``python -m lcengine.apps.digits.tuning RUN [--out tuning.json]`` prints both tables for the
default candidates (:data:`GENERATION_CANDIDATES`, :data:`TRANSFORM_CANDIDATES`), the grid
behind the full preset's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lcengine.method.io import atomic_write_json
from lcengine.method.metrics import attribute_metrics, frechet_distance
from lcengine.method.run import Run, load_run

from .data import ATTRIBUTES
from .evaluation import (
    FCD_REFERENCE_ROWS,
    digit_identity,
    evaluation_rows,
    measure_attributes,
    measure_transform,
    transform_sources,
)

_A = len(ATTRIBUTES)

ACTOR_ROW = "actor alone (no optimizer)"  # the first row of the generation table
# label -> SamplingConfig overrides of the run's sampling config
GENERATION_CANDIDATES: dict[str, dict] = {
    "prior start, w_dist 0.001, tau_a 0.5": dict(start="latents", w_dist=0.001, tau_a=0.5),
    "prior start, w_dist 0.001, tau_a 0.99": dict(start="latents", w_dist=0.001, tau_a=0.99),
    "actor start, w_dist 0.001, tau_a 0.5": dict(start="actor", w_dist=0.001, tau_a=0.5),
    "actor start, w_dist 0.003, tau_a 0.99": dict(start="actor", w_dist=0.003, tau_a=0.99),
    "actor start, w_dist 0.01, tau_a 0.99": dict(start="actor", w_dist=0.01, tau_a=0.99),
}
# label -> SamplingConfig overrides of the run's transform config
TRANSFORM_CANDIDATES: dict[str, dict] = {
    "encoding start, w_dist 0.01, tau_a 0.99": dict(start="latents", w_dist=0.01, tau_a=0.99),
    "actor start, w_dist 0.001, tau_a 0.999": dict(start="actor", w_dist=0.001, tau_a=0.999),
    "actor start, w_dist 0.001, tau_a 0.999, w_attr 3": dict(
        start="actor", w_dist=0.001, tau_a=0.999, w_attr=3.0
    ),
    "actor start, w_dist 0.001, tau_a 0.999, lr 0.1": dict(
        start="actor", w_dist=0.001, tau_a=0.999, lr=0.1
    ),
}


def tune(
    run: Run,
    *,
    generation: Optional[Mapping[str, Mapping[str, Any]]] = None,
    transforms: Optional[Mapping[str, Mapping[str, Any]]] = None,
    rows: Optional[int] = None,
    seed: int = 1,
) -> dict:
    """Scores candidate sampling settings on the validation split of a digits run.

    Args:
        run: a digits run folder (its context is a
            :class:`~lcengine.apps.digits.app.DigitsContext`).
        generation: ``{label: overrides}`` of the run's sampling config (default
            :data:`GENERATION_CANDIDATES`; empty: no generation table).
        transforms: ``{label: overrides}`` of its transform config (default
            :data:`TRANSFORM_CANDIDATES`; empty: no transform table).
        rows: validation targets (default the run's ``eval_rows``); each edit takes up to the
            run's ``transform_rows`` of them.
        seed: seed of the prior samples every generation candidate starts from.

    Returns:
        ``{"split": "validation", "rows", "generation": {label: {"identity", "all_right",
        "fcd", "accepted", "mean_steps", "seconds", "overrides"}}, "transforms": {label:
        {edit: {"success", "preserved"}}}}``; the generation table starts with the actor alone
        (:data:`ACTOR_ROW`), the transforms table with the baseline.

    Raises:
        ValueError: an override that is not a sampling setting or is out of range.
    """
    ctx = run.context
    cfg, ds, clf, lc = ctx.config, ctx.data, ctx.classifier, run.constraints
    generation = GENERATION_CANDIDATES if generation is None else generation
    transforms = TRANSFORM_CANDIDATES if transforms is None else transforms
    for table, base in ((generation, lc.sampling), (transforms, lc.transform_config)):
        for overrides in table.values():  # every candidate checked before any work
            dataclasses.replace(base, **overrides)
    idx = evaluation_rows(cfg.seed, ds.heldout_digits, "validation", rows or cfg.eval_rows)
    x, y = ds.heldout_images[idx], ds.heldout_attributes[idx]  # [N, 28, 28], [N, 15]
    ref = clf.features(ds.train_images[:FCD_REFERENCE_ROWS])  # [M, F]
    y_full = np.zeros((len(idx), lc.num_attributes), dtype=np.int8)  # [N, A]
    y_full[:, :_A] = y
    mask = np.zeros_like(y_full, dtype=bool)
    mask[:, :_A] = True
    out: dict[str, Any] = {"split": "validation", "rows": int(len(idx))}
    gen: dict[str, dict] = {}
    candidates = {ACTOR_ROW: None, **generation} if generation else {}
    for label, overrides in candidates.items():
        t0 = time.perf_counter()
        if overrides is None:  # the actor alone, the optimizer's usual start
            res = lc.generate(y_full, mask, method="actor", seed=seed)
        else:
            res = lc.generate(y_full, mask, method="optimize", seed=seed, **overrides)
        seconds = time.perf_counter() - t0
        m = attribute_metrics(
            y, measure_attributes(res.images, clf, ds.shape_thresholds), None, ATTRIBUTES
        )
        gen[label] = {
            "identity": digit_identity(m),
            "all_right": m["row_accuracy"],
            "fcd": frechet_distance(clf.features(res.images), ref),
            "accepted": float(res.converged.mean()),
            "mean_steps": float(res.steps.mean()),
            "seconds": seconds,
            "overrides": None if overrides is None else dict(overrides),
        }
    out["generation"] = gen
    trs: dict[str, dict] = {}
    if transforms:
        candidates = {"baseline": None, **transforms}
        for change in cfg.transform_changes:
            src = transform_sources(run, x, y, change, cfg.transform_rows)
            if src.size == 0:
                continue
            for label, overrides in candidates.items():
                method = "baseline" if overrides is None else "optimize"
                _, s, _, _ = measure_transform(
                    run, x[src], change, method=method, **(overrides or {})
                )
                trs.setdefault(label, {})[change] = {
                    "success": s["measured_success"],
                    "preserved": s["unrequested_preserved"],
                    "rows": s["num_rows"],
                }
    out["transforms"] = trs
    return out


def render_tuning(result: Mapping[str, Any]) -> str:
    """Markdown tables of :func:`tune`'s result."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"Validation split, {result['rows']} targets.", ""]
    if result["generation"]:
        lines += [
            "| optimizer (generation) | digit identity | all 15 right | FCD | accepted | steps |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for label, g in result["generation"].items():
            lines.append(
                f"| {label} | {pct(g['identity'])} | {pct(g['all_right'])} | {g['fcd']:.1f} | "
                f"{pct(g['accepted'])} | {g['mean_steps']:.0f} |"
            )
        lines.append("")
    if result["transforms"]:
        edits: list[str] = []
        for per in result["transforms"].values():
            edits += [e for e in per if e not in edits]
        lines.append("| transform: success / preserved | " + " | ".join(edits) + " |")
        lines.append("| --- |" + " --- |" * len(edits))
        for label, per in result["transforms"].items():
            cells = [
                f"{pct(per[e]['success'])} / {pct(per[e]['preserved'])}" if e in per else "n/a"
                for e in edits
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lcengine.apps.digits.tuning RUN [--out FILE] [--rows N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m lcengine.apps.digits.tuning",
        description="Score the optimizer's candidate settings on the validation split of a "
        "digits run folder (lcengine demo's output).",
    )
    parser.add_argument("run", help="run folder")
    parser.add_argument("--out", default=None, help="also write the figures to this .json")
    parser.add_argument("--rows", type=int, default=None, help="validation targets")
    args = parser.parse_args(argv)
    if args.rows is not None and args.rows < 1:
        parser.error(f"--rows must be at least 1, got {args.rows}")
    import torch

    torch.set_num_threads(1)
    result = tune(load_run(args.run), rows=args.rows)
    print(render_tuning(result))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "ACTOR_ROW",
    "GENERATION_CANDIDATES",
    "TRANSFORM_CANDIDATES",
    "main",
    "render_tuning",
    "tune",
]
