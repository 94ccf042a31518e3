# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench --compare OLD.json NEW.json``: what changed between two saved reports.

Rows are matched by what they measure (row ops: op, shape, dtype, device, backend;
optimizer rows: case, device, backend). For every row present in both reports the comparison
gives the old and new median time, the ratio NEW/OLD, and a verdict that uses the spread each
report measured for that row (``spread``: quartiles of its repetitions):

- ``slower`` / ``faster``: the interquartile ranges do not overlap: NEW's first quartile lies
  above OLD's third (slower), or NEW's third quartile below OLD's first (faster);
- ``~``: the ranges overlap, the change is within the run-to-run spread;
- ``?``: a side has fewer than 3 repetitions (or is a report without spreads), so no spread
  was measured and the change is not judged.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from typing import Optional

REPORT_KIND = "lcengine bench"  # the "kind" field of every report `lcengine bench` saves
REPORT_FORMAT = 1  # its layout version; a row's "spread" exists from format 1 on
MIN_REPS_FOR_SPREAD = 3
SECTIONS = {"rows": "row ops", "optimizer": "optimize_latents"}


def _row_key(row: dict) -> tuple:
    if row.get("op") == "optimize_latents" or "case" in row:
        return ("optimize_latents", row["case"], row["device"], row["backend"])
    return (row["op"], row["shape"], row["dtype"], row["device"], row["backend"])


