# SPDX-License-Identifier: Apache-2.0
"""Attribute-vector arithmetic: the baseline the latent constraints are compared against.

Fit: for each attribute ``a``, centroids of the encodings with ``a = 1`` (``c1_a``) and ``a = 0``
(``c0_a``), the attribute vector ``v_a = c1_a - c0_a``, the training frequency ``p_a`` and the
global centroid ``g``.

Apply a request ``(values, mask)`` to starting latents ``z``:

* **one-hot group** (when a member ``k`` of a group is requested as 1): move from the source's
  member centroid to the target's, ``z + c_target - c_source``, when the source's member is
  known (``source_attributes``), otherwise ``z + c_target - g``. The group's other requested
  entries (all 0) are implied by the one-hot target and add nothing more.
* **every other requested attribute** (single attributes, zero-shot constraints, or a group
  member asked to be 0 without a target member): ``z + (value - s_a) * v_a``, where ``s_a`` is
  the source's
  value of the attribute when known (so an attribute already satisfied is left alone and a
  wrong one moves by the full vector) and the training frequency ``p_a`` otherwise (which
  moves the mean of the data, ``g = p_a c1_a + (1 - p_a) c0_a``, exactly onto ``c_value``).

The shifts add up and are multiplied by ``scale`` (default 1). No learned model is involved;
the result is usually off the data manifold when several attributes are combined, which is what
the critics are meant to fix.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from lcengine.validation import check_float

from .requests import RequestVocabulary

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as e:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be an array, got {type(a).__name__}") from e
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    return a


class AttributeVectorBaseline:
    """Shifts latents along differences of attribute centroids (see the module docstring).

    Args:
        attribute_names: the A column names.
        scale: multiplier of every shift.
        one_hot_groups: group label -> member names (e.g. the classes of a label); a request
            for a member moves between member centroids (see the module docstring).

    Attributes (after :meth:`fit`):
        pos_centroids: ``c1_a``, NaN rows where no training row has ``a = 1``. # [A, D]
        neg_centroids: ``c0_a``. # [A, D]
        vectors: ``c1_a - c0_a``. # [A, D]
        frequencies: ``p_a``. # [A]
        global_centroid: ``g``. # [D]
    """

    def __init__(
        self,
        attribute_names: Sequence[str],
        scale: float = 1.0,
        *,
        one_hot_groups: Optional[Mapping[str, Sequence[str]]] = None,
    ):
        names = tuple(attribute_names)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError("attribute_names must be a non-empty sequence of strings")
        self.attribute_names = names
        self.scale = check_float("scale", scale)
        # label -> columns of the group's members among the names
        self.group_columns = RequestVocabulary(one_hot_groups=one_hot_groups or {}).group_columns(
            names
        )
        self.pos_centroids: Optional[np.ndarray] = None
        self.neg_centroids: Optional[np.ndarray] = None
        self.vectors: Optional[np.ndarray] = None
        self.frequencies: Optional[np.ndarray] = None
        self.global_centroid: Optional[np.ndarray] = None

    @property
    def fitted(self) -> bool:
        return self.vectors is not None

    def fit(self, z: ArrayLike, attributes: ArrayLike) -> "AttributeVectorBaseline":
        """Computes centroids from encodings of labelled data.

        Args:
            z: encodings, e.g. posterior means of the training set. # [N, D]
            attributes: 0/1 labels, columns ``attribute_names``. # [N, A]

        Returns:
            self.
        """
        zz = _to_numpy(z, "z").astype(np.float64)
        att = _to_numpy(attributes, "attributes")
        if zz.ndim != 2 or zz.shape[0] < 1:
            raise ValueError(f"z must have shape [N, D] with N >= 1, got {list(zz.shape)}")
        if not np.isfinite(zz).all():
            raise ValueError("z contains NaN or infinite values")
        a = len(self.attribute_names)
        if att.shape != (zz.shape[0], a):
            raise ValueError(
                f"attributes must have shape [{zz.shape[0]}, {a}] (rows of z, one "
                f"column per attribute name), got {list(att.shape)}"
            )
        if att.size and not np.isin(att, (0, 1)).all():
            raise ValueError("attributes must contain only 0 and 1")
        att = att.astype(bool)
        return self.fit_statistics(
            num_rows=zz.shape[0],
            sum_all=zz.sum(0),
            sum_pos=att.T.astype(np.float64) @ zz,
            count_pos=att.sum(0).astype(np.float64),
        )

    def fit_statistics(
        self, *, num_rows: int, sum_all: ArrayLike, sum_pos: ArrayLike, count_pos: ArrayLike
    ) -> "AttributeVectorBaseline":
        """Centroids from sums of the encodings, as one streaming pass gathers them
        (:func:`lcengine.method.data.summarize`).

        Args:
            num_rows: N >= 1.
            sum_all: sum of all encodings. # [D]
            sum_pos: per attribute, the sum of the encodings of rows where it is 1. # [A, D]
            count_pos: per attribute, the rows where it is 1. # [A]

        Returns:
            self.
        """
        n = float(num_rows)
        if n < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        s_all = _to_numpy(sum_all, "sum_all").astype(np.float64)
        s_pos = _to_numpy(sum_pos, "sum_pos").astype(np.float64)
        cnt1 = _to_numpy(count_pos, "count_pos").astype(np.float64)
        a = len(self.attribute_names)
        if s_all.ndim != 1 or s_pos.shape != (a, s_all.shape[0]) or cnt1.shape != (a,):
            raise ValueError(
                f"sum_all [D], sum_pos [{a}, D] and count_pos [{a}] expected, got "
                f"{list(s_all.shape)}, {list(s_pos.shape)} and {list(cnt1.shape)}"
            )
        cnt0 = n - cnt1  # [A]
        with np.errstate(invalid="ignore", divide="ignore"):
            pos = s_pos / cnt1[:, None]  # [A, D]
            neg = (s_all[None, :] - s_pos) / cnt0[:, None]  # [A, D]
        pos[cnt1 == 0] = np.nan
        neg[cnt0 == 0] = np.nan
        self.pos_centroids, self.neg_centroids = pos, neg
        self.vectors = pos - neg  # [A, D], NaN rows for constant attributes
        self.frequencies = cnt1 / n
        self.global_centroid = s_all / n
        return self

    def _check_request(self, arr, name: str, b: int) -> np.ndarray:
        a = len(self.attribute_names)
        v = _to_numpy(arr, name)
        if v.shape == (a,):
            v = np.broadcast_to(v, (b, a))
        if v.shape != (b, a):
            raise ValueError(
                f"{name} must have shape [{a}] or [{b}, {a}] (one entry per "
                f"attribute name), got {list(np.shape(arr))}"
            )
        if v.size and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0 and 1 (or booleans)")
        return v.astype(np.int8)

    def shift(
        self,
        values: ArrayLike,
        mask: ArrayLike,
        *,
        batch: int,
        source_attributes: Optional[ArrayLike] = None,
    ) -> np.ndarray:
        """The latent shift per row, without applying it. # -> [B, D] float64"""
        if not self.fitted:
            raise RuntimeError("AttributeVectorBaseline.fit must be called before apply")
        vals = self._check_request(values, "values", batch)  # [B, A]
        msk = self._check_request(mask, "mask", batch).astype(bool)  # [B, A]
        src = None
        if source_attributes is not None:
            src = self._check_request(source_attributes, "source_attributes", batch)
        d = self.vectors.shape[1]
        out = np.zeros((batch, d))  # [B, D]
        names = self.attribute_names
        for i in range(batch):
            handled = np.zeros(len(names), dtype=bool)
            for label, cols in self.group_columns.items():
                target = [c for c in cols if msk[i, c] and vals[i, c] == 1]
                if len(target) > 1:
                    raise ValueError(
                        f"row {i} requests more than one {label}: {[names[c] for c in target]}"
                    )
                if target:
                    t = target[0]
                    c_t = self.pos_centroids[t]
                    if np.isnan(c_t).any():
                        raise ValueError(
                            f"no training latent has {names[t]} = 1; cannot move towards it"
                        )
                    start = self.global_centroid
                    if src is not None:
                        src_members = [c for c in cols if src[i, c] == 1]
                        if (
                            len(src_members) == 1
                            and not np.isnan(self.pos_centroids[src_members[0]]).any()
                        ):
                            start = self.pos_centroids[src_members[0]]
                    out[i] += c_t - start
                    handled[cols] = True
            for j in np.flatnonzero(msk[i] & ~handled):
                s = float(src[i, j]) if src is not None else float(self.frequencies[j])
                coef = float(vals[i, j]) - s
                if coef == 0.0:
                    continue
                if np.isnan(self.vectors[j]).any():
                    raise ValueError(
                        f"attribute {names[j]!r} is constant in the fitted data "
                        "(all 0 or all 1); its vector is undefined"
                    )
                out[i] += coef * self.vectors[j]
        return self.scale * out

    def apply(
        self,
        z_start: ArrayLike,
        values: ArrayLike,
        mask: ArrayLike,
        *,
        source_attributes: Optional[ArrayLike] = None,
    ) -> ArrayLike:
        """Shifts starting latents towards the requested attributes.

        Args:
            z_start: starting latents (prior samples or encodings of real inputs). # [B, D]
            values: requested 0/1 values, one row for all or one per row. # [A] or [B, A]
            mask: requested entries. # [A] or [B, A]
            source_attributes: the starting points' known attributes (e.g. labels of the real
                inputs being transformed), or None for prior samples. # [A] or [B, A]

        Returns:
            Shifted latents of the same kind as ``z_start`` (numpy float32 for numpy input;
            a tensor with ``z_start``'s dtype and device for tensor input). # [B, D]
        """
        zz = _to_numpy(z_start, "z_start")
        if zz.ndim != 2:
            raise ValueError(f"z_start must have shape [B, D], got {list(zz.shape)}")
        if not self.fitted:
            raise RuntimeError("AttributeVectorBaseline.fit must be called before apply")
        if zz.shape[1] != self.vectors.shape[1]:
            raise ValueError(
                f"z_start has latent dimension {zz.shape[1]}, the baseline was "
                f"fitted on {self.vectors.shape[1]}"
            )
        if not np.isfinite(zz).all():
            raise ValueError("z_start contains NaN or infinite values")
        delta = self.shift(values, mask, batch=zz.shape[0], source_attributes=source_attributes)
        if isinstance(z_start, torch.Tensor):
            return z_start + torch.as_tensor(delta, dtype=z_start.dtype, device=z_start.device)
        return (zz.astype(np.float64) + delta).astype(np.float32)
