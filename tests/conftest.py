# SPDX-License-Identifier: Apache-2.0
"""Test configuration: Triton's interpreter on machines without a GPU, a seeded RNG per test."""

import os

import torch

# Triton must see TRITON_INTERPRET before it is first imported; without a GPU its kernels then
# run on CPU tensors. On a GPU machine the real compiler is used.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def seeded_rng():
    """Every test starts from the same torch, numpy and random state (seed 0)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
