# SPDX-License-Identifier: Apache-2.0
"""gaussian_kl: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="gaussian_kl")
def test_gaussian_kl(time_row_op):
    time_row_op("gaussian_kl")
