# SPDX-License-Identifier: Apache-2.0
"""Assertions shared by the op tests."""

import torch


def assert_reduction_close(out, ref_same_dtype, ref_float64, *, floor):
    """The kernel's error against a float64 reference stays within 2x the error of the eager
    reference computed in the kernel's dtype (plus an absolute floor for exact-looking cases)."""
    out64 = out.detach().to(torch.float64)
    same64 = ref_same_dtype.detach().to(torch.float64)
    # a sum beyond the dtype's range is inf in the eager reference too: equal infs agree
    both_overflow = torch.isinf(same64) & (out64 == same64)
    out64 = torch.where(both_overflow, ref_float64, out64)
    same64 = torch.where(both_overflow, ref_float64, same64)
    err_kernel = (out64 - ref_float64).abs()
    err_eager = (same64 - ref_float64).abs()
    bound = 2 * err_eager + floor * (1 + ref_float64.abs())
    worst = (err_kernel - bound).max().item()
    assert worst <= 0, (
        f"kernel error {err_kernel.max().item():.3e} exceeds 2x eager error "
        f"{err_eager.max().item():.3e} + floor"
    )


def upcast(t):
    return t.detach().to(torch.float64).requires_grad_(t.requires_grad)
