# SPDX-License-Identifier: Apache-2.0
"""Seeded streams of the method: one derived Philox key per purpose and step.

Training, sampling, the batch job and the inference sampler derive every seed here, so the same
``(seed, purpose, step)`` gives the same stream wherever it is drawn.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

_SEED_MASK = (1 << 62) - 1


def derive_seed(seed: int, *parts: Any) -> int:
    """A 62-bit Philox key for one purpose and step, derived from the run's seed.

    Different purposes (``"realism/real"``, ``"actor/prior"`` ...) and steps get statistically
    independent streams; the same arguments always give the same key.
    """
    text = "/".join(str(p) for p in (seed,) + parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & _SEED_MASK


def step_generator(seed: int, *parts: Any) -> torch.Generator:
    """A CPU torch.Generator for index draws, seeded by :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


__all__ = ["derive_seed", "step_generator"]
