# SPDX-License-Identifier: Apache-2.0
from conftest import make_benchmark

test_reparameterize = make_benchmark("reparameterize")
