# SPDX-License-Identifier: Apache-2.0
"""The picture of an ``lcengine bench`` report: achieved rates per contender against the probes.

One panel per (shape, dtype) of the memory-bound row ops, in GB/s with the copy probe of the
same shape as a reference line; one panel for the optimizer cases whose work is fixed, in
GFLOP/s with the GEMM probe as a reference line. Every bar is one contender (eager, each
torch.compile mode, each lcengine backend) on the same inputs in the same run. Drawn with
matplotlib's Agg backend (no display needed) from the report alone, so a saved JSON report
can be drawn again later.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

# shades per contender family: eager grey, torch.compile oranges, lcengine blues/greens
_EAGER_COLOR = "#8c8c8c"
_COMPILE_COLORS = ["#f28e2b", "#e15759", "#ffbe7d"]
_LCENGINE_COLORS = ["#4e79a7", "#59a14f", "#76b7b2", "#edc948", "#b07aa1"]


def _contender_color(label: str, seen: dict) -> str:
    if label not in seen:
        if label == "eager":
            seen[label] = _EAGER_COLOR
        else:
            family = _COMPILE_COLORS if label.startswith("compile") else _LCENGINE_COLORS
            used = sum(1 for k in seen if k.startswith(label.split("[")[0]))
            seen[label] = family[used % len(family)]
    return seen[label]


def row_op_rates(report: dict) -> "OrderedDict[tuple, OrderedDict]":
    """GB/s per contender of every row op, grouped by ``(shape, dtype)``.

    Returns:
        ``{(shape, dtype): {op: {contender: GB/s}}}``, in report order.
    """
    groups: OrderedDict = OrderedDict()
    for r in report.get("rows") or []:
        nbytes = r.get("bytes_moved") or r["effective_GBps"] * r["time_ms"] * 1e6
        per_op = groups.setdefault((r["shape"], r["dtype"]), OrderedDict())
        rates = per_op.setdefault(r["op"], OrderedDict())
        rates.setdefault("eager", nbytes / (r["eager_ms"] * 1e6))
        for label, ms in (r.get("compile_ms") or {}).items():
            rates.setdefault(label, nbytes / (ms * 1e6))
        rates[f"lcengine[{r['backend']}]"] = nbytes / (r["time_ms"] * 1e6)
    return groups


def _case_label(r: dict) -> str:
    hidden = r["hidden"]
    widths = (
        f"{len(hidden)}x{hidden[0]}"
        if hidden and len(set(hidden)) == 1
        else "-".join(str(h) for h in hidden)
    )
    return f"B={r['rows']} D={r['dim']}\n{widths} {r['activation']}\n{r['steps_per_call']} steps"


def optimizer_rates(report: dict) -> "OrderedDict[str, OrderedDict]":
    """GFLOP/s per contender of every fixed-work optimizer case (converging cases, whose work
    varies, have no GFLOP/s and are left out).

    Returns:
        ``{case label: {contender: GFLOP/s}}``, in report order.
    """
    cases: OrderedDict = OrderedDict()
    for r in (report.get("optimizer") or {}).get("rows") or []:
        if r.get("GFLOPs") is None:
            continue
        flops = r.get("flops_per_call") or r["GFLOPs"] * r["time_ms"] * 1e6
        rates = cases.setdefault(_case_label(r), OrderedDict())
        if r.get("eager_ms"):
            rates.setdefault(f"eager ({r.get('eager', 'float32')})", flops / (r["eager_ms"] * 1e6))
        if r.get("compile_ms"):  # best_compile_mode is the contender's label, "compile[mode]"
            rates.setdefault(
                r.get("best_compile_mode") or "compile", flops / (r["compile_ms"] * 1e6)
            )
        rates[f"lcengine[{r['backend']}]"] = r["GFLOPs"]
    return cases


def _serving_color_key(label: str) -> str:
    """Eager contenders grey, torch.compile orange, lcengine's own in the lcengine shades."""
    if label in ("eager module", "optimize (eager)"):
        return "eager"
    return "compile" if label == "torch.compile" else f"lcengine[{label}]"


def serving_latencies(report: dict) -> "OrderedDict[str, OrderedDict[str, OrderedDict]]":
    """p50 ms per mode ("actor", "optimize"), batch label and contender, from the report's
    ``serving`` rows (skipped rows left out)."""
    out: "OrderedDict[str, OrderedDict[str, OrderedDict]]" = OrderedDict()
    for r in (report.get("serving") or {}).get("rows") or []:
        if r.get("skipped") or r.get("p50_ms") is None:
            continue
        mode = "optimize" if r["contender"].startswith("optimize") else "actor"
        batches = out.setdefault(mode, OrderedDict())
        batches.setdefault(f"batch {r['batch']}", OrderedDict())[r["contender"]] = r["p50_ms"]
    return out


