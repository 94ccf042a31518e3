# SPDX-License-Identifier: Apache-2.0
"""Training data of the critics: latent sources read by random row batches, and devices.

The critics train on rows ``(mu, logvar, attributes)`` of a labelled data set (or on latent
samples ``z`` with attributes). A :class:`LatentSource` gives them by index, so the trainer draws
random minibatches without holding the whole set in memory:

* :class:`TrainingData`: tensors in memory;
* :class:`LatentFiles`: latent files read by row: ``.npy`` arrays
  (:meth:`LatentFiles.from_npy`, or a folder holding ``mu.npy`` + ``logvar.npy`` or ``z.npy``,
  and ``attributes.npy``) or one ``.safetensors`` file with tensors ``mu`` + ``logvar`` or
  ``z``, and ``attributes`` (:meth:`LatentFiles.from_safetensors`); :func:`open_latents` picks
  by path;
* :class:`LatentSamples`: latent samples ``z`` (no ``logvar``) with attributes, in memory, e.g.
  labelled prior samples of a decoder-only model (:func:`label_latents` labels decoded
  latents with a function ``label_fn(x) -> [N, A]``); ``sigma_bar`` defaults to ones, the
  scale of the prior ``N(0, I)``;
* :func:`encode_batches`: an iterable of ``(x, attributes)`` batches (a
  ``torch.utils.data.DataLoader``) encoded once, batch by batch, into temporary raw files that
  are then read as :class:`LatentFiles` (removed when the source is garbage collected or
  :meth:`LatentSource.close` is called).

Files are never mapped into memory: a random batch reads its rows with one ``os.pread`` per
distinct row (the file's header is read with ``np.load(mmap_mode="r")`` or ``safe_open``), and
whole passes (:func:`summarize`) read chunks with ``readinto`` into one reused buffer. The
file's pages stay in the kernel's page cache and out of the process's resident set (a memory
map would count every touched page, and the kernel maps pages around each fault, so random
batches from a map grow the resident set towards the file's size).

:func:`summarize` makes the one streaming pass every source gets before training: it checks the
rows (finite latents, 0/1 attributes) and computes ``sigma_bar``, the attribute-vector
baseline's sums and the table of attribute combinations with their counts: everything the
method keeps of the data (:class:`DataSummary`, saved in checkpoints).

:func:`resolve_device` turns ``device=`` arguments (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
``"auto"``, ``"meta"`` or a ``torch.device``) into a ``torch.device``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from lcengine.validation import check_finite_tensor, check_int

DeviceLike = Union[str, torch.device]
PathLike = Union[str, Path]
Rows = tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]

CHUNK_ROWS = 65536  # rows per read of a streaming pass
_LATENT_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
_ATTRIBUTE_DTYPES = {
    "U8": np.uint8,
    "I8": np.int8,
    "BOOL": np.bool_,
    "F32": np.float32,
    "F64": np.float64,
    "I32": np.int32,
    "I64": np.int64,
}


def resolve_device(device: Any, name: str = "device") -> torch.device:
    """A ``torch.device`` for ``device``: ``"auto"`` is CUDA when ``torch.cuda.is_available()``,
    else the CPU.

    Raises:
        ValueError: not a device string or ``torch.device``, or a CUDA device without CUDA
            (the message names ``name``).
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(
            f"{name} must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device, got "
            f"{type(device).__name__} {device!r}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device, got {device!r}"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} is {device!r} but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} is {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type not in ("cpu", "meta"):
        raise ValueError(f"{name} must be a CPU, CUDA or meta device, got {device!r}")
    return dev


class LatentSource(ABC):
    """Labelled training rows read by index: the critics' training set.

    Attributes:
        num_rows: N.
        latent_dim: D.
        num_attributes: A.
        has_logvar: rows carry ``(mu, logvar)``; otherwise they are latent samples ``z`` (read
            as ``mu``, with ``logvar`` None) and the trainer uses them as drawn.
        sigma_bar: for a source without ``logvar``, the per-dimension scale of the distance
            penalty, given with the data (None otherwise). # [D]
    """

    num_rows: int
    latent_dim: int
    num_attributes: int
    has_logvar: bool = True
    sigma_bar: Optional[torch.Tensor] = None

    @abstractmethod
    def read(self, idx: torch.Tensor) -> Rows:
        """Rows ``idx`` as CPU float32 tensors ``(mu, logvar or None, attributes)``.
        # [B] int64 -> [B, D], [B, D] | None, [B, A]"""

    @abstractmethod
    def read_attributes(self, idx: torch.Tensor) -> torch.Tensor:
        """Attributes of rows ``idx`` as CPU float32. # [B] -> [B, A]"""

    @abstractmethod
    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Rows]:
        """The rows in order, ``rows`` at a time, as :meth:`read` returns them."""

    def close(self) -> None:  # noqa: B027 - optional: sources in memory hold nothing
        """Releases files (and removes temporary ones)."""


