# SPDX-License-Identifier: Apache-2.0
"""Figures of the method and its applications: matplotlib on the Agg backend (no display
needed), PNGs written atomically through :func:`lcengine.method.io.atomic_write_bytes`."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .io import PathLike, atomic_write_bytes


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: PathLike) -> None:
    """Writes a figure as PNG (110 dpi, tight box) atomically and closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def draw_image_row(axes: Sequence, images: np.ndarray) -> None:
    """Shows grayscale images in [0, 1] on a row of axes, one each; spare axes stay blank.

    Args:
        axes: matplotlib axes, one per column.
        images: at most ``len(axes)`` images. # [K, H, W]
    """
    for i, ax in enumerate(axes):
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


def write_image_grid(path: PathLike, rows: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """A PNG grid: one labelled row per ``(label, images)``, images ``[K, H, W]`` in [0, 1].

    Raises:
        ValueError: the items are not 2-D images.
    """
    for label, images in rows:
        if np.ndim(images) != 3:
            raise ValueError(
                f"a PNG grid needs 2-D images [K, H, W]; row {label!r} has shape "
                f"{list(np.shape(images))}"
            )
    plt = pyplot()
    cols = max(1, max(len(images) for _, images in rows))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(cols * 0.9, len(rows) * 1.0 + 0.5), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        draw_image_row(axes[r], images)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