def _bars(
    ax,
    groups: "OrderedDict[str, OrderedDict]",
    unit: str,
    probe: Optional[float],
    probe_label: str,
    colors: dict,
    color_key: Optional[Callable[[str], str]] = None,
) -> None:
    """Grouped bars (one group per x label, one bar per contender present, centred on the
    label), value labels on the bars, and the probe as a dashed horizontal line. A contender's
    color is picked by ``color_key(label)`` (default: the label's first word)."""
    contenders = list(OrderedDict.fromkeys(c for rates in groups.values() for c in rates))
    width = 0.8 / max(max(len(rates) for rates in groups.values()), 1)
    top = max([v for rates in groups.values() for v in rates.values()] + [probe or 0.0])
    labelled = set()
    for i, rates in enumerate(groups.values()):
        present = [c for c in contenders if c in rates]
        for j, label in enumerate(present):
            x = i + width * (j - (len(present) - 1) / 2)
            y = rates[label]
            key = color_key(label) if color_key else label.split(" ")[0]
            color = _contender_color(key, colors)
            ax.bar(
                [x],
                [y],
                width * 0.92,
                color=color,
                zorder=2,
                label=None if label in labelled else label,
            )
            labelled.add(label)
            text = f"{y:.0f}" if y >= 100 else f"{y:.1f}" if y >= 1 else f"{y:.2f}"
            if probe:
                text += f"\n{y / probe:.0%}"
            ax.text(
                x,
                y + top * 0.01,
                text,
                ha="center",
                va="bottom",
                fontsize=7,
                zorder=3,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.85},
            )
    if probe:
        ax.axhline(
            probe,
            color="black",
            linestyle="--",
            linewidth=1.2,
            zorder=1,
            label=f"{probe_label}: {probe:.3g} {unit}",
        )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups), fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel(f"{unit}  (bar labels: rate, % of the probe)" if probe else unit, fontsize=9)
    ax.set_ylim(0, top * 1.35)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda k: not names[k].startswith(probe_label))
    ax.legend(
        [handles[k] for k in order],
        [names[k] for k in order],
        fontsize=7,
        loc="upper left",
        ncol=min(len(names), 4),
        framealpha=0.9,
    )


def _device_title(report: dict) -> str:
    env = report.get("environment") or (report.get("optimizer") or {}).get("environment") or {}
    device = env.get("device", "")
    name = env.get("device_name") or env.get("cpu_name") or env.get("processor", "")
    return (
        f"lcengine bench on {name} ({device}), torch {env.get('torch', '?')}, "
        f"{env.get('torch_threads', '?')} torch threads"
    )


def plot_report(report: dict, path: str) -> None:
    """Draws ``report`` (as returned by ``lcengine bench``, or loaded from its JSON) into the
    PNG ``path``. Bars carry their rate and, in a second line, the fraction of the probe.

    Raises:
        ValueError: the report holds no row to draw.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    row_groups = row_op_rates(report)
    opt_cases = optimizer_rates(report)
    serving = serving_latencies(report)
    panels = len(row_groups) + (1 if opt_cases else 0) + len(serving)
    if panels == 0:
        raise ValueError("the report has no row to plot")
    n_x = max([len(g) for g in row_groups.values()] + [len(opt_cases)] + [2 * len(serving)])
    fig, axes = plt.subplots(
        panels, 1, figsize=(max(9.0, 1.7 * n_x + 2.5), 4.6 * panels), squeeze=False
    )
    colors: dict = {}
    i = 0
    for (shape, dtype), per_op in row_groups.items():
        ax = axes[i][0]
        probe = (report.get("copy_probe_GBps") or {}).get(shape)
        _bars(ax, per_op, "GB/s", probe, "copy probe", colors)
        ax.set_title(
            f"memory-bound ops, {dtype}, shape {shape}: effective bandwidth "
            "(bytes the op must move / time; higher is better)",
            fontsize=10,
        )
        i += 1
    if opt_cases:
        ax = axes[i][0]
        opt = report["optimizer"]
        _bars(
            ax,
            opt_cases,
            "GFLOP/s",
            opt.get("gemm_probe_GFLOPs"),
            f"GEMM probe ({opt.get('gemm_probe', '')})",
            colors,
        )
        ax.set_title(
            "optimize_latents, float32 latents: critic forward + input-gradient "
            "GFLOP/s per call (higher is better)",
            fontsize=10,
        )
        skipped = sorted({r["case"] for r in opt.get("rows") or [] if r.get("GFLOPs") is None})
        if skipped:
            ax.set_xlabel(
                f"not drawn (reachable thresholds, work varies per row): {', '.join(skipped)}",
                fontsize=7,
                color="#555555",
            )
        i += 1
    for mode, batches in serving.items():
        ax = axes[i][0]
        floor = ((report.get("serving") or {}).get("weight_read_floor") or {}).get("p50_ms")
        _bars(
            ax,
            batches,
            "ms",
            floor if mode == "actor" else None,
            "weight-read floor (batch 1)",
            colors,
            _serving_color_key,
        )
        ax.set_ylabel(
            "p50 ms" + ("  (bar labels: ms, % of the floor)" if mode == "actor" else ""),
            fontsize=9,
        )
        ax.set_title(
            f"serving, {mode} mode: p50 ms per request (lower is better)"
            + (", log scale" if mode == "optimize" else ""),
            fontsize=10,
        )
        if mode == "optimize":
            values = [v for b in batches.values() for v in b.values()]
            ax.set_yscale("log")
            ax.set_ylim(min(values) / 3, max(values) * 10)
        i += 1
    if serving and not (row_groups or opt_cases):
        env = (report.get("serving") or {}).get("environment") or {}
        report = {**report, "environment": env}
    fig.suptitle(_device_title(report), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
