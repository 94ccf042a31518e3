# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the method's tests (generic: toy models, no real data set)."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is faster, and immune to oversubscribed CI machines."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def images():
    """512 seeded random 28x28 images in [0, 1]: inputs for image models (conv VAE, callables)."""
    return np.random.default_rng(0).random((512, 28, 28), dtype=np.float32)
