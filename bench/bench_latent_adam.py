# SPDX-License-Identifier: Apache-2.0
"""latent_adam: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="latent_adam")
def test_latent_adam(time_row_op):
    time_row_op("latent_adam")
