# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_latent_adam = make_benchmark("latent_adam")
