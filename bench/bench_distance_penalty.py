# SPDX-License-Identifier: Apache-2.0
"""distance_penalty: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="distance_penalty")
def test_distance_penalty(time_row_op):
    time_row_op("distance_penalty")