def _check_rows(rows: object, path: str, where: str) -> list:
    if not isinstance(rows, list):
        raise ValueError(f"{path}: {where} is not a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: {where}[{i}] is not an object")
        try:
            _row_key(row)
            t = float(row["time_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: {where}[{i}] is not a benchmark row (missing or bad field {exc})"
            ) from None
        if not math.isfinite(t) or t <= 0:
            raise ValueError(f"{path}: {where}[{i}] has time_ms {row['time_ms']!r}")
    return rows


def validate_report(data: object, path: str) -> dict:
    """Checks that ``data`` (parsed from ``path``) is a report of ``lcengine bench``.

    Reports saved before the ``kind`` field existed are accepted when their rows look right
    (they carry no spreads).

    Raises:
        ValueError: naming ``path`` and what is wrong.
    """
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: not an lcengine bench report (the top level is a "
            f"{type(data).__name__}, not an object)"
        )
    kind = data.get("kind")
    if kind is None and "benchmarks" in data and "machine_info" in data:
        raise ValueError(
            f"{path}: a pytest-benchmark report (pytest --benchmark-json), not an "
            "lcengine bench report (lcengine bench --json)"
        )
    if kind is not None and kind != REPORT_KIND:
        raise ValueError(f"{path}: a report of kind {kind!r}, not {REPORT_KIND!r}")
    fmt = data.get("format", 0)
    if not isinstance(fmt, int) or fmt > REPORT_FORMAT:
        raise ValueError(
            f"{path}: report format {fmt!r}; this lcengine reads up to {REPORT_FORMAT}"
        )
    if "rows" not in data and "optimizer" not in data:
        raise ValueError(
            f"{path}: not an lcengine bench report (no 'rows' and no 'optimizer' section)"
        )
    if "rows" in data:
        _check_rows(data["rows"], path, "rows")
    if "optimizer" in data:
        if not isinstance(data["optimizer"], dict):
            raise ValueError(f"{path}: 'optimizer' is not an object")
        _check_rows(data["optimizer"].get("rows"), path, "optimizer.rows")
    return data


def load_report(path: str) -> dict:
    """Reads and validates a saved report; ValueError naming ``path`` otherwise."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return validate_report(data, path)


def _sections(report: dict) -> dict[str, list]:
    out = {}
    if report.get("rows"):
        out["rows"] = report["rows"]
    if report.get("optimizer", {}).get("rows"):
        out["optimizer"] = report["optimizer"]["rows"]
    return out


@dataclass
class RowChange:
    """One row present in both reports.

    Attributes:
        label: what the row measures, e.g. ``"gaussian_kl 65536x64 float32 cpu native"``.
        old_ms, new_ms: median times.
        old_iqr_rel, new_iqr_rel: interquartile range / median (``None``: no spread measured).
        verdict: ``"slower"``, ``"faster"``, ``"~"`` (within the spread) or ``"?"``.
        old_vs_eager, new_vs_eager: the row's speedup over eager PyTorch in each run (a ratio
            measured side by side, so it moves less with the machine's load than a time).
    """

    label: str
    old_ms: float
    new_ms: float
    old_iqr_rel: Optional[float]
    new_iqr_rel: Optional[float]
    verdict: str
    old_vs_eager: Optional[float] = None
    new_vs_eager: Optional[float] = None

    @property
    def ratio(self) -> float:
        """NEW / OLD (above 1: slower)."""
        return self.new_ms / self.old_ms


def _quartiles(row: dict) -> Optional[tuple[float, float]]:
    spread = row.get("spread")
    if not isinstance(spread, dict) or spread.get("reps", 0) < MIN_REPS_FOR_SPREAD:
        return None
    return float(spread["q1_ms"]), float(spread["q3_ms"])


def judge(old: dict, new: dict) -> str:
    """The verdict on one row (see the module docstring)."""
    qo, qn = _quartiles(old), _quartiles(new)
    if qo is None or qn is None:
        return "?"
    if qn[0] > qo[1]:
        return "slower"
    if qn[1] < qo[0]:
        return "faster"
    return "~"


def _label(key: tuple) -> str:
    return " ".join(str(k) for k in key)


def compare_reports(old: dict, new: dict, old_name: str = "OLD", new_name: str = "NEW") -> dict:
    """Matches the rows of two validated reports.

    Raises:
        ValueError: the reports have no section in common (e.g. row ops only against
            optimize_latents only), naming both.

    Returns:
        ``changes`` (list of :class:`RowChange`, in OLD's order), ``only_old`` and ``only_new``
        (labels of unmatched rows) and ``probes`` (``(name, old, new, unit)`` per probe in
        both).
    """
    so, sn = _sections(old), _sections(new)
    if so and sn and not set(so) & set(sn):
        raise ValueError(
            f"reports of different kinds: {old_name} times "
            f"{', '.join(SECTIONS[s] for s in so)}, {new_name} times "
            f"{', '.join(SECTIONS[s] for s in sn)}"
        )
    old_rows = {_row_key(r): r for rows in so.values() for r in rows}
    new_rows = {_row_key(r): r for rows in sn.values() for r in rows}
    changes = []
    for key, o in old_rows.items():
        n = new_rows.get(key)
        if n is None:
            continue
        qo, qn = _quartiles(o), _quartiles(n)
        changes.append(
            RowChange(
                _label(key),
                float(o["time_ms"]),
                float(n["time_ms"]),
                None if qo is None else o["spread"]["iqr_rel"],
                None if qn is None else n["spread"]["iqr_rel"],
                judge(o, n),
                o.get("speedup_vs_eager"),
                n.get("speedup_vs_eager"),
            )
        )
    probes = []
    for shape, value in (old.get("copy_probe_GBps") or {}).items():
        if shape in (new.get("copy_probe_GBps") or {}):
            probes.append((f"copy {shape}", value, new["copy_probe_GBps"][shape], "GB/s"))
    oo, no = old.get("optimizer") or {}, new.get("optimizer") or {}
    if "gemm_probe_GFLOPs" in oo and "gemm_probe_GFLOPs" in no:
        probes.append(
            (
                f"GEMM {oo.get('gemm_probe', '')}".strip(),
                oo["gemm_probe_GFLOPs"],
                no["gemm_probe_GFLOPs"],
                "GFLOP/s",
            )
        )
    return {
        "changes": changes,
        "only_old": [_label(k) for k in old_rows if k not in new_rows],
        "only_new": [_label(k) for k in new_rows if k not in old_rows],
        "probes": probes,
    }


def _describe(report: dict) -> str:
    env = report.get("environment") or (report.get("optimizer") or {}).get("environment") or {}
    settings = report.get("settings") or (report.get("optimizer") or {}).get("settings") or {}
    device = env.get("device_name") or env.get("cpu_name") or env.get("processor", "?")
    return (
        f"torch {env.get('torch', '?')}, {device}, {env.get('torch_threads', '?')} torch "
        f"threads, reps {settings.get('reps', '?')}"
    )


def format_comparison(result: dict, old: dict, new: dict, old_path: str, new_path: str) -> str:
    """The printed comparison: a header per report, one line per matched row, the probes,
    the unmatched rows and the rule behind the verdicts."""
    lines = [f"OLD {old_path}: {_describe(old)}", f"NEW {new_path}: {_describe(new)}"]
    changes = result["changes"]
    width = max([len("row")] + [len(c.label) for c in changes])
    header = (
        f"{'row':<{width}} {'OLD ms':>10} {'NEW ms':>10} {'NEW/OLD':>8} "
        f"{'IQR OLD':>8} {'IQR NEW':>8} {'change':<7} {'x eager OLD -> NEW':>19}"
    )
    lines += ["", header, "-" * len(header)]

    def pct(v):
        return f"{'n/a':>8}" if v is None else f"{v:>8.1%}"

    def speedup(v):
        return "n/a" if v is None else f"{v:.2f}"

    for c in changes:
        vs_eager = f"{speedup(c.old_vs_eager)} -> {speedup(c.new_vs_eager)}"
        lines.append(
            f"{c.label:<{width}} {c.old_ms:>10.3f} {c.new_ms:>10.3f} {c.ratio:>8.3f} "
            f"{pct(c.old_iqr_rel)} {pct(c.new_iqr_rel)} {c.verdict:<7} "
            f"{vs_eager:>19}"
        )
    if not changes:
        lines.append("(no row in both reports)")
    counts = {v: sum(c.verdict == v for c in changes) for v in ("slower", "faster", "~", "?")}
    lines.append(
        f"{counts['slower']} slower, {counts['faster']} faster, {counts['~']} within "
        f"the spread, {counts['?']} not judged (no spread)"
    )
    for name, o, n, unit in result["probes"]:
        lines.append(f"probe {name}: OLD {o:.1f} {unit}, NEW {n:.1f} {unit} (NEW/OLD {n / o:.3f})")
    for side, key in (("OLD", "only_old"), ("NEW", "only_new")):
        for label in result[key]:
            lines.append(f"only in {side}: {label}")
    rule = (
        "change: 'slower'/'faster' when the interquartile ranges of the repetitions do not "
        "overlap (NEW's Q1 above OLD's Q3, or NEW's Q3 below OLD's Q1); '~' within the "
        f"spread; '?' a side with fewer than {MIN_REPS_FOR_SPREAD} repetitions. IQR: "
        "(Q3 - Q1) / median. The spread is measured within each run: a change of the "
        "machine's load between runs shows in the probes, and 'x eager' (measured side by "
        "side) moves less with it."
    )
    lines.append(textwrap.fill(rule, width=100))
    return "\n".join(lines)


def compare_files(old_path: str, new_path: str) -> str:
    """Loads both reports and returns the printed comparison (ValueError naming the file that
    is unreadable, not JSON or not a report, or naming both when they are of different
    kinds)."""
    old, new = load_report(old_path), load_report(new_path)
    result = compare_reports(old, new, old_path, new_path)
    return format_comparison(result, old, new, old_path, new_path)
