# SPDX-License-Identifier: Apache-2.0
"""standard_normal: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="standard_normal")
def test_standard_normal(time_row_op):
    time_row_op("standard_normal")