@dataclass
class TrainingData(LatentSource):
    """Encodings of the labelled training set, in memory.

    Attributes:
        mu: encoder means. # [N, D]
        logvar: encoder log-variances. # [N, D]
        attributes: 0/1 labels as float32. # [N, A]
    """

    mu: torch.Tensor
    logvar: torch.Tensor
    attributes: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("mu", "logvar", "attributes"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 2:
                raise ValueError(
                    f"TrainingData.{name} must be a 2-D tensor, got "
                    f"{getattr(t, 'shape', type(t).__name__)}"
                )
            check_finite_tensor(f"TrainingData.{name}", t)
        if self.mu.shape != self.logvar.shape:
            raise ValueError(
                f"mu and logvar must have the same shape, got {list(self.mu.shape)} "
                f"and {list(self.logvar.shape)}"
            )
        if self.attributes.shape[0] != self.mu.shape[0]:
            raise ValueError(
                f"attributes has {self.attributes.shape[0]} rows but mu has {self.mu.shape[0]}"
            )
        if not bool(((self.attributes == 0) | (self.attributes == 1)).all()):
            raise ValueError("attributes must hold only 0 and 1")
        if self.mu.shape[0] < 2:
            raise ValueError("the critics need at least 2 training rows")
        self.mu = self.mu.detach().cpu().to(torch.float32).contiguous()
        self.logvar = self.logvar.detach().cpu().to(torch.float32).contiguous()
        self.attributes = self.attributes.detach().cpu().to(torch.float32).contiguous()
        self.num_rows = int(self.mu.shape[0])
        self.latent_dim = int(self.mu.shape[1])
        self.num_attributes = int(self.attributes.shape[1])

    def read(self, idx: torch.Tensor) -> Rows:
        return self.mu[idx], self.logvar[idx], self.attributes[idx]

    def read_attributes(self, idx: torch.Tensor) -> torch.Tensor:
        return self.attributes[idx]

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Rows]:
        for i in range(0, self.num_rows, rows):
            yield self.mu[i : i + rows], self.logvar[i : i + rows], self.attributes[i : i + rows]


