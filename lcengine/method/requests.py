# SPDX-License-Identifier: Apache-2.0
"""Attribute requests: parsing, target checks, and completion of partial requests.

A *request* names the attributes a sample or an edit must have: ``"a !b"``, ``["a", "b=0"]``,
``{"a": 1, "b": 0}``, or a class of a categorical group (``"hair=blond"``, or ``"blond"`` where
the label is unambiguous). :func:`parse_request` turns it into a target vector and a mask of the
requested attributes over the columns of an :class:`~lcengine.method.attributes.AttributeSpec`,
which declares the binary attributes, the groups with their classes (requesting a class sets
the group's other classes to 0) and the request words (negations such as ``"old"`` =
``"!young"``, aliases). A request naming an unknown word, two classes of one group, or a class
together with its group's negation is a ``ValueError`` naming the word or the group.

:class:`RequestVocabulary` is the older form of the request words (one-hot groups, negation
aliases, shorthands) kept for checkpoints written before the spec and for callers that pass
column names; :meth:`AttributeSpec.from_names` converts names plus a vocabulary into a spec.

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

from .attributes import NEGATION_PREFIXES, AttributeSpec, as_attribute_spec

ArrayLike = Union[np.ndarray, torch.Tensor]
Request = Union[str, Mapping[str, int], Sequence[str]]


@dataclass(frozen=True)
class RequestVocabulary:
    """What a request may say beyond the plain attribute names (the form before
    :class:`~lcengine.method.attributes.AttributeSpec`; converted to one by
    :meth:`AttributeSpec.from_names <lcengine.method.attributes.AttributeSpec.from_names>`).

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


def vocabulary_of(spec: AttributeSpec) -> RequestVocabulary:
    """The :class:`RequestVocabulary` equivalent of a spec's groups and words (for callers of
    the older form): groups as member columns, bare class labels as shorthands."""
    shorthands = dict(spec.aliases)
    for group, classes in spec.groups.items():
        for label in classes:
            column = spec.column_name(group, label)
            if spec.lookup(label) == ("column", spec.index(column)):
                shorthands[label] = column
    return RequestVocabulary(
        one_hot_groups=spec.group_members(),
        negation_aliases=dict(spec.negations),
        shorthands=shorthands,
    )


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


def _resolve(spec: AttributeSpec, word: str) -> Optional[tuple[str, Any, bool]]:
    """``(kind, target, negated)`` of a request word, a negation prefix stripped when the word
    itself is unknown; None when unknown either way."""
    hit = spec.lookup(word)
    if hit is not None:
        return hit[0], hit[1], False
    low = word.lower()
    for prefix in NEGATION_PREFIXES:
        if low.startswith(prefix) and len(low) > len(prefix):
            hit = spec.lookup(low[len(prefix) :])
            if hit is not None:
                return hit[0], hit[1], True
    return None


def _class_column(spec: AttributeSpec, group: str, label: Any, token: str) -> int:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (str, int, np.integer)):
        raise ValueError(
            f"request {token!r}: a class of group {group!r} is named by its label "
            f"({list(spec.groups[group])}), got {label!r}"
        )
    text = str(label).strip().lower()
    for c in spec.groups[group]:
        if c.lower() == text:
            return spec.index(spec.column_name(group, c))
    raise ValueError(
        f"request {token!r}: group {group!r} has no class {str(label)!r}; its classes are "
        f"{list(spec.groups[group])}"
    )


