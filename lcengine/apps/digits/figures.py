# SPDX-License-Identifier: Apache-2.0
"""The demo's figures (PNG, written atomically through :mod:`lcengine.method.io`)."""

from __future__ import annotations

import re
from pathlib import Path

from lcengine.method.figures import draw_image_row, pyplot, save_figure
from lcengine.method.run import Run
from lcengine.method.sampling import METHODS

from .data import DIGIT_COLUMNS


def slug(text: str) -> str:
    """A file-name-safe form of a request: ``"7 thick"`` -> ``"7_thick"``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "request"


def write_figures(
    folder: Path, run: Run, metrics: dict, art: dict, *, columns: int = 8
) -> list[str]:
    """PNG figures: a sample grid per request and method, a strip per transform, the
    zero-shot samples, the decoder-only model's samples, the conditional models' samples beside
    the method's and the training curves. Returns their paths relative to ``folder``.

    Args:
        folder: the output folder (figures go to ``figures/``).
        run: the digits run.
        metrics: :func:`~lcengine.apps.digits.evaluation.evaluate_run`'s metrics.
        art: its artifacts (the samples and transforms behind the metrics).
        columns: images per row.
    """
    plt = pyplot()
    figdir = folder / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    written = []

    for request, per_method in art["requests"].items():
        fig, axes = plt.subplots(
            len(METHODS), columns, figsize=(columns * 0.9, len(METHODS) * 1.0 + 0.6), squeeze=False
        )
        for r, method in enumerate(METHODS):
            res, _ = per_method[method]
            draw_image_row(axes[r], res.images[:columns])
            acc = metrics["requests"][request][method]["overall_accuracy"]
            axes[r][0].set_ylabel(
                f"{method}\n{acc:.0%}", rotation=0, ha="right", va="center", fontsize=8
            )
        fig.suptitle(
            f"request: {request!r} (row label: measured accuracy on requested attributes)",
            fontsize=9,
        )
        name = f"figures/request_{slug(request)}.png"
        save_figure(fig, folder / name)
        written.append(name)

    for change, (x_src, tr) in art["transforms"].items():
        k = min(columns, len(x_src))
        fig, axes = plt.subplots(3, k, figsize=(k * 0.9, 3.4), squeeze=False)
        draw_image_row(axes[0], x_src[:k])
        draw_image_row(axes[1], tr.source_images[:k])
        draw_image_row(axes[2], tr.images[:k])
        for r, label in enumerate(("input", "reconstruction", "edited")):
            axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        for c in range(k):
            axes[2][c].set_title(f"{'ok' if tr.converged[c] else 'no'} {tr.steps[c]}", fontsize=6)
        fig.suptitle(f"transform: {change!r} (edited title: converged, steps)", fontsize=9)
        name = f"figures/transform_{slug(change)}.png"
        save_figure(fig, folder / name)
        written.append(name)

    if art.get("zero_shot"):
        keys = list(art["zero_shot"])
        fig, axes = plt.subplots(
            len(keys), columns, figsize=(columns * 0.9, len(keys) + 0.6), squeeze=False
        )
        for r, key in enumerate(keys):
            res, _ = art["zero_shot"][key]
            draw_image_row(axes[r], res.images[:columns])
            axes[r][0].set_ylabel(
                f"{key[1]}\n{key[0]}", rotation=0, ha="right", va="center", fontsize=7
            )
        fig.suptitle(f"zero-shot constraint {run.context.config.zero_shot_rule!r}", fontsize=9)
        save_figure(fig, folder / "figures/zero_shot.png")
        written.append("figures/zero_shot.png")

    if art.get("decoder_only"):
        per_method = art["decoder_only"]
        table = metrics["decoder_only"]["conditional"]
        fig, axes = plt.subplots(
            len(per_method), columns, figsize=(columns * 0.9, len(per_method) + 0.8), squeeze=False
        )
        for r, (method, res) in enumerate(per_method.items()):
            draw_image_row(axes[r], res.images[:columns])
            identity = table[method].get("per_group", {}).get("digit", {}).get("accuracy")
            label = method if identity is None else f"{method}\n{identity:.0%}"
            axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        targets = next(iter(per_method.values())).attributes[:columns]
        digits = targets[:, DIGIT_COLUMNS].argmax(1)
        for c in range(min(columns, len(digits))):
            axes[0][c].set_title(f"want {digits[c]}", fontsize=7)
        fig.suptitle(
            "GAN generator: the same held-out targets per column (row label: digit identity)",
            fontsize=9,
        )
        save_figure(fig, folder / "figures/gan_heldout.png")
        written.append("figures/gan_heldout.png")

    if art.get("conditional_models"):
        rows = [(k, art["conditional"][k].images) for k in ("actor", "optimize")]
        rows += [(k, images) for k, (images, _) in art["conditional_models"].items()]
        scores = {**metrics["conditional"], **metrics["conditional_models"]}
        fig, axes = plt.subplots(
            len(rows), columns, figsize=(columns * 0.9, len(rows) + 0.8), squeeze=False
        )
        for r, (name, images) in enumerate(rows):
            draw_image_row(axes[r], images[:columns])
            identity = scores[name].get("per_group", {}).get("digit", {}).get("accuracy")
            label = name if identity is None else f"{name}\n{identity:.0%}"
            axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        digits = art["conditional_targets"][:columns, DIGIT_COLUMNS].argmax(1)
        for c in range(min(columns, len(digits))):
            axes[0][c].set_title(f"want {digits[c]}", fontsize=7)
        fig.suptitle(
            "latent constraints (top two rows) and conditional models retrained with labels, "
            "same targets per column (row label: digit identity)",
            fontsize=8,
        )
        save_figure(fig, folder / "figures/conditional_models.png")
        written.append("figures/conditional_models.png")

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
    for key, label in (
        ("real_prob", "real [z~q, y]"),
        ("fake_prob", "fake [G(z), y]"),
        ("mismatch_prob", "real, wrong y"),
    ):
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
    save_figure(fig, folder / "figures/training_curves.png")
    written.append("figures/training_curves.png")
    return written


__all__ = ["slug", "write_figures"]
