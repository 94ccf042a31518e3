# SPDX-License-Identifier: Apache-2.0
"""Attribute requests: parsing, target checks, and completion of partial requests.

A *request* names the attributes a sample or an edit must have: ``"a !b"``, ``["a", "b=0"]`` or
``{"a": 1, "b": 0}``. :func:`parse_request` turns it into a target vector and a mask of the
requested attributes over the model's attribute names. What a request may say beyond plain
names is the application's :class:`RequestVocabulary`: one-hot groups (requesting one member
sets the others to 0), negation aliases (``"thin"`` = ``"!thick"``) and shorthands (a bare
token standing for a name).

:func:`complete_requests` turns a partial request into full attribute vectors for the
conditional realism critic by borrowing the unrequested attributes from data rows that match
the request, i.e. it samples ``y ~ p(y | requested attributes)`` from the training table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from lcengine.validation import (
    check_keys,
    check_mapping,
    check_str,
    check_str_list,
    config_errors,
)

ArrayLike = Union[np.ndarray, torch.Tensor]
Request = Union[str, Mapping[str, int], Sequence[str]]

# Prefixes that request the value 0 ("!thick", "not_thick").
_NEGATION_PREFIXES = ("!", "-", "~", "not_", "no_")


@dataclass(frozen=True)
class RequestVocabulary:
    """What a request may say beyond the plain attribute names.

    Attributes:
        one_hot_groups: group label -> member attribute names, at most one of which is 1 (for
            example the classes of a label). Requesting a member (value 1) also requests every
            other member present in the names as 0; two members at 1 are contradictory.
        negation_aliases: a word -> the attribute it negates (``{"thin": "thick"}``: ``thin``
            means ``thick = 0``).
        shorthands: a token -> the attribute it stands for (``{"7": "class_7"}``).
    """

    one_hot_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    negation_aliases: Mapping[str, str] = field(default_factory=dict)
    shorthands: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = {str(k): tuple(str(n) for n in v) for k, v in dict(self.one_hot_groups).items()}
        for label, members in groups.items():
            if not members:
                raise ValueError(f"one-hot group {label!r} has no members")
        object.__setattr__(self, "one_hot_groups", groups)
        for name in ("negation_aliases", "shorthands"):
            table = {str(k).lower(): str(v) for k, v in dict(getattr(self, name)).items()}
            object.__setattr__(self, name, table)

    def to_dict(self) -> dict:
        """JSON-serializable form (checkpoints store it next to the attribute names)."""
        return {
            "one_hot_groups": {k: list(v) for k, v in self.one_hot_groups.items()},
            "negation_aliases": dict(self.negation_aliases),
            "shorthands": dict(self.shorthands),
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: Optional[str] = None, key: str = "vocabulary"
    ) -> "RequestVocabulary":
        """Inverse of :meth:`to_dict`, every key checked; missing keys are empty.

        Args:
            d: the JSON object.
            source: where ``d`` was read from (a file path), put first in error messages.
            key: the name of ``d`` in that file, for messages.

        Raises:
            ValueError: not an object, an unknown key, a group that is not a non-empty list of
                names, or a word or name that is not a non-empty string; the message names
                ``source`` and the key (``vocabulary.one_hot_groups['class'][0]``).
        """
        fields = ("one_hot_groups", "negation_aliases", "shorthands")
        with config_errors(source):
            d = check_keys(key, d, fields, what="RequestVocabulary keys")
            groups = check_mapping(f"{key}.one_hot_groups", d.get("one_hot_groups", {}))
            args: dict[str, Any] = {
                "one_hot_groups": {
                    check_str(f"{key}.one_hot_groups key", label): check_str_list(
                        f"{key}.one_hot_groups[{label!r}]", members, allow_empty=False
                    )
                    for label, members in groups.items()
                }
            }
            for name in fields[1:]:
                table = check_mapping(f"{key}.{name}", d.get(name, {}))
                args[name] = {
                    check_str(f"{key}.{name} key", word): check_str(f"{key}.{name}[{word!r}]", v)
                    for word, v in table.items()
                }
            return cls(**args)

    def group_columns(self, names: Sequence[str]) -> dict[str, list[int]]:
        """Columns of each one-hot group's members among ``names`` (groups absent: left out)."""
        index = {n: i for i, n in enumerate(names)}
        out = {
            label: [index[m] for m in members if m in index]
            for label, members in self.one_hot_groups.items()
        }
        return {label: cols for label, cols in out.items() if cols}


def as_binary_array(a: Any, name: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """A 0/1 array (bool, integer or float holding only 0 and 1) as int8.

    Raises:
        TypeError: not numbers.
        ValueError: a value other than 0 and 1, or a shape other than ``shape``.
    """
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.astype(np.int8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name} must be a 0/1 array, got dtype {a.dtype}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(a.shape)}")
    return a.astype(np.int8)


