# SPDX-License-Identifier: Apache-2.0
"""Rules on 28x28 digit images in [0, 1] for zero-shot constraints (:data:`DIGIT_RULES`).

A rule is a black-box predicate ``rule(images [N, 28, 28]) -> bool [N]``:
:meth:`lcengine.method.constraints.LatentConstraints.add_zero_shot_constraint` labels decoded
prior samples with it and learns a critic, with no data labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .data import IMAGE_SIDE

if TYPE_CHECKING:
    from lcengine.method.zeroshot import Rule


def _as_digit_batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"this rule expects images of shape [N, 28, 28], got {list(x.shape)}")
    return x


def top_heavy(x: np.ndarray) -> np.ndarray:
    """More ink in the top half than in the bottom half (e.g. most 7s and 9s). # -> [N] bool"""
    x = _as_digit_batch(x)
    half = IMAGE_SIDE // 2
    return x[:, :half].sum(axis=(1, 2)) > x[:, half:].sum(axis=(1, 2))


def left_heavy(x: np.ndarray) -> np.ndarray:
    """More ink in the left half than in the right half. # -> [N] bool"""
    x = _as_digit_batch(x)
    half = IMAGE_SIDE // 2
    return x[:, :, :half].sum(axis=(1, 2)) > x[:, :, half:].sum(axis=(1, 2))


def has_loop(x: np.ndarray) -> np.ndarray:
    """The binarized stroke encloses a hole of at least 4 background pixels (0, 6, 8, 9 ...).

    Background connected to the border is flood-filled (4-connectivity); what stays unfilled
    is enclosed. # -> [N] bool
    """
    x = _as_digit_batch(x)
    bg = x < 0.5  # [N, H, W]
    reach = np.zeros_like(bg)
    reach[:, 0, :], reach[:, -1, :] = bg[:, 0, :], bg[:, -1, :]
    reach[:, :, 0] |= bg[:, :, 0]
    reach[:, :, -1] |= bg[:, :, -1]
    while True:  # grow the border-connected background until it stops changing
        grown = reach.copy()
        grown[:, 1:, :] |= reach[:, :-1, :]
        grown[:, :-1, :] |= reach[:, 1:, :]
        grown[:, :, 1:] |= reach[:, :, :-1]
        grown[:, :, :-1] |= reach[:, :, 1:]
        grown &= bg
        if np.array_equal(grown, reach):
            break
        reach = grown
    return (bg & ~reach).sum(axis=(1, 2)) >= 4


DIGIT_RULES: dict[str, Rule] = {
    "top_heavy": top_heavy,
    "left_heavy": left_heavy,
    "has_loop": has_loop,
}


__all__ = ["DIGIT_RULES", "has_loop", "left_heavy", "top_heavy"]
