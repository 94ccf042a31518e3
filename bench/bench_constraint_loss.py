# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_constraint_loss = make_benchmark("constraint_loss")
