# SPDX-License-Identifier: Apache-2.0
"""constraint_loss: eager, torch.compile and lcengine (auto backend) under pytest-benchmark."""

import pytest


@pytest.mark.benchmark(group="constraint_loss")
def test_constraint_loss(time_row_op):
    time_row_op("constraint_loss")