class LatentSamples(LatentSource):
    """Latent samples ``z`` with attributes, in memory (a source without ``logvar``).

    The rows are used as drawn (no reparameterization). For prior samples ``z ~ N(0, I)`` of a
    decoder-only model, every row is a real row for the realism critic, and ``sigma_bar``
    (the distance penalty's per-dimension scale, otherwise the average encoder scale) is
    ones: the prior's scale.

    Args:
        z: latent samples. # [N, D]
        attributes: 0/1 labels. # [N, A]
        sigma_bar: per-dimension scale of the distance penalty, positive. # [D]; default ones
    """

    def __init__(self, z: Any, attributes: Any, *, sigma_bar: Optional[Any] = None) -> None:
        from .requests import as_binary_array

        if not isinstance(z, torch.Tensor):
            z = torch.as_tensor(np.asarray(z, dtype=np.float32))
        if z.dim() != 2:
            raise ValueError(f"z must be a 2-D tensor [N, D], got shape {list(z.shape)}")
        check_finite_tensor("z", z)
        att = as_binary_array(attributes, "attributes")  # [N, A] int8
        if att.ndim != 2 or att.shape[0] != z.shape[0]:
            raise ValueError(
                f"attributes must have shape [{z.shape[0]}, A] (one row per latent), got "
                f"{list(att.shape)}"
            )
        if z.shape[0] < 2:
            raise ValueError("the critics need at least 2 training rows")
        self.z = z.detach().cpu().to(torch.float32).contiguous()  # [N, D]
        self.attributes = torch.from_numpy(att.astype(np.float32))  # [N, A]
        self.num_rows, self.latent_dim = int(z.shape[0]), int(z.shape[1])
        self.num_attributes = int(att.shape[1])
        self.has_logvar = False
        sb = (
            torch.ones(self.latent_dim)
            if sigma_bar is None
            else torch.as_tensor(np.asarray(sigma_bar, dtype=np.float32)).reshape(-1)
        )
        if sb.shape != (self.latent_dim,) or not bool((sb > 0).all()):
            raise ValueError(
                f"sigma_bar must hold {self.latent_dim} positive values, got "
                f"{list(np.shape(sigma_bar))}"
            )
        self.sigma_bar = check_finite_tensor("sigma_bar", sb)  # [D]

    def read(self, idx: torch.Tensor) -> Rows:
        return self.z[idx], None, self.attributes[idx]

    def read_attributes(self, idx: torch.Tensor) -> torch.Tensor:
        return self.attributes[idx]

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Rows]:
        for i in range(0, self.num_rows, rows):
            yield self.z[i : i + rows], None, self.attributes[i : i + rows]


LabelFn = Callable[[np.ndarray], Any]


@torch.no_grad()
def label_latents(
    model: Any,
    z: torch.Tensor,
    label_fn: LabelFn,
    *,
    num_attributes: int,
    batch_size: int = 1000,
    progress: bool = True,
) -> np.ndarray:
    """Attributes of latents by a labelling function on their decoded outputs.

    Args:
        model: a :class:`~lcengine.method.latent_model.LatentModel` (only ``decode`` is used).
        z: latents, flat rows. # [N, D]
        label_fn: ``label_fn(x [B, *data_shape] float32 numpy) -> [B, A]`` 0/1 (bool, integer
            or float, numpy or tensor), e.g. a classifier's thresholded outputs.
        num_attributes: A.
        batch_size: latents decoded and labelled per call.
        progress: a tqdm bar over the batches.

    Returns:
        The labels. # [N, A] int8
    """
    from .requests import as_binary_array

    if not callable(label_fn):
        raise TypeError(
            f"label_fn must be callable (x [B, *data_shape] -> [B, A] 0/1), got "
            f"{type(label_fn).__name__}"
        )
    check_int("num_attributes", num_attributes, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    out = []
    for i in tqdm(
        range(0, int(z.shape[0]), batch_size),
        desc="label latents",
        unit="batch",
        disable=None if progress else True,
        leave=False,
    ):
        x = model.decode(z[i : i + batch_size]).detach().cpu().numpy().astype(np.float32)
        lab = as_binary_array(label_fn(x), "label_fn's output")  # [B, A]
        if lab.shape != (x.shape[0], num_attributes):
            raise ValueError(
                f"label_fn returned shape {list(lab.shape)}; it must return one 0/1 row per "
                f"item, shape [{x.shape[0]}, {num_attributes}]"
            )
        out.append(lab)
    return np.concatenate(out) if out else np.zeros((0, num_attributes), dtype=np.int8)


class _RowFile:
    """A ``[rows, cols]`` C-order array stored at ``offset`` bytes into a file."""

    def __init__(
        self, path: Path, offset: int, dtype: np.dtype, rows: int, cols: int, name: str
    ) -> None:
        self.path, self.offset, self.dtype = Path(path), int(offset), np.dtype(dtype)
        self.rows, self.cols, self.name = int(rows), int(cols), name
        need = self.offset + self.rows * self.cols * self.dtype.itemsize
        size = self.path.stat().st_size
        if size < need:
            raise ValueError(
                f"{name}: {self.path} holds {size} bytes, fewer than the {need} its header promises"
            )
        self._fd: Optional[int] = None

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed), one ``pread`` per distinct row.
        # [B] -> [B, cols]"""
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.rows):
            raise IndexError(f"{self.name}: row index out of range [0, {self.rows})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        size = self.cols * self.dtype.itemsize
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        parts = [os.pread(self._fd, size, self.offset + int(i) * size) for i in uniq]
        if any(len(p) != size for p in parts):
            raise ValueError(f"{self.name}: {self.path} ended early")
        rows = np.frombuffer(b"".join(parts), dtype=self.dtype).reshape(len(uniq), self.cols)
        return rows[inverse.reshape(-1)]

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in one ``pread`` (a fresh array). # -> [stop - start, cols]"""
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"{self.name}: rows {start}:{stop} outside [0, {self.rows})")
        size = self.cols * self.dtype.itemsize
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, (stop - start) * size, self.offset + start * size)
        if len(data) != (stop - start) * size:
            raise ValueError(f"{self.name}: {self.path} ended early")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, self.cols).copy()

    def ranges(self, rows: int) -> Iterator[np.ndarray]:
        """The rows in order, ``rows`` at a time, read into one reused buffer."""
        buf = np.empty((rows, self.cols), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset)
            for start in range(0, self.rows, rows):
                n = min(rows, self.rows - start)
                view = memoryview(buf[:n].reshape(-1).view(np.uint8))
                got = 0
                while got < len(view):
                    k = f.readinto(view[got:])
                    if not k:
                        raise ValueError(f"{self.name}: {self.path} ended early")
                    got += k
                yield buf[:n]

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


