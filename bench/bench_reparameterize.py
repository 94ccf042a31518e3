# SPDX-License-Identifier: Apache-2.0
"""reparameterize: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="reparameterize")
def test_reparameterize(time_row_op):
    time_row_op("reparameterize")
