# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the digits application's tests."""

import pytest
import torch

from lcengine.apps.digits.classifier import train_pixel_classifier
from lcengine.apps.digits.data import load_mnist


@pytest.fixture(scope="session", autouse=True)
def one_thread_for_shared_fixtures():
    """Session and module fixtures (the classifier, trained models) are built before the
    per-test fixture below runs: one thread for them too, torch's count restored at the end."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks: one thread is faster, and immune to oversubscribed CI machines; the
    session's thread count comes back afterwards (the commands also set it)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def mnist():
    """The default split (seed 0): 4,000 training and 1,000 held-out digits."""
    return load_mnist()


@pytest.fixture(scope="session")
def classifier(mnist):
    # 1,000 images x 2 epochs: a few seconds; the full 4,000 x 8 reaches ~98% (see report).
    return train_pixel_classifier(
        mnist.train_images[:1000], mnist.train_digits[:1000], epochs=2, progress=False
    )