def _npy_file(path: PathLike, name: str) -> _RowFile:
    """A 2-D ``.npy`` array as a :class:`_RowFile` (header read with ``np.load(mmap_mode="r")``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name}: {p} does not exist")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{name}: {p} is not a readable .npy file ({exc})") from exc
    if not isinstance(arr, np.memmap) or arr.ndim != 2 or not arr.flags.c_contiguous:
        raise ValueError(
            f"{name}: {p} must hold a 2-D C-order array, got shape {list(np.shape(arr))}"
        )
    out = _RowFile(p, arr.offset, arr.dtype, arr.shape[0], arr.shape[1], name)
    del arr
    return out


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """``(data start, header)`` of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ValueError(f"{path} is not a safetensors file (header of {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise ValueError(f"{path} is not a safetensors file ({exc})") from exc
    return 8 + n, header


class LatentFiles(LatentSource):
    """Latents in files with attributes (see the module docstring).

    Build with :meth:`from_npy`, :meth:`from_safetensors` or :func:`open_latents`. Latents may
    be float32, float16 or float64 (read as float32); attributes bool, 8-, 32- or 64-bit
    integers or floats holding 0 and 1.
    """

    def __init__(
        self,
        mu: _RowFile,
        logvar: Optional[_RowFile],
        attributes: _RowFile,
        *,
        sigma_bar: Optional[Any] = None,
        owned_dir: Optional[Path] = None,
    ) -> None:
        self._mu, self._logvar, self._attributes = mu, logvar, attributes
        if logvar is not None and (logvar.rows, logvar.cols) != (mu.rows, mu.cols):
            raise ValueError(
                f"mu and logvar must have the same shape, got [{mu.rows}, {mu.cols}] and "
                f"[{logvar.rows}, {logvar.cols}]"
            )
        if attributes.rows != mu.rows:
            raise ValueError(f"attributes has {attributes.rows} rows but the latents {mu.rows}")
        if mu.rows < 2:
            raise ValueError("the critics need at least 2 training rows")
        self.num_rows, self.latent_dim = mu.rows, mu.cols
        self.num_attributes = attributes.cols
        self.has_logvar = logvar is not None
        if sigma_bar is not None:
            sb = torch.as_tensor(np.asarray(sigma_bar, dtype=np.float32)).reshape(-1)
            if sb.shape != (self.latent_dim,) or not bool((sb > 0).all()):
                raise ValueError(
                    f"sigma_bar must hold {self.latent_dim} positive values, got "
                    f"{list(np.shape(sigma_bar))}"
                )
            self.sigma_bar = check_finite_tensor("sigma_bar", sb)
        elif not self.has_logvar:
            raise ValueError(
                "sigma_bar is required with latent samples z (no logvar): the per-dimension "
                "average encoder scale of the distance penalty"
            )
        self._finalizer = (
            weakref.finalize(self, shutil.rmtree, str(owned_dir), True)
            if owned_dir is not None
            else None
        )

    @classmethod
    def from_npy(
        cls,
        *,
        attributes: PathLike,
        mu: Optional[PathLike] = None,
        logvar: Optional[PathLike] = None,
        z: Optional[PathLike] = None,
        sigma_bar: Optional[Any] = None,
    ) -> "LatentFiles":
        """``.npy`` files: ``mu`` and ``logvar`` (``[N, D]`` each), or ``z`` (``[N, D]``, then
        ``sigma_bar`` ``[D]`` is required), and ``attributes`` ``[N, A]``."""
        if z is not None and (mu is not None or logvar is not None):
            raise ValueError("pass either z or (mu, logvar), not both")
        if z is None and (mu is None or logvar is None):
            raise ValueError("latent files need both mu and logvar, or z")
        lat = _npy_file(z if z is not None else mu, "z" if z is not None else "mu")
        lv = _npy_file(logvar, "logvar") if z is None else None
        for f in (lat, lv):
            if f is not None and f.dtype.type not in _LATENT_DTYPES.values():
                raise ValueError(f"{f.name}: {f.path} must be float16/32/64, got {f.dtype}")
        att = _npy_file(attributes, "attributes")
        if att.dtype.type not in _ATTRIBUTE_DTYPES.values():
            raise ValueError(f"attributes: {att.path} must hold 0/1 numbers, got {att.dtype}")
        return cls(lat, lv, att, sigma_bar=sigma_bar)

    @classmethod
    def from_safetensors(cls, path: PathLike, *, sigma_bar: Optional[Any] = None) -> "LatentFiles":
        """One ``.safetensors`` file with ``mu`` + ``logvar`` or ``z``, ``attributes``, and
        optionally ``sigma_bar`` ``[D]``. Tensor names, dtypes and shapes are read with
        ``safe_open``; rows are read through a memory map at the tensors' offsets."""
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise ValueError(f"path: {p} does not exist")
        try:
            with safe_open(str(p), framework="pt") as f:
                keys = set(f.keys())
                shapes = {k: list(f.get_slice(k).get_shape()) for k in keys}
                file_sigma = f.get_tensor("sigma_bar") if "sigma_bar" in keys else None
        except Exception as exc:
            raise ValueError(f"path: {p} is not a readable safetensors file ({exc})") from exc
        start, header = _safetensors_header(p)
        names = ("z",) if "z" in keys else ("mu", "logvar")
        for k in names + ("attributes",):
            if k not in keys:
                raise ValueError(
                    f"path: {p} lacks tensor {k!r} (needs mu + logvar or z, and attributes; "
                    f"has {sorted(keys)})"
                )
            if len(shapes[k]) != 2:
                raise ValueError(f"path: {p} tensor {k!r} must be 2-D, got {shapes[k]}")

        def row_file(k: str, table: dict) -> _RowFile:
            info = header[k]
            if info["dtype"] not in table:
                raise ValueError(
                    f"path: {p} tensor {k!r} has dtype {info['dtype']}; accepted: {sorted(table)}"
                )
            rows, cols = shapes[k]
            return _RowFile(p, start + info["data_offsets"][0], table[info["dtype"]], rows, cols, k)

        lat = row_file(names[0], _LATENT_DTYPES)
        lv = row_file("logvar", _LATENT_DTYPES) if names[0] == "mu" else None
        att = row_file("attributes", _ATTRIBUTE_DTYPES)
        if sigma_bar is None and file_sigma is not None:
            sigma_bar = file_sigma.to(torch.float32).numpy()
        return cls(lat, lv, att, sigma_bar=sigma_bar)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def read(self, idx: torch.Tensor) -> Rows:
        i = np.asarray(idx, dtype=np.int64)
        mu = self._tensor(self._mu.take(i))  # [B, D]
        lv = self._tensor(self._logvar.take(i)) if self._logvar is not None else None  # [B, D]
        return mu, lv, self._tensor(self._attributes.take(i))

    def read_attributes(self, idx: torch.Tensor) -> torch.Tensor:
        return self._tensor(self._attributes.take(np.asarray(idx, dtype=np.int64)))

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Rows]:
        lv_it = self._logvar.ranges(rows) if self._logvar is not None else None
        for mu, att in zip(self._mu.ranges(rows), self._attributes.ranges(rows)):
            lv = self._tensor(next(lv_it)) if lv_it is not None else None
            yield self._tensor(mu), lv, self._tensor(att)

    def close(self) -> None:
        for f in (self._mu, self._logvar, self._attributes):
            if f is not None:
                f.release()
        if self._finalizer is not None:
            self._finalizer()