def _binary_value(v: Any, token: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    if isinstance(v, str) and v.strip() in ("0", "1"):
        v = int(v.strip())
    if not isinstance(v, (int, np.integer)) or int(v) not in (0, 1):
        raise ValueError(f"request {token!r}: value must be 0 or 1, got {v!r}")
    return int(v)


# One resolved request item: ("column", column, value) or ("group", group, 0) (no class).
_Item = tuple[str, Any, int, str]


def _items(request: Request, spec: AttributeSpec) -> tuple[list[_Item], list[str]]:
    """The resolved items of a request and its unknown words."""
    items: list[_Item] = []
    unknown: list[str] = []

    def add(word: str, value: Any, token: str, *, prefixes: bool) -> None:
        hit = _resolve(spec, word) if prefixes else spec.lookup(word)
        if hit is None:
            unknown.append(token)
            return
        kind, target, negated = hit if prefixes else (hit[0], hit[1], False)
        if kind == "group":
            if value is None:  # a bare group name: "!hair" asks for no class of the group
                if not negated:
                    raise ValueError(
                        f"request {token!r}: name a class of group {target!r} "
                        f"({target}=<class>, one of {list(spec.groups[target])}), or "
                        f"!{target} for none"
                    )
                items.append(("group", target, 0, token))
            else:
                if negated:
                    raise ValueError(f"request {token!r}: write {target}=<class> or !<class>")
                items.append(("column", _class_column(spec, target, value, token), 1, token))
            return
        v = 1 if value is None else _binary_value(value, token)
        if kind == "negation":
            v = 1 - v
        items.append(("column", target, 1 - v if negated else v, token))

    if isinstance(request, Mapping):
        for k, v in request.items():
            if not isinstance(k, str):
                raise TypeError(f"request keys must be attribute names (str), got {k!r}")
            hit = spec.lookup(k)
            if hit is not None and hit[0] != "group":
                _binary_value(v, f"{k}={v!r}")  # refuses 2, "yes" before anything else
            add(k.strip(), v, k, prefixes=False)
    elif isinstance(request, (str, list, tuple)):
        for tok in _tokens(request):
            word, value = tok, None
            if "=" in tok:
                word, _, rhs = tok.partition("=")
                value = rhs.strip()
                hit = spec.lookup(word)
                if not (hit is not None and hit[0] == "group") and value not in ("0", "1"):
                    raise ValueError(f"request token {tok!r}: value must be 0 or 1")
            add(word, value, tok, prefixes=True)
    else:
        raise TypeError(
            "request must be a string, a sequence of strings or a dict of "
            f"name -> 0/1, got {type(request).__name__}"
        )
    return items, unknown


def parse_request(
    request: Request,
    attributes: Union[AttributeSpec, Sequence[str]],
    vocabulary: Optional[RequestVocabulary] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Turns an attribute request into a target vector and a mask of requested attributes.

    Accepted forms (words are case-insensitive):

    * a string of tokens separated by commas, spaces or semicolons: ``"a,b"``, ``"a !b"``. A
      token is a column name (value 1), ``!name`` / ``-name`` / ``~name`` / ``not_name`` /
      ``no_name`` (value 0), ``name=0`` / ``name=1``, a group's class as ``group=class`` or by
      its bare label where unambiguous, ``!group`` (no class of the group), or a word of the
      spec (an alias for a column, or a negation);
    * a sequence of such tokens: ``["a", "b=0"]``;
    * a dict ``{"a": 1, "b": 0, "group": "class"}`` (values 0/1 or bools; a class label for a
      group).

    Requesting a class sets the group's other classes to 0. Unrequested attributes have mask
    False and value 0.

    Args:
        request: the request.
        attributes: the :class:`~lcengine.method.attributes.AttributeSpec`, or (the older form)
            the column names, converted with ``vocabulary`` by
            :meth:`~lcengine.method.attributes.AttributeSpec.from_names`.
        vocabulary: only with names: one-hot groups, aliases and shorthands.

    Returns:
        ``(values, mask)``: int8 0/1 targets and bool requested-mask. # [A], [A]

    Raises:
        ValueError: empty request, unknown word (the message names it and lists the valid
            names), a contradictory request (one attribute asked as 0 and 1, two classes of one
            group, a class with its group's negation: the message names the attribute or the
            group), or a value other than 0/1.
        TypeError: a request of another type.
    """
    spec = as_attribute_spec(attributes, vocabulary)
    names = spec.columns
    items, unknown = _items(request, spec)
    if unknown:
        groups = {g: list(c) for g, c in spec.groups.items()}
        raise ValueError(
            f"unknown attribute name(s) {unknown}; valid names are {list(names)} "
            "(also '!name' for 0"
            + (f"; groups {groups} as group=<class> or the bare class" if groups else "")
            + (f"; negations {sorted(spec.negations)}" if spec.negations else "")
            + (f"; aliases {sorted(spec.aliases)}" if spec.aliases else "")
            + ")"
        )
    if not items:
        raise ValueError(f"request is empty; name at least one attribute of {list(names)}")
    explicit: dict[int, tuple[str, int]] = {}
    negated_groups: dict[str, str] = {}
    for kind, target, value, token in items:
        if kind == "group":
            negated_groups[target] = token
            continue
        if target in explicit and explicit[target][1] != value:
            raise ValueError(
                f"contradictory request: {names[target]!r} asked as both "
                f"{explicit[target][1]} and {value}"
            )
        explicit[target] = (token, value)
    values = np.zeros(len(names), dtype=np.int8)
    mask = np.zeros(len(names), dtype=bool)
    for group in spec.groups:
        cols = spec.group_columns(group)
        positive = [c for c in cols if explicit.get(c, ("", 0))[1] == 1]
        if len(positive) > 1:
            raise ValueError(
                f"contradictory request: more than one {group} requested "
                f"{[names[c] for c in positive]}; group {group!r} takes one class"
            )
        if positive and group in negated_groups:
            raise ValueError(
                f"contradictory request: {names[positive[0]]!r} requested with "
                f"{negated_groups[group]!r} (no class of group {group!r})"
            )
        if positive or group in negated_groups:
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic). # [N] -> [N]"""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_draws(seed: int, rows: np.ndarray) -> np.ndarray:
    """One 64-bit draw per row, a function of ``(seed, row)`` only (splitmix64 of the pair):
    the same row gets the same draw whatever block it is drawn in. # rows [N] -> uint64 [N]"""
    with np.errstate(over="ignore"):
        key = _mix64(np.asarray([seed], dtype=np.uint64) * _GOLDEN + _GOLDEN)  # [1]
        return _mix64(np.asarray(rows, dtype=np.uint64) * _GOLDEN + key)


def complete_requests(
    values: np.ndarray,
    mask: np.ndarray,
    table: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    row_index: Optional[np.ndarray] = None,
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
        row_index: global index of each row ``[n]``: each row's draw is then a function of
            ``(seed, row_index)`` alone (:func:`row_draws`), so a large request completed block
            by block gives the same rows whatever the blocks; None: one seeded generator for
            the call.

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
    draws = None
    if row_index is not None:
        row_index = np.asarray(row_index)
        if row_index.shape != (n,) or row_index.dtype.kind not in "iu" or (row_index < 0).any():
            raise ValueError(
                f"row_index must be {n} non-negative integers, got shape {row_index.shape} "
                f"dtype {row_index.dtype}"
            )
        draws = row_draws(seed, row_index)  # [n] uint64
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
        if draws is None:
            out[rows, :a] = table[rng.choice(pool, size=rows.size, replace=True)]
        else:
            out[rows, :a] = table[pool[draws[rows] % np.uint64(pool.size)]]
    return np.where(mask, values, out).astype(np.int8)


__all__ = [
    "AttributeSpec",
    "RequestVocabulary",
    "as_binary_array",
    "check_target_tensors",
    "check_targets",
    "complete_requests",
    "parse_request",
    "row_draws",
    "vocabulary_of",
]
