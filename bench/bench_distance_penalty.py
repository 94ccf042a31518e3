# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_distance_penalty = make_benchmark("distance_penalty")
