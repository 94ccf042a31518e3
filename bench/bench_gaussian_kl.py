# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_gaussian_kl = make_benchmark("gaussian_kl")
