# SPDX-License-Identifier: Apache-2.0
"""The demo over several seeds: the headline figures' mean and spread.

``lcengine demo --seeds K`` runs the whole demo (split, VAE, classifier, generator, critics,
actor, conditional models, samples: everything the seed keys) once per seed ``S .. S+K-1``, each
into its own run folder ``OUT/seed-S``, then writes ``OUT/seeds.json`` and ``OUT/seeds.md``: for
every headline figure (:func:`headline_figures`) the per-seed values, their mean and sample
standard deviation, and how many seeds met each quality goal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from lcengine.method.io import atomic_write_bytes, atomic_write_json

from .evaluation import digit_identity
from .report import table_rows


def headline_figures(metrics: Mapping[str, Any]) -> dict[str, dict[str, Optional[float]]]:
    """``{row: {figure: value}}`` of one demo's metrics: digit identity, all-15-right rate, FCD
    and within-digit diversity (x real) for every generation row (the VAE's methods, the
    conditional models, the generator's methods as ``gan/<method>``), and measured success and
    preservation of the transforms
    (``transform/<edit>/<method>`` and ``transforms/optimize`` over all data-attribute edits)."""
    rows: dict[str, dict[str, Optional[float]]] = {}

    def gen(name: str, m: Mapping[str, Any]) -> None:
        if "row_accuracy" in m:  # an unavailable baseline has only a reason
            rows[name] = {
                "identity": digit_identity(m),
                "all_right": m["row_accuracy"],
                "fcd": m.get("fcd"),
                "diversity": m.get("diversity_vs_real"),
            }

    for k in table_rows(metrics["conditional"]):
        gen(k, metrics["conditional"][k])
    for k, m in metrics.get("conditional_models", {}).items():
        gen(k, m)
    decoder_only = metrics.get("decoder_only", {}).get("conditional", {})
    for k in table_rows(decoder_only):
        gen(f"gan/{k}", decoder_only[k])
    for change, per in metrics.get("transforms", {}).items():
        for method, s in per.items():
            rows[f"transform/{change}/{method}"] = {
                "success": s["measured_success"],
                "preserved": s["unrequested_preserved"],
            }
    ov = metrics.get("transforms_overall", {})
    if ov.get("measured_success") is not None:
        rows["transforms/optimize"] = {
            "success": ov["measured_success"],
            "preserved": ov["unrequested_preserved"],
        }
    return rows


def _mean_sd(values: Sequence[float]) -> tuple[float, Optional[float]]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize_seeds(per_seed: Mapping[int, Mapping[str, Any]]) -> dict:
    """Mean and spread of the headline figures over seeds' metrics ``{seed: metrics}``.

    Returns:
        ``{"seeds": [...], "figures": {row: {figure: {"values", "mean", "sd"}}},
        "goals": {goal: {"met": k, "of": n, "values": [...]}}, "split", "rows"}``; ``sd`` is
        the sample standard deviation (None for one seed); a figure missing in some seed (an
        unavailable baseline) is summarized over the seeds that have it.

    Raises:
        ValueError: no seeds.
    """
    if not per_seed:
        raise ValueError("per_seed must hold the metrics of at least one seed")
    seeds = sorted(per_seed)
    heads = {s: headline_figures(per_seed[s]) for s in seeds}
    figures: dict[str, dict[str, dict]] = {}
    for s in seeds:
        for row, figs in heads[s].items():
            for fig in figs:
                figures.setdefault(row, {}).setdefault(fig, {})
    for row, figs in figures.items():
        for fig in figs:
            values = [
                heads[s][row][fig]
                for s in seeds
                if row in heads[s] and heads[s][row].get(fig) is not None
            ]
            mean, sd = _mean_sd(values) if values else (None, None)
            figs[fig] = {"values": values, "mean": mean, "sd": sd}
    goals: dict[str, dict] = {}
    for s in seeds:
        for name, g in per_seed[s].get("goals", {}).items():
            e = goals.setdefault(name, {"met": 0, "of": 0, "values": [], "target": g["target"]})
            e["met"] += int(bool(g["met"]))
            e["of"] += 1
            e["values"].append(g["value"])
    info = per_seed[seeds[0]].get("conditional_info", {})
    return {
        "seeds": seeds,
        "figures": figures,
        "goals": goals,
        "split": info.get("split"),
        "rows": info.get("rows"),
    }


def _cell(e: Optional[Mapping[str, Any]], pct: bool, digits: int = 1) -> str:
    if not e or e.get("mean") is None:
        return "n/a"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    mean = f"{scale * e['mean']:.{digits}f}{unit}"
    if e.get("sd") is None:
        return mean
    return f"{mean} ± {scale * e['sd']:.{digits}f}"


def render_seeds(summary: Mapping[str, Any]) -> str:
    """Markdown of :func:`summarize_seeds`: generation and transform tables, goals per seed."""
    seeds = summary["seeds"]
    figs = summary["figures"]
    lines = [
        f"# lcengine demo over {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        f"Mean ± sample standard deviation over the seeds; each seed is a whole demo (its own "
        f"split, models and samples) in `seed-<S>/`. Targets: {summary.get('rows')} held-out "
        f"attribute vectors of the {summary.get('split')} split per seed.",
        "",
        "| method | digit identity | all 15 right | FCD | diversity (x real) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row, f in figs.items():
        if "identity" in f:
            lines.append(
                f"| {row} | {_cell(f['identity'], True)} | {_cell(f['all_right'], True)} | "
                f"{_cell(f['fcd'], False)} | {_cell(f.get('diversity'), False, 2)} |"
            )
    lines += ["", "| edit | method | measured success | unrequested preserved |"]
    lines.append("| --- | --- | --- | --- |")
    for row, f in figs.items():
        if "success" in f:
            parts = row.split("/")
            edit, method = (parts[1], parts[2]) if len(parts) == 3 else ("all edits", parts[1])
            lines.append(
                f"| {edit} | {method} | {_cell(f['success'], True)} | "
                f"{_cell(f['preserved'], True)} |"
            )
    lines += ["", "| quality goal | target (seed " + str(seeds[0]) + ") | met in |"]
    lines.append("| --- | --- | --- |")
    for name, g in summary["goals"].items():
        lines.append(f"| {name.replace('_', ' ')} | {g['target']} | {g['met']} of {g['of']} |")
    lines.append("")
    return "\n".join(lines)


def run_seeds(
    out: Union[str, Path],
    seeds: Sequence[int],
    *,
    run_one: Optional[Callable[..., dict]] = None,
    **demo_kwargs: Any,
) -> dict:
    """Runs the demo once per seed into ``out/seed-<S>`` and writes ``seeds.json`` and
    ``seeds.md`` into ``out``.

    Args:
        out: the parent folder.
        seeds: distinct non-negative seeds.
        run_one: the demo (default :func:`~lcengine.apps.digits.demo.run_demo`).
        **demo_kwargs: passed to each demo (``fast``, ``split``, ``cache_dir``, ...).

    Returns:
        The summary (:func:`summarize_seeds`).

    Raises:
        ValueError: no seeds, a repeated or negative seed, or ``out`` is a file.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} exists and is not a folder")
    if run_one is None:
        from .demo import run_demo as run_one
    per_seed = {s: run_one(folder / f"seed-{s}", seed=s, **demo_kwargs) for s in seeds}
    summary = summarize_seeds(per_seed)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "seeds.json", summary)
    atomic_write_bytes(folder / "seeds.md", render_seeds(summary).encode("utf-8"))
    return summary


__all__ = ["headline_figures", "render_seeds", "run_seeds", "summarize_seeds"]
