# SPDX-License-Identifier: Apache-2.0
"""Scalar validation shared by the ops, the method and its configurations.

Every check names the argument and what was expected, and raises ``TypeError`` for a value of
the wrong type and ``ValueError`` for a value out of range. This module imports only torch, so
every layer may use it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

MAX_INT64 = 2**63 - 1


def _expected(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"finite and {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"finite and {'<' if high_open else '<='} {high:g}"
    return "finite"


def check_float(
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (int or float, not bool) in the given interval, returned as float.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        low, high: bounds (``None``: unbounded on that side).
        low_open, high_open: whether the bound itself is excluded.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"{name} must be {_expected(low, high, low_open, high_open)}, got {v!r}")
    return v


def check_positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite float ``> 0`` (``>= 0`` with ``allow_zero``)."""
    return check_float(name, value, low=0.0, low_open=not allow_zero)


def check_probability(name: str, value: Any, *, low_open: bool = False) -> float:
    """A finite float in ``[0, 1)`` (``(0, 1)`` with ``low_open``)."""
    return check_float(name, value, low=0.0, high=1.0, low_open=low_open, high_open=True)


def check_int(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """An int (not bool) in ``[minimum, maximum]``; a ``torch.SymInt`` passes unchecked."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.SymInt):
            return value
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum or value > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value}")
    return value


def check_adam(lr: Any, betas: Any, eps: Any) -> tuple[float, float, float, float]:
    """Adam's hyper-parameters: ``lr > 0``, ``betas`` a pair in ``[0, 1)``, ``eps > 0``.

    Returns:
        ``(lr, beta1, beta2, eps)`` as floats.
    """
    lr = check_positive_float("lr", lr)
    eps = check_positive_float("eps", eps)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    beta1 = check_probability("betas[0]", betas[0])
    beta2 = check_probability("betas[1]", betas[1])
    return lr, beta1, beta2, eps


def check_finite_tensor(name: str, t: torch.Tensor) -> torch.Tensor:
    """Raises ``ValueError`` if a floating tensor holds NaN or infinity (reads every element)."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t
