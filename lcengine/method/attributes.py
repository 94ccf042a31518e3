# SPDX-License-Identifier: Apache-2.0
"""The attributes a model is constrained on, declared once: :class:`AttributeSpec`.

An application declares its attributes as *binary* attributes (``smiling``: 0 or 1) and
*categorical groups* with their classes (``hair``: ``black``, ``blond``, ``brown``; at most one
class per row)::

    spec = AttributeSpec(
        binary=["smiling", "young"],
        groups={"hair": ["black", "blond", "brown"]},
        negations={"old": "young"},  # a word for "!young"
    )
    spec.columns  # ('hair_black', 'hair_blond', 'hair_brown', 'smiling', 'young')

The spec fixes the flat column names and their order, which is the order of the data's attribute
columns and of the attribute critic's outputs: the entries of ``order`` (default: the groups in
declaration order, then the binary attributes), a group contributing one column per class named
``<group><separator><class>`` (``hair_black``). Names are declared, never parsed: nothing in the
method reads a group or a class back out of a column name.

Requests (:func:`lcengine.method.requests.parse_request`) are validated against the spec: an
unknown word, two classes of one group (``"black blond"``) or a class together with its group's
negation (``"black !hair"``) is a ``ValueError`` naming the word or the group. Metrics
(:func:`lcengine.method.metrics.attribute_metrics`) read a group's identity as the argmax over its
columns. ``to_dict`` / ``from_dict`` store the spec in checkpoints; :meth:`AttributeSpec.from_names`
converts the older form (a list of names plus a request vocabulary) into a spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from lcengine.validation import (
    MAX_WIDTH,
    check_keys,
    check_mapping,
    check_str,
    check_str_list,
    config_errors,
)

# Prefixes that request the value 0 ("!smiling", "not_smiling"); also "!<group>": no class.
NEGATION_PREFIXES: tuple[str, ...] = ("!", "-", "~", "not_", "no_")

_FIELDS = ("binary", "groups", "order", "negations", "aliases", "separator")


def _names(name: str, value: Any) -> tuple[str, ...]:
    return check_str_list(name, list(value) if isinstance(value, tuple) else value)


@dataclass(frozen=True)
class AttributeSpec:
    """Binary attributes and categorical groups, their column order and request words.

    Args:
        binary: names of the binary attributes.
        groups: group name -> its class labels (at most one class of a group is 1 per row).
            Class labels may repeat across groups (``size: [small, large]``,
            ``font: [small, large]``); a bare class label is a request word only where it is
            unambiguous.
        order: the entries (binary names and group names) in column order; default: the
            groups in declaration order, then the binary attributes.
        negations: a word -> the column it sets to 0 (``{"old": "young"}``: ``old`` means
            ``young = 0``).
        aliases: a word -> the column it stands for (``{"blonde": "hair_blond"}``).
        separator: between a group's name and a class label in the column name.

    Raises:
        TypeError: a name that is not a string, a group that is not a list of strings.
        ValueError: no attribute, an empty group, a duplicate (case-insensitive) among entries,
            classes or column names, an ``order`` that is not a permutation of the entries,
            more than :data:`~lcengine.validation.MAX_WIDTH` columns, or a request word that is
            a column name or names no column; the message names the attribute or the group.
    """

    binary: tuple[str, ...] = ()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    order: Optional[tuple[str, ...]] = None
    negations: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    separator: str = "_"
    # derived: flat column names and the group (or None) of each column
    _columns: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _column_groups: tuple[Optional[str], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _words: Mapping[str, tuple[str, Any]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        binary = _names("binary", self.binary)
        groups_in = check_mapping("groups", self.groups)
        groups = {
            check_str("groups key", g): _names(f"groups[{g!r}]", classes)
            for g, classes in groups_in.items()
        }
        if not isinstance(self.separator, str):
            raise TypeError(f"separator must be a string, got {type(self.separator).__name__}")
        for g, classes in groups.items():
            if not classes:
                raise ValueError(f"group {g!r} has no classes")
            _refuse_duplicates(f"group {g!r} classes", classes)
        entries = tuple(groups) + binary
        _refuse_duplicates("attribute and group names", entries)
        if self.order is None:
            order = entries
        else:
            order = _names("order", self.order)
            if len(order) != len(set(order)) or set(order) != set(entries):
                missing = sorted(set(entries) - set(order))
                extra = sorted(set(order) - set(entries))
                repeated = sorted({o for o in order if order.count(o) > 1})
                raise ValueError(
                    "order must list every binary attribute and group once"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; not declared {extra}" if extra else "")
                    + (f"; repeated {repeated}" if repeated else "")
                )
        columns: list[str] = []
        column_groups: list[Optional[str]] = []
        for entry in order:
            if entry in groups:
                columns.extend(f"{entry}{self.separator}{c}" for c in groups[entry])
                column_groups.extend([entry] * len(groups[entry]))
            else:
                columns.append(entry)
                column_groups.append(None)
        if not columns:
            raise ValueError("an AttributeSpec needs at least one binary attribute or group")
        if len(columns) > MAX_WIDTH:
            raise ValueError(
                f"an AttributeSpec has at most {MAX_WIDTH} columns, got {len(columns)}"
            )
        _refuse_duplicates("column names", columns)
        lower_columns = {c.lower(): i for i, c in enumerate(columns)}
        for g in groups:
            if g.lower() in lower_columns:
                raise ValueError(f"group name {g!r} is also a column name")
        tables = {}
        for what, table in (("negations", self.negations), ("aliases", self.aliases)):
            out = {}
            for word, target in check_mapping(what, table).items():
                word = check_str(f"{what} key", word)
                target = check_str(f"{what}[{word!r}]", target)
                if word.lower() in lower_columns or word.lower() in {g.lower() for g in groups}:
                    raise ValueError(f"{what}[{word!r}]: the word is already an attribute name")
                if target.lower() not in lower_columns:
                    raise ValueError(
                        f"{what}[{word!r}] names {target!r}, which is not a column "
                        f"({list(columns)})"
                    )
                out[word] = columns[lower_columns[target.lower()]]
            tables[what] = out
        overlap = {w.lower() for w in tables["negations"]} & {w.lower() for w in tables["aliases"]}
        if overlap:
            raise ValueError(f"words {sorted(overlap)} are both negations and aliases")
        object.__setattr__(self, "binary", binary)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "negations", tables["negations"])
        object.__setattr__(self, "aliases", tables["aliases"])
        object.__setattr__(self, "_columns", tuple(columns))
        object.__setattr__(self, "_column_groups", tuple(column_groups))
        object.__setattr__(self, "_words", self._word_table())

    def _word_table(self) -> dict[str, tuple[str, Any]]:
        """Lower-case word -> ``("column", index)``, ``("group", name)`` or
        ``("negation", index)``: every word a request may use (bare class labels only where
        no other word and no other group's class is spelled the same)."""
        index = {c.lower(): i for i, c in enumerate(self._columns)}
        words: dict[str, tuple[str, Any]] = {c: ("column", i) for c, i in index.items()}
        words.update({g.lower(): ("group", g) for g in self.groups})
        words.update({w.lower(): ("column", index[t.lower()]) for w, t in self.aliases.items()})
        words.update({w.lower(): ("negation", index[t.lower()]) for w, t in self.negations.items()})
        bare: dict[str, list[int]] = {}
        for g, classes in self.groups.items():
            for c in classes:
                bare.setdefault(c.lower(), []).append(index[self.column_name(g, c).lower()])
        for label, cols in bare.items():
            if len(cols) == 1 and label not in words:
                words[label] = ("column", cols[0])
        return words

    # ------------------------------------------------------------------ columns
    @property
    def columns(self) -> tuple[str, ...]:
        """The flat column names, in column order."""
        return self._columns

    def __len__(self) -> int:
        return len(self._columns)

    @property
    def num_columns(self) -> int:
        return len(self._columns)

    @property
    def column_groups(self) -> tuple[Optional[str], ...]:
        """The group of each column (None for a binary attribute)."""
        return self._column_groups

    def column_name(self, group: str, label: str) -> str:
        """The column of class ``label`` of ``group``."""
        if group not in self.groups:
            raise ValueError(f"unknown group {group!r}; groups are {list(self.groups)}")
        if label not in self.groups[group]:
            raise ValueError(
                f"group {group!r} has no class {label!r}; classes are {list(self.groups[group])}"
            )
        return f"{group}{self.separator}{label}"

    def group_of(self, column: str) -> Optional[str]:
        """The group of a column (None for a binary attribute)."""
        return self._column_groups[self.index(column)]

    def index(self, column: str) -> int:
        """The position of a column name (case-insensitive)."""
        word = self._words.get(str(column).lower())
        if word is None or word[0] != "column" or self._columns[word[1]].lower() != column.lower():
            raise ValueError(f"unknown attribute {column!r}; columns are {list(self._columns)}")
        return word[1]

    def group_columns(self, group: str) -> list[int]:
        """The column positions of a group's classes, in class order."""
        if group not in self.groups:
            raise ValueError(f"unknown group {group!r}; groups are {list(self.groups)}")
        return [i for i, g in enumerate(self._column_groups) if g == group]

    def group_members(self) -> dict[str, tuple[str, ...]]:
        """Group -> its column names (the form :class:`~lcengine.method.baseline.
        AttributeVectorBaseline` takes as ``one_hot_groups``)."""
        return {g: tuple(self._columns[i] for i in self.group_columns(g)) for g in self.groups}

    @property
    def binary_columns(self) -> list[int]:
        """The positions of the binary attributes."""
        return [i for i, g in enumerate(self._column_groups) if g is None]

    def with_binary(self, names: Iterable[str]) -> "AttributeSpec":
        """This spec with binary attributes appended after its last column (the zero-shot
        constraints of :class:`~lcengine.method.constraints.LatentConstraints`)."""
        names = tuple(names)
        if not names:
            return self
        return AttributeSpec(
            binary=self.binary + names,
            groups=self.groups,
            order=tuple(self.order) + names,
            negations=self.negations,
            aliases=self.aliases,
            separator=self.separator,
        )

    # ------------------------------------------------------------------ requests
    def lookup(self, word: str) -> Optional[tuple[str, Any]]:
        """What a request word means: ``("column", i)``, ``("group", name)``,
        ``("negation", i)`` (the word asks column ``i`` to be 0) or None (unknown)."""
        return self._words.get(word.strip().lower())

    def words(self) -> list[str]:
        """The request words besides the column names (aliases, negations, bare class labels,
        group names), for messages."""
        cols = {c.lower() for c in self._columns}
        return sorted(w for w in self._words if w not in cols)

    def check_values(self, values: Any, mask: Any = None, *, name: str = "request") -> None:
        """Refuses a 0/1 request that sets two classes of one group to 1.

        Args:
            values: 0/1 targets. # [A] or [N, A]
            mask: requested entries (None: all). # like ``values``

        Raises:
            ValueError: naming the group and the classes.
        """
        v = np.asarray(values)
        m = np.ones(v.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        v2, m2 = np.atleast_2d(v), np.atleast_2d(m)
        for g in self.groups:
            cols = self.group_columns(g)
            on = (v2[:, cols] == 1) & m2[:, cols]
            bad = np.flatnonzero(on.sum(axis=1) > 1)
            if bad.size:
                row = bad[0]
                classes = [self._columns[c] for c, o in zip(cols, on[row]) if o]
                where = f" (row {row})" if v.ndim == 2 else ""
                raise ValueError(
                    f"contradictory {name}{where}: more than one {g} requested {classes}; "
                    f"group {g!r} takes one class"
                )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """JSON-serializable form (checkpoints store it under ``attributes``)."""
        return {
            "binary": list(self.binary),
            "groups": {g: list(c) for g, c in self.groups.items()},
            "order": list(self.order),
            "negations": dict(self.negations),
            "aliases": dict(self.aliases),
            "separator": self.separator,
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: Optional[str] = None, key: str = "attributes"
    ) -> "AttributeSpec":
        """Inverse of :meth:`to_dict`, every key checked; missing keys take their defaults.

        Args:
            d: the JSON object.
            source: where ``d`` was read from (a file path), put first in error messages.
            key: the name of ``d`` in that file, for messages.

        Raises:
            ValueError: not an object, an unknown key, a value of the wrong type, or a spec the
                constructor refuses; the message names ``source`` and the key
                (``attributes.groups['hair'][1]``).
        """
        with config_errors(source):
            d = check_keys(key, d, _FIELDS, what="AttributeSpec keys")
            args: dict[str, Any] = {}
            if "binary" in d:
                args["binary"] = check_str_list(f"{key}.binary", d["binary"])
            if "groups" in d:
                groups = check_mapping(f"{key}.groups", d["groups"])
                args["groups"] = {
                    check_str(f"{key}.groups key", g): check_str_list(
                        f"{key}.groups[{g!r}]", classes, allow_empty=False
                    )
                    for g, classes in groups.items()
                }
            if "order" in d:
                args["order"] = check_str_list(f"{key}.order", d["order"])
            for name in ("negations", "aliases"):
                if name in d:
                    table = check_mapping(f"{key}.{name}", d[name])
                    args[name] = {
                        check_str(f"{key}.{name} key", w): check_str(f"{key}.{name}[{w!r}]", t)
                        for w, t in table.items()
                    }
            if "separator" in d:
                if not isinstance(d["separator"], str):
                    raise TypeError(f"{key}.separator must be a string, got {d['separator']!r}")
                args["separator"] = d["separator"]
            try:
                return cls(**args)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key}: {exc}") from exc

    @classmethod
    def from_names(cls, names: Sequence[str], vocabulary: Any = None) -> "AttributeSpec":
        """The spec of the older form: column names plus a request vocabulary.

        Each one-hot group of the vocabulary becomes a group whose members must be consecutive
        columns named ``<group>_<class>``; the other names are binary attributes; negation
        aliases and shorthands become ``negations`` and ``aliases`` (those naming an absent
        column, spelled like a column, or equal to a bare class label are dropped, as the old
        parser never used them). The column order is kept.

        Args:
            names: the column names, in column order.
            vocabulary: a :class:`~lcengine.method.requests.RequestVocabulary` (or anything
                with ``one_hot_groups``, ``negation_aliases`` and ``shorthands``), or None.

        Raises:
            ValueError: names that are not non-empty strings or repeat, or a group whose members
                are not consecutive columns named ``<group>_<class>`` (the message names the
                group; declare such a layout with an :class:`AttributeSpec` instead).
        """
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            names = tuple(names) if not isinstance(names, str) else (names,)
        names = tuple(names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError("attribute_names must be a non-empty sequence of non-empty strings")
        if len({n.lower() for n in names}) != len(names):
            raise ValueError(f"attribute_names has duplicates: {names}")
        index = {n: i for i, n in enumerate(names)}
        groups_in = dict(getattr(vocabulary, "one_hot_groups", {}) or {})
        member_group: dict[int, str] = {}
        groups: dict[str, tuple[str, ...]] = {}
        for g, members in groups_in.items():
            cols = [index[m] for m in members if m in index]
            if not cols:
                continue
            prefix = f"{g}_"
            if cols != list(range(cols[0], cols[0] + len(cols))) or any(
                not names[c].startswith(prefix) or len(names[c]) == len(prefix) for c in cols
            ):
                raise ValueError(
                    f"one-hot group {g!r}: its members {[names[c] for c in cols]} must be "
                    f"consecutive columns named '{g}_<class>' to convert to an AttributeSpec; "
                    "declare the attributes with an AttributeSpec instead"
                )
            groups[g] = tuple(names[c][len(prefix) :] for c in cols)
            member_group.update({c: g for c in cols})
        order: list[str] = []
        for i, n in enumerate(names):
            g = member_group.get(i)
            if g is None:
                order.append(n)
            elif not order or order[-1] != g:
                order.append(g)
        lower = {n.lower(): n for n in names}
        bare = {c.lower() for classes in groups.values() for c in classes}
        tables: dict[str, dict[str, str]] = {"negations": {}, "aliases": {}}
        for what, attr in (("negations", "negation_aliases"), ("aliases", "shorthands")):
            for word, target in dict(getattr(vocabulary, attr, {}) or {}).items():
                w, t = str(word), lower.get(str(target).lower())
                if t is None or w.lower() in lower or w.lower() in {g.lower() for g in groups}:
                    continue
                if what == "aliases" and w.lower() in bare:
                    g = member_group.get(index[t])
                    if g is not None and t.lower() == f"{g}_{w}".lower():
                        continue  # the bare class label already means this column
                tables[what][w] = t
        return cls(
            binary=tuple(n for i, n in enumerate(names) if i not in member_group),
            groups=groups,
            order=tuple(order),
            negations=tables["negations"],
            aliases=tables["aliases"],
        )


def _refuse_duplicates(what: str, names: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"{what} repeat {n!r} (names are case-insensitive)")
        seen[n.lower()] = n


def as_attribute_spec(attributes: Any, vocabulary: Any = None) -> AttributeSpec:
    """An :class:`AttributeSpec` from a spec, or from column names plus an optional request
    vocabulary (:meth:`AttributeSpec.from_names`)."""
    if isinstance(attributes, AttributeSpec):
        if vocabulary is not None:
            raise ValueError(
                "pass request words in the AttributeSpec (negations, aliases), not a vocabulary"
            )
        return attributes
    if isinstance(attributes, str) or not isinstance(attributes, Iterable):
        raise TypeError(
            "attributes must be an AttributeSpec or a sequence of attribute names, got "
            f"{type(attributes).__name__}"
        )
    return AttributeSpec.from_names(tuple(attributes), vocabulary)


__all__ = ["AttributeSpec", "NEGATION_PREFIXES", "as_attribute_spec"]