def _tokens(request: Union[str, Sequence[str]]) -> list[str]:
    if isinstance(request, str):
        parts = re.split(r"[,\s;]+", request)
    else:
        parts = []
        for item in request:
            if not isinstance(item, str):
                raise TypeError(f"request items must be strings, got {type(item).__name__}")
            parts.extend(re.split(r"[,\s;]+", item))
    return [p for p in (s.strip() for s in parts) if p]


def _pairs(request: Request, index: Mapping[str, int]) -> list[tuple[str, int]]:
    """``(token, value)`` pairs of a request, negation prefixes and ``=0/1`` resolved."""
    pairs: list[tuple[str, int]] = []
    if isinstance(request, Mapping):
        for k, v in request.items():
            if not isinstance(k, str):
                raise TypeError(f"request keys must be attribute names (str), got {k!r}")
            if isinstance(v, (bool, np.bool_)):
                v = int(v)
            if not isinstance(v, (int, np.integer)) or int(v) not in (0, 1):
                raise ValueError(f"request[{k!r}] must be 0 or 1, got {v!r}")
            pairs.append((k.strip(), int(v)))
    elif isinstance(request, (str, list, tuple)):
        for tok in _tokens(request):
            value = 1
            if "=" in tok:
                tok, _, rhs = tok.partition("=")
                if rhs.strip() not in ("0", "1"):
                    raise ValueError(f"request token {tok + '=' + rhs!r}: value must be 0 or 1")
                value = int(rhs.strip())
            low = tok.lower()
            for prefix in _NEGATION_PREFIXES:
                if low.startswith(prefix) and low not in index:
                    low, value = low[len(prefix) :], 1 - value
                    break
            pairs.append((low, value))
    else:
        raise TypeError(
            "request must be a string, a sequence of strings or a dict of "
            f"name -> 0/1, got {type(request).__name__}"
        )
    return pairs


