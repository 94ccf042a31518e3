# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_standard_normal = make_benchmark("standard_normal")