def open_latents(path: PathLike, *, sigma_bar: Optional[Any] = None) -> LatentFiles:
    """Latent files by path: a ``.safetensors`` file, or a folder with ``attributes.npy`` and
    ``mu.npy`` + ``logvar.npy`` or ``z.npy`` (and optionally ``sigma_bar.npy``)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        return LatentFiles.from_safetensors(p, sigma_bar=sigma_bar)
    if p.is_dir():
        if sigma_bar is None and (p / "sigma_bar.npy").is_file():
            sigma_bar = np.load(p / "sigma_bar.npy", allow_pickle=False)
        if (p / "z.npy").is_file():
            return LatentFiles.from_npy(
                z=p / "z.npy", attributes=p / "attributes.npy", sigma_bar=sigma_bar
            )
        return LatentFiles.from_npy(
            mu=p / "mu.npy",
            logvar=p / "logvar.npy",
            attributes=p / "attributes.npy",
            sigma_bar=sigma_bar,
        )
    raise ValueError(
        f"path: {p} is neither a .safetensors file nor a folder of mu.npy/logvar.npy (or z.npy) "
        "and attributes.npy"
    )


def encode_batches(
    model: Any,
    batches: Iterable[Any],
    *,
    num_attributes: int,
    directory: Optional[PathLike] = None,
    progress: bool = True,
) -> LatentFiles:
    """Encodes an iterable of ``(x, attributes)`` batches once into temporary latent files.

    Each batch goes through ``model.encode`` without gradients; ``mu`` and ``logvar`` are
    appended as float32 and the attributes as uint8 to raw files in a new folder under
    ``directory`` (default: the system's temporary folder), removed when the returned source is
    closed or garbage collected.

    Args:
        model: a :class:`~lcengine.method.latent_model.LatentModel`.
        batches: e.g. a ``torch.utils.data.DataLoader`` yielding ``(x [B, *data_shape],
            attributes [B, A])``.
        num_attributes: A.
        directory: where the temporary folder is made.
        progress: a tqdm bar over the batches.
    """
    from .requests import as_binary_array

    check_int("num_attributes", num_attributes, minimum=1)
    folder = Path(tempfile.mkdtemp(prefix="lcengine-latents-", dir=directory))
    try:
        n, d = 0, int(model.latent_dim)
        files = {k: open(folder / f"{k}.bin", "wb") for k in ("mu", "logvar", "attributes")}
        try:
            bar = tqdm(
                batches, desc="encode batches", unit="batch", disable=None if progress else True
            )
            for b, batch in enumerate(bar):
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ValueError(
                        f"batches must yield (x, attributes) pairs; batch {b} is "
                        f"{type(batch).__name__}"
                    )
                x, att = batch
                with torch.no_grad():
                    mu, lv = model.encode(x)  # [B, D] each
                att8 = as_binary_array(att, f"attributes of batch {b}")  # [B, A]
                if att8.shape != (mu.shape[0], num_attributes):
                    raise ValueError(
                        f"attributes of batch {b} must have shape [{mu.shape[0]}, "
                        f"{num_attributes}], got {list(att8.shape)}"
                    )
                files["mu"].write(mu.detach().cpu().to(torch.float32).numpy().tobytes())
                files["logvar"].write(lv.detach().cpu().to(torch.float32).numpy().tobytes())
                files["attributes"].write(att8.astype(np.uint8).tobytes())
                n += int(mu.shape[0])
        finally:
            for f in files.values():
                f.close()
        if n < 2:
            raise ValueError(f"batches held {n} rows; the critics need at least 2")
        return LatentFiles(
            _RowFile(folder / "mu.bin", 0, np.float32, n, d, "mu"),
            _RowFile(folder / "logvar.bin", 0, np.float32, n, d, "logvar"),
            _RowFile(folder / "attributes.bin", 0, np.uint8, n, num_attributes, "attributes"),
            owned_dir=folder,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@dataclass
class DataSummary:
    """What the method keeps of its training data (saved in checkpoints).

    Attributes:
        sigma_bar: per-dimension mean encoder scale ``mean_n exp(logvar_n / 2)``. # [D] float32
        num_rows: N.
        sum_all: sum of the latents (``mu``, or ``z``). # [D] float64
        sum_pos: per attribute, the sum of the latents of rows where it is 1. # [A, D] float64
        count_pos: per attribute, the rows where it is 1. # [A] float64
        attribute_rows: the distinct attribute combinations, sorted. # [K, A] int8
        attribute_counts: rows of each combination. # [K] int64
    """

    sigma_bar: torch.Tensor
    num_rows: int
    sum_all: np.ndarray
    sum_pos: np.ndarray
    count_pos: np.ndarray
    attribute_rows: np.ndarray
    attribute_counts: np.ndarray

    def attribute_table(self) -> np.ndarray:
        """Every row's attributes, grouped by combination (the completion table). # [N, A] int8"""
        return np.repeat(self.attribute_rows, self.attribute_counts, axis=0)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The checkpoint tensors ``data_summary.*`` (``sigma_bar`` is saved on its own)."""
        return {
            "data_summary.num_rows": torch.tensor([self.num_rows], dtype=torch.int64),
            "data_summary.sum_all": torch.from_numpy(np.ascontiguousarray(self.sum_all)),
            "data_summary.sum_pos": torch.from_numpy(np.ascontiguousarray(self.sum_pos)),
            "data_summary.count_pos": torch.from_numpy(np.ascontiguousarray(self.count_pos)),
            "data_summary.attribute_rows": torch.from_numpy(
                np.ascontiguousarray(self.attribute_rows)
            ),
            "data_summary.attribute_counts": torch.from_numpy(
                np.ascontiguousarray(self.attribute_counts)
            ),
        }

    @classmethod
    def from_tensors(
        cls, sigma_bar: torch.Tensor, tensors: dict[str, torch.Tensor], source: str
    ) -> "DataSummary":
        """The inverse of :meth:`tensors`; missing or inconsistent tensors raise ValueError."""
        keys = ("num_rows", "sum_all", "sum_pos", "count_pos", "attribute_rows", "attribute_counts")
        missing = [f"data_summary.{k}" for k in keys if f"data_summary.{k}" not in tensors]
        if missing:
            raise ValueError(f"{source} lacks tensors {missing}")
        t = {k: tensors[f"data_summary.{k}"].numpy() for k in keys}
        out = cls(
            sigma_bar.to(torch.float32),
            int(t["num_rows"].reshape(-1)[0]),
            t["sum_all"].astype(np.float64),
            t["sum_pos"].astype(np.float64),
            t["count_pos"].astype(np.float64),
            t["attribute_rows"].astype(np.int8),
            t["attribute_counts"].astype(np.int64),
        )
        d, a = out.sum_all.shape[0], out.attribute_rows.shape[1]
        if (
            out.sum_pos.shape != (a, d)
            or out.count_pos.shape != (a,)
            or out.attribute_counts.shape != (out.attribute_rows.shape[0],)
            or int(out.attribute_counts.sum()) != out.num_rows
            or (out.attribute_counts < 1).any()
            or not np.isin(out.attribute_rows, (0, 1)).all()
        ):
            raise ValueError(f"{source}: the data_summary tensors are inconsistent")
        return out


def summarize(
    source: LatentSource, *, chunk_rows: int = CHUNK_ROWS, progress: bool = True
) -> DataSummary:
    """One streaming pass over a source: checks rows, computes :class:`DataSummary`.

    Raises:
        ValueError: NaN or infinite latents, attributes other than 0 and 1.
    """
    d, a, n = source.latent_dim, source.num_attributes, source.num_rows
    sum_all = np.zeros(d)  # [D] float64
    sum_pos = np.zeros((a, d))  # [A, D]
    count_pos = np.zeros(a)  # [A]
    sigma_sum = np.zeros(d)  # [D]
    combos: dict[bytes, int] = {}
    bar = tqdm(
        total=n,
        desc="scan training data",
        unit="row",
        unit_scale=True,
        disable=None if progress else True,
    )
    start = 0
    for mu, lv, att in source.chunks(chunk_rows):
        where = f"rows {start}..{start + mu.shape[0] - 1}"
        check_finite_tensor(f"training latents ({where})", mu)
        m = mu.to(torch.float64)  # [C, D]
        if lv is not None:
            check_finite_tensor(f"training logvar ({where})", lv)
            sigma_sum += torch.exp(0.5 * lv).sum(0, dtype=torch.float64).numpy()
        att_np = att.numpy()  # [C, A]
        if not np.isin(att_np, (0, 1)).all():
            raise ValueError(f"training attributes ({where}) must hold only 0 and 1")
        sum_all += m.sum(0).numpy()
        sum_pos += (att.to(torch.float64).T @ m).numpy()  # [A, D]
        count_pos += att_np.sum(0)
        # distinct rows through their packed bits (sorted like the rows themselves)
        packed = np.ascontiguousarray(np.packbits(att_np.astype(bool), axis=1))  # [C, ceil(A/8)]
        keys, counts = np.unique(
            packed.view(np.dtype((np.void, packed.shape[1]))).ravel(), return_counts=True
        )
        for k, c in zip(keys, counts):
            combos[k.tobytes()] = combos.get(k.tobytes(), 0) + int(c)
        start += mu.shape[0]
        bar.update(mu.shape[0])
    bar.close()
    if start != n:
        raise ValueError(f"the source gave {start} rows, it announced {n}")
    keys = sorted(combos)
    packed_rows = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
    attribute_rows = np.unpackbits(packed_rows, axis=1)[:, :a].astype(np.int8)  # [K, A]
    attribute_counts = np.array([combos[k] for k in keys], dtype=np.int64)  # [K]
    if source.has_logvar:
        sigma_bar = torch.from_numpy((sigma_sum / n).astype(np.float32))  # [D]
    else:
        assert source.sigma_bar is not None
        sigma_bar = source.sigma_bar.to(torch.float32)
    return DataSummary(sigma_bar, n, sum_all, sum_pos, count_pos, attribute_rows, attribute_counts)


__all__ = [
    "CHUNK_ROWS",
    "DataSummary",
    "DeviceLike",
    "LabelFn",
    "LatentFiles",
    "LatentSamples",
    "LatentSource",
    "TrainingData",
    "encode_batches",
    "label_latents",
    "open_latents",
    "resolve_device",
    "summarize",
]