def parse_request(
    request: Request, attribute_names: Sequence[str], vocabulary: Optional[RequestVocabulary] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Turns an attribute request into a target vector and a mask of requested attributes.

    Accepted forms (names are case-insensitive):

    * a string of tokens separated by commas, spaces or semicolons: ``"a,b"``, ``"a !b"``. A
      token is an attribute name (value 1), ``!name`` / ``-name`` / ``~name`` / ``not_name`` /
      ``no_name`` (value 0), ``name=0`` / ``name=1``, or a word of the vocabulary (a shorthand
      for a name, or a negation alias);
    * a sequence of such tokens: ``["a", "b=0"]``;
    * a dict ``{"a": 1, "b": 0}`` (values 0/1 or bools).

    Unrequested attributes have mask False and value 0.

    Args:
        request: the request.
        attribute_names: the attribute vocabulary, in column order.
        vocabulary: one-hot groups, aliases and shorthands (none by default).

    Returns:
        ``(values, mask)``: int8 0/1 targets and bool requested-mask. # [A], [A]

    Raises:
        ValueError: empty request, unknown name (the message lists the valid names),
            contradictory request, or a value other than 0/1.
        TypeError: a request of another type.
    """
    names = tuple(attribute_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError("attribute_names must be a non-empty sequence of strings")
    index = {n.lower(): i for i, n in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"attribute_names has duplicates (case-insensitive): {names}")
    vocab = vocabulary if vocabulary is not None else RequestVocabulary()
    pairs = _pairs(request, index)
    if not pairs:
        raise ValueError(f"request is empty; name at least one attribute of {list(names)}")

    unknown = []
    resolved: list[tuple[str, int, int]] = []  # (token, column, value)
    for tok, value in pairs:
        low = tok.lower()
        target = vocab.shorthands.get(low)
        if low not in index and target is not None and target.lower() in index:
            low = target.lower()
        negated = vocab.negation_aliases.get(low)
        if low not in index and negated is not None and negated.lower() in index:
            low, value = negated.lower(), 1 - value
        if low not in index:
            unknown.append(tok)
            continue
        resolved.append((tok, index[low], value))
    if unknown:
        words = sorted(k for k, t in vocab.shorthands.items() if t.lower() in index)
        aliases = sorted(a for a, t in vocab.negation_aliases.items() if t.lower() in index)
        raise ValueError(
            f"unknown attribute name(s) {unknown}; valid names are {list(names)} "
            f"(also '!name' for 0"
            + (f", shorthands {words}" if words else "")
            + (f", aliases {aliases}" if aliases else "")
            + ")"
        )

    explicit: dict[int, tuple[str, int]] = {}
    for tok, col, value in resolved:
        if col in explicit and explicit[col][1] != value:
            raise ValueError(
                f"contradictory request: {names[col]!r} asked as both "
                f"{explicit[col][1]} and {value}"
            )
        explicit[col] = (tok, value)
    values = np.zeros(len(names), dtype=np.int8)
    mask = np.zeros(len(names), dtype=bool)
    for label, cols in vocab.group_columns(names).items():
        positive = [c for c, (_, v) in explicit.items() if v == 1 and c in cols]
        if len(positive) > 1:
            raise ValueError(
                f"contradictory request: more than one {label} requested "
                f"{[names[c] for c in positive]}"
            )
        if positive:
            values[cols], mask[cols] = 0, True
    for col, (_, value) in explicit.items():
        values[col], mask[col] = value, True
    return values, mask


def check_targets(
    y: ArrayLike, mask: Optional[ArrayLike], attribute_names: Sequence[str], n: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validates per-row targets and their mask over ``attribute_names``.

    Args:
        y: 0/1 targets. # [N, A]
        mask: requested entries, or None for all. # [N, A]
        attribute_names: the A column names (for messages).
        n: the required number of rows, if any.

    Returns:
        ``(y int8, mask bool)``, a writable copy of the mask. # [N, A], [N, A]

    Raises:
        ValueError: wrong shapes, values other than 0/1, or a row with nothing requested.
    """
    a = len(attribute_names)
    yy = as_binary_array(y, "y")
    if yy.ndim != 2 or yy.shape[1] != a or (n is not None and yy.shape[0] != n):
        raise ValueError(
            f"y must have shape [N, {a}] (one column per attribute "
            f"{list(attribute_names)}), got {list(yy.shape)}"
        )
    if mask is None:
        mm = np.ones_like(yy, dtype=bool)
    else:
        mm = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if mm.dtype != np.bool_:
            mm = as_binary_array(mm, "mask").astype(bool)
        if mm.shape != yy.shape:
            raise ValueError(
                f"mask must have the shape of y {list(yy.shape)}, got {list(mm.shape)}"
            )
    mm = np.array(mm, dtype=bool)  # a writable copy (broadcast views are read-only)
    if not mm.any(axis=1).all():
        raise ValueError(
            "every row needs at least one requested attribute (mask row of all "
            "False = empty request)"
        )
    return yy, mm


def check_target_tensors(
    y: torch.Tensor, mask: torch.Tensor, rows: int, num_attributes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validates the optimizer's attribute targets and mask; returns float32 ``y``, bool mask.

    Args:
        y: 0/1 targets. # [rows, num_attributes]
        mask: requested entries, bool. # [rows, num_attributes]
    """
    for name, t in (("y", y), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape [{rows}, {num_attributes}], "
                f"got {type(t).__name__}"
            )
        if tuple(t.shape) != (rows, num_attributes):
            raise ValueError(
                f"{name} must have shape [{rows}, {num_attributes}] (one row per "
                f"latent, one column per attribute), got {list(t.shape)}"
            )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    y = y.to(torch.float32)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("y must hold only 0 and 1")
    return y, mask


def complete_requests(
    values: np.ndarray, mask: np.ndarray, table: np.ndarray, n: int, *, seed: int = 0
) -> np.ndarray:
    """Full attribute vectors for a (partial) request: ``y ~ p(y | requested)`` from data.

    The conditional realism critic needs every attribute. Unrequested ones are borrowed from
    training rows that agree with the request on every requested attribute (drawn uniformly
    with replacement); if no row agrees, from the rows that agree on the most requested
    attributes. Requested values always win. Columns beyond ``table``'s (zero-shot
    constraints) take the requested value, or 0 when unrequested.

    Args:
        values: requested values. # [A_all] or [n, A_all]
        mask: requested attributes. # [A_all] or [n, A_all] bool
        table: training attributes, 0/1. # [N, A]
        n: rows to produce (must equal the rows of ``values`` when it is 2-D).
        seed: seed of the row draws.

    Returns:
        int8 attribute vectors. # [n, A_all]
    """
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    table = np.asarray(table)
    if values.shape != mask.shape:
        raise ValueError(
            f"values and mask must have the same shape, got {values.shape} and {mask.shape}"
        )
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError(f"table must be a non-empty [N, A] attribute table, got {table.shape}")
    if values.ndim == 1:
        values = np.broadcast_to(values, (n, values.shape[0]))
        mask = np.broadcast_to(mask, (n, mask.shape[0]))
    if values.ndim != 2 or values.shape[0] != n:
        raise ValueError(f"values must have shape [A] or [{n}, A], got {values.shape}")
    a_all, a = values.shape[1], table.shape[1]
    if a_all < a:
        raise ValueError(f"values has {a_all} attributes, fewer than the table's {a}")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, a_all), dtype=np.int8)
    # Rows sharing one request are completed together (the common case: one request, n rows).
    keys = np.concatenate([values[:, :a] * mask[:, :a], mask[:, :a]], axis=1).astype(np.int8)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k in range(uniq.shape[0]):
        rows = np.flatnonzero(inverse == k)
        v, m = uniq[k, :a], uniq[k, a:].astype(bool)
        agree = (table[:, m] == v[m]).sum(axis=1) if m.any() else np.zeros(table.shape[0])
        pool = np.flatnonzero(agree == agree.max())
        out[rows, :a] = table[rng.choice(pool, size=rows.size, replace=True)]
    return np.where(mask, values, out).astype(np.int8)


__all__ = [
    "RequestVocabulary",
    "as_binary_array",
    "check_target_tensors",
    "check_targets",
    "complete_requests",
    "parse_request",
]
