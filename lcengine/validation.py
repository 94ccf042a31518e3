# SPDX-License-Identifier: Apache-2.0
"""Scalar validation shared by the ops, the method and its configurations.

Every check names the argument and what was expected, and raises ``TypeError`` for a value of
the wrong type and ``ValueError`` for a value out of range. Configurations read from JSON files
(:meth:`lcengine.method.config.TrainingConfig.from_dict` and the like) check each key with these
functions inside :func:`config_errors`, which turns both into a ``ValueError`` that names the
file and the key. This module imports only the standard library (it looks for ``torch.SymInt``
only once torch is loaded), so every layer may use it, the argument parsers included.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import TYPE_CHECKING, Any, Collection, Iterator, Mapping, Optional

if TYPE_CHECKING:
    import torch

MAX_INT64 = 2**63 - 1
MAX_INT32 = 2**31 - 1
# Limits of configurations read from files: a tampered value must not allocate a network (or a
# batch) of any size it likes. Widths are a network layer's units (or a latent dimension or an
# embedding width); MAX_PARAMETERS bounds a whole network (4 GiB of float32 weights).
MAX_WIDTH = 65536
MAX_LAYERS = 64
MAX_PARAMETERS = 2**30
MAX_ROWS = 2**20  # batch sizes and sample counts
MAX_STEPS = MAX_INT32  # step counts, epochs and logging intervals


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
        torch = sys.modules.get("torch")  # not imported yet: value cannot be a SymInt
        if torch is not None and isinstance(value, torch.SymInt):
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


def check_finite_tensor(name: str, t: "torch.Tensor") -> "torch.Tensor":
    """Raises ``ValueError`` if a floating tensor holds NaN or infinity (reads every element)."""
    if t.is_floating_point() and t.numel() and not bool(t.isfinite().all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_width(name: str, value: Any, *, maximum: int = MAX_WIDTH) -> int:
    """A layer width (or latent or embedding dimension): an int in ``[1, maximum]``."""
    return check_int(name, value, minimum=1, maximum=maximum)


def check_widths(
    name: str, value: Any, *, max_layers: int = MAX_LAYERS, max_width: int = MAX_WIDTH
) -> tuple[int, ...]:
    """Hidden-layer widths: a non-empty list or tuple of at most ``max_layers`` widths (each
    checked by :func:`check_width`, named ``name[i]``), returned as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of layer widths, got {type(value).__name__} {value!r}"
        )
    if not 1 <= len(value) <= max_layers:
        raise ValueError(f"{name} must hold 1 to {max_layers} layer widths, got {len(value)}")
    return tuple(check_width(f"{name}[{i}]", w, maximum=max_width) for i, w in enumerate(value))


def check_parameter_count(
    name: str, widths: Collection[int], *, extra: int = 0, limit: int = MAX_PARAMETERS
) -> int:
    """The weights and biases of dense layers ``widths[0] -> widths[1] -> ...`` plus ``extra``
    parameters, refused above ``limit`` (a ``ValueError``, before anything is allocated)."""
    w = list(widths)
    count = extra + sum((a + 1) * b for a, b in zip(w[:-1], w[1:]))
    if count > limit:
        raise ValueError(
            f"{name}: layers {w} have {count:,} parameters, more than the limit of {limit:,}"
        )
    return count


def check_bool(name: str, value: Any) -> bool:
    """A bool (not an int standing for one)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {type(value).__name__} {value!r}")
    return value


def check_str(name: str, value: Any, *, choices: Optional[Collection[str]] = None) -> str:
    """A non-empty string, one of ``choices`` when given."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError(f"{name} must be a non-empty string")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_str_list(name: str, value: Any, *, allow_empty: bool = True) -> tuple[str, ...]:
    """A list or tuple of non-empty strings (a lone string is refused), returned as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, got {type(value).__name__} {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one string")
    return tuple(check_str(f"{name}[{i}]", v) for i, v in enumerate(value))


def check_mapping(name: str, value: Any) -> dict:
    """A mapping (a JSON object), returned as a dict."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a JSON object, got {type(value).__name__} {value!r}")
    return dict(value)


def check_keys(name: str, value: Any, known: Collection[str], *, what: str = "keys") -> dict:
    """A mapping with keys among ``known`` (an unknown key is refused: a typo must not pass
    silently), returned as a dict."""
    value = check_mapping(name, value)
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ValueError(f"{name}: unknown {what} {unknown}; expected some of {sorted(known)}")
    return dict(value)


@contextlib.contextmanager
def config_errors(source: Optional[str] = None) -> Iterator[None]:
    """Turns the ``TypeError`` / ``ValueError`` of the checks inside into a ``ValueError`` whose
    message starts with ``source`` (the file a configuration was read from), when given::

        with config_errors("run/constraints/constraints.json"):
            check_width("training.embed_dim", d["embed_dim"])
        # ValueError: run/constraints/constraints.json: training.embed_dim must be in [1, 65536]
    """
    try:
        yield
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and getattr(exc, "_lcengine_source", False):
            raise  # already located by an inner config_errors
        message = f"{source}: {exc}" if source else str(exc)
        err = ValueError(message)
        err._lcengine_source = bool(source)  # type: ignore[attr-defined]
        raise err from exc
