# SPDX-License-Identifier: Apache-2.0
"""Files of the method: atomic writes, checkpoints, the writer lock, checked reads, figures.

Every file the method or an application writes goes through :func:`atomic_write_bytes`: a
temporary file ``.<name>.<random>.tmp`` in the same folder, ``fsync``, ``os.replace``, then an
``fsync`` of the folder, so a crash leaves either the previous file or the new one, never a
truncated file.

A checkpoint with stem ``S`` (:func:`commit_checkpoint`, :func:`load_checkpoint`) is, in its
folder::

    S.json               the current record: JSON naming its weights file and their SHA-256
                         ("weights_file": "S.<sha256[:16]>.safetensors", "weights_sha256")
    S.previous.json      the last record committed before it that names other weights
    S.<hex16>.safetensors  the weights of those two records; no other weights file survives a
                         commit
    .S.lock              held (flock) while a commit runs

A commit writes the weights under their content name (never replacing a file a record names),
copies the current record to ``S.previous.json``, and switches ``S.json`` with one
``os.replace``; only then are weights files that no record names and stale ``.S.*.tmp`` files
deleted. The loader verifies the checksum and falls back to ``S.previous.json`` (with a
warning) when the current record or its weights are missing, corrupted or mismatched. A
record without ``weights_file`` names ``S.safetensors``.

:func:`writer_lock` is an exclusive, non-blocking ``flock`` on ``.lcengine.lock`` in a folder,
held by a command for as long as it writes the folder. Readers take no lock.

Readers turn a missing or corrupted file into a ``ValueError`` that names the file (and the
JSON key where one is at fault).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar, Union

import numpy as np
import torch

from lcengine.validation import check_finite_tensor

PathLike = Union[str, os.PathLike]
T = TypeVar("T")

WRITER_LOCK_FILE = ".lcengine.lock"
MAX_WIDTH = 65536  # the largest layer width a record may name


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (briefly process-wide)
    os.umask(mask)
    return mask


def check_output_path(option: str, path: PathLike) -> Path:
    """Checks, before any work, that a file can be written at ``path``.

    Raises ``ValueError`` naming ``option`` when ``path`` is a folder, lies under a file, or its
    nearest existing folder is not writable; missing folders are created when writing.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {p} is a folder; give a file path")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{option} {p}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {p}: the folder {folder} is not writable")
    return p


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A crash or an exception mid-write leaves either the old file or none, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; a new file follows the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: PathLike) -> None:
    """``fsync`` of a folder, so that the names created or replaced in it are durable (a no-op
    where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_bytes(obj: Any) -> bytes:
    """The bytes the method writes for a JSON object (sorted keys, strict JSON: no NaN)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """JSON counterpart of :func:`atomic_write_bytes` (sorted keys, strict JSON: no NaN)."""
    atomic_write_bytes(path, json_bytes(obj))


def read_json_file(path: PathLike, what: str) -> dict:
    """Reads a JSON object, turning a missing or corrupted file into a ValueError naming it.

    Args:
        path: the file.
        what: the caller, as the prefix of error messages (e.g. ``"load_vae"``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: missing file {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what}: corrupted JSON in {path}: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: {path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def save_tensors_atomic(
    path: PathLike, tensors: dict[str, torch.Tensor], metadata: Optional[dict[str, str]] = None
) -> bytes:
    """safetensors serialization of contiguous CPU copies, written atomically.

    Returns:
        The bytes written (callers record their checksum).
    """
    from safetensors.torch import save as st_save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = st_save(flat, metadata=metadata)
    atomic_write_bytes(path, blob)
    return blob


def parse_tensors(blob: bytes, path: PathLike, what: str) -> dict[str, torch.Tensor]:
    """Deserializes safetensors bytes read from ``path``; garbage raises a ValueError naming it."""
    from safetensors.torch import load as st_load

    try:
        return st_load(blob)
    except Exception as e:  # safetensors raises its own error types for corrupted headers/data
        raise ValueError(f"{what}: corrupted safetensors file {path}: {e}") from e


def check_tensors_finite(tensors: dict[str, torch.Tensor], path: PathLike, what: str) -> None:
    """Raises ValueError naming the file and tensor if a floating tensor holds NaN or inf."""
    for k, t in tensors.items():
        check_finite_tensor(f"{what}: {path} tensor {k!r}", t)


def load_tensors_checked(
    path: PathLike, expected: dict[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Loads a safetensors file and checks names, shapes and finiteness against ``expected``.

    Raises:
        ValueError: the file is missing, unreadable (corrupted), lacks or adds tensors, has a
            shape mismatch, or holds NaN/inf. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: missing file {path}")
    tensors = parse_tensors(path.read_bytes(), path, what)
    check_tensors_match(tensors, expected, path, what)
    return tensors


def check_tensors_match(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: PathLike, what: str
) -> None:
    """Checks names, shapes and finiteness of tensors read from ``path`` against ``expected``.

    Raises:
        ValueError: missing or extra tensors, a shape mismatch, or NaN/inf (naming the file).
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what}: {path} does not match the configuration "
            f"(missing tensors {missing}, unexpected tensors {unexpected})"
        )
    for k, ref in expected.items():
        if tuple(tensors[k].shape) != tuple(ref.shape):
            raise ValueError(
                f"{what}: {path} tensor {k!r} has shape {list(tensors[k].shape)}, "
                f"the configuration expects {list(ref.shape)}"
            )
    check_tensors_finite(tensors, path, what)


# --------------------------------------------------------------------------------------------
# Checked values of JSON records
# --------------------------------------------------------------------------------------------


def record_value(record: dict, key: str, path: PathLike, what: str) -> Any:
    """``record[k1][k2]...`` for a dotted ``key``; a missing key raises ValueError naming the file
    and the key."""
    obj: Any = record
    for part in key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise ValueError(f"{what}: {path} lacks the key {key!r}")
        obj = obj[part]
    return obj


def record_width(value: Any, key: str, path: PathLike, what: str) -> int:
    """A layer width read from a record: an int in ``[1, MAX_WIDTH]`` (bool is refused).

    Raises:
        ValueError: naming the file and the key.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
        raise ValueError(
            f"{what}: {path} key {key!r} must be an integer in [1, {MAX_WIDTH}], got {value!r}"
        )
    return value


def record_widths(
    value: Any, key: str, path: PathLike, what: str, *, min_len: int = 1, max_len: int = 64
) -> tuple[int, ...]:
    """A list of layer widths read from a record (each as :func:`record_width`), of
    ``min_len..max_len`` entries."""
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        raise ValueError(
            f"{what}: {path} key {key!r} must be a list of {min_len} to {max_len} layer widths, "
            f"got {value!r}"
        )
    return tuple(record_width(v, f"{key}[{i}]", path, what) for i, v in enumerate(value))


# --------------------------------------------------------------------------------------------
# Checkpoints: weights under their content name, one JSON record switched atomically
# --------------------------------------------------------------------------------------------

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckpointFiles:
    """The file names of the checkpoint with stem ``stem`` in ``folder`` (see the module
    docstring)."""

    folder: Path
    stem: str

    @property
    def record(self) -> Path:
        """The current record, ``<stem>.json``."""
        return self.folder / f"{self.stem}.json"

    @property
    def previous(self) -> Path:
        """The record committed before the current one, ``<stem>.previous.json``."""
        return self.folder / f"{self.stem}.previous.json"

    @property
    def default_weights(self) -> Path:
        """``<stem>.safetensors``: the weights of a record that names no weights file."""
        return self.folder / f"{self.stem}.safetensors"

    @property
    def lock(self) -> Path:
        """``.<stem>.lock``, held while a commit runs."""
        return self.folder / f".{self.stem}.lock"

    def weights_name(self, sha256: str) -> str:
        """``<stem>.<sha256[:16]>.safetensors``: the name of weights with this checksum."""
        return f"{self.stem}.{sha256[:16]}.safetensors"

    def is_weights_name(self, name: str) -> bool:
        """``name`` is a weights file name of this checkpoint (content-named or default)."""
        return name == self.default_weights.name or bool(
            re.fullmatch(re.escape(self.stem) + r"\.[0-9a-f]{16}\.safetensors", name)
        )

    def is_temporary_name(self, name: str) -> bool:
        """``name`` is a temporary file of :func:`atomic_write_bytes` for one of these files."""
        return name.startswith(f".{self.stem}.") and name.endswith(".tmp")

    def exists(self) -> bool:
        """A current or previous record is there (loadable or not)."""
        return self.record.is_file() or self.previous.is_file()


@dataclass
class LoadedCheckpoint:
    """A committed record and its verified weights.

    Attributes:
        record: the JSON record (with ``weights_file`` and ``weights_sha256`` where written).
        record_path: the record's file (``<stem>.json`` or ``<stem>.previous.json``).
        weights_path: the weights file it names.
        tensors: the weights.
        metadata: the safetensors header's ``__metadata__``.
    """

    record: dict
    record_path: Path
    weights_path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


@contextmanager
def _flock_blocking(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if needed), waiting for it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sha256_file(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (already parsed once: well formed)."""
    try:
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + n])
        meta = header.get("__metadata__") or {}
    except (ValueError, AttributeError):
        return {}
    return dict(meta) if isinstance(meta, dict) else {}


def _read_committed(
    files: CheckpointFiles, path: Path, what: str
) -> tuple[dict, Path, bytes, Optional[str]]:
    """``(record, weights path, weights bytes, recorded sha256 or None)`` of one record, its
    checksum verified.

    Raises:
        ValueError: the record is missing, corrupted or names a bad weights file; the weights
            are missing or do not match the recorded checksum (naming the file and the key).
    """
    record = read_json_file(path, what)
    name = record.get("weights_file")
    sha = record.get("weights_sha256")
    if name is None:
        w_path = files.default_weights
    elif not isinstance(name, str) or not files.is_weights_name(name):
        raise ValueError(
            f"{what}: {path} key 'weights_file' must name a file "
            f"'{files.stem}.<16 hex characters>.safetensors' in the same folder, got {name!r}"
        )
    else:
        w_path = files.folder / name
        if sha is None:
            raise ValueError(f"{what}: {path} lacks the key 'weights_sha256'")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise ValueError(
                f"{what}: {path} key 'weights_sha256' must be 64 lowercase hex characters, "
                f"got {sha!r}"
            )
        if name is not None and name != files.weights_name(sha):
            raise ValueError(
                f"{what}: {path} keys 'weights_file' ({name}) and 'weights_sha256' ({sha[:16]}...) "
                "disagree"
            )
    if not w_path.is_file():
        raise ValueError(f"{what}: missing file {w_path} (named by {path})")
    blob = w_path.read_bytes()
    if sha is not None and hashlib.sha256(blob).hexdigest() != sha:
        raise ValueError(
            f"{what}: {w_path} does not match {path} (checksum mismatch: corrupted, or from "
            "another save)"
        )
    return record, w_path, blob, sha


def _named_weights(files: CheckpointFiles) -> set[str]:
    """Names of the weights files the current and previous records name (unreadable records
    name none)."""
    names = set()
    for path in (files.record, files.previous):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(obj, dict):
            name = obj.get("weights_file", files.default_weights.name)
            if isinstance(name, str):
                names.add(name)
    return names


def _remove_unnamed(files: CheckpointFiles) -> None:
    """Deletes weights files no record names and temporary files left by interrupted writes."""
    keep = _named_weights(files)
    for entry in os.scandir(files.folder):
        name = entry.name
        if (files.is_weights_name(name) and name not in keep) or files.is_temporary_name(name):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def commit_checkpoint(
    folder: PathLike,
    stem: str,
    tensors: dict[str, torch.Tensor],
    record: dict,
    *,
    metadata: Optional[dict[str, str]] = None,
    what: str = "commit_checkpoint",
) -> Path:
    """Commits a checkpoint: weights, then one atomic switch of the record that names them.

    1. the weights go to ``<stem>.<sha256[:16]>.safetensors`` (atomic write, fsync); a file of
       that name with the same content is kept as it is;
    2. the current record, if complete (its weights present and matching) and naming other
       weights than these, is copied to ``<stem>.previous.json``;
    3. ``<stem>.json`` is replaced (``os.replace``) by ``record`` plus ``weights_file`` and
       ``weights_sha256``: the commit;
    4. weights files no record names and stale ``.<stem>.*.tmp`` files are deleted.

    An interruption at any point leaves a complete current record, or the previous one. Commits
    to the same folder and stem are serialized by a ``flock`` on ``.<stem>.lock``.

    Args:
        folder: the checkpoint folder (created if needed).
        stem: the files' stem, e.g. ``"constraints"``.
        tensors: the weights (copied to contiguous CPU tensors).
        record: JSON-able description; the keys ``weights_file`` and ``weights_sha256`` are
            added here.
        metadata: the safetensors header's ``__metadata__``.
        what: the caller, as the prefix of error messages.

    Returns:
        The record's path.
    """
    from safetensors.torch import save as st_save

    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what}: {d} exists and is not a folder")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", stem):
        raise ValueError(f"{what}: stem must be ASCII letters, numbers, '_' or '-', got {stem!r}")
    for key in ("weights_file", "weights_sha256"):
        if key in record:
            raise ValueError(f"{what}: the record key {key!r} is written by commit_checkpoint")
    files = CheckpointFiles(d, stem)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = st_save(flat, metadata=metadata)
    sha = hashlib.sha256(blob).hexdigest()
    data = json_bytes(
        {**record, "weights_file": files.weights_name(sha), "weights_sha256": sha}
    )  # serialized before any write: a record that is not JSON changes nothing
    d.mkdir(parents=True, exist_ok=True)
    with _flock_blocking(files.lock):
        w_path = d / files.weights_name(sha)
        if _sha256_file(w_path) != sha:
            atomic_write_bytes(w_path, blob)
        try:
            _, current_weights, _, _ = _read_committed(files, files.record, what)
            current: Optional[bytes] = files.record.read_bytes()
        except (ValueError, OSError):
            current = None  # no complete current record: the previous one stays
        if current is not None and current_weights != w_path:
            # the previous record always names other weights than the current one, so one
            # damaged weights file never takes both records with it
            atomic_write_bytes(files.previous, current)
        atomic_write_bytes(files.record, data)  # the switch
        _remove_unnamed(files)
    return files.record


def load_checkpoint(
    folder: PathLike, stem: str, what: str, build: Callable[[LoadedCheckpoint], T]
) -> T:
    """Loads the current checkpoint, or the previous one when the current cannot be loaded.

    ``build`` turns a verified record and its weights into the caller's object; a
    ``ValueError`` (or ``KeyError``/``TypeError``/``AttributeError``, reported as a malformed
    record) from it counts as a failure of that record. When ``<stem>.json`` fails and
    ``<stem>.previous.json`` loads, a ``warnings.warn`` names the file that failed and why.

    Raises:
        ValueError: no record can be loaded: the current record's error when there is no
            previous record, else one naming both files and both reasons.
    """
    files = CheckpointFiles(Path(folder), stem)
    failures: list[ValueError] = []
    candidates = [files.record] + ([files.previous] if files.previous.is_file() else [])
    for path in candidates:
        try:
            record, w_path, blob, _ = _read_committed(files, path, what)
            tensors = parse_tensors(blob, w_path, what)
            loaded = LoadedCheckpoint(record, path, w_path, tensors, _safetensors_metadata(blob))
            try:
                result = build(loaded)
            except (KeyError, TypeError, AttributeError) as exc:  # a record of the wrong shape
                raise ValueError(f"{what}: malformed record {path}: {exc!r}") from exc
        except ValueError as exc:
            failures.append(exc)
            continue
        if failures:
            warnings.warn(
                f"{what}: {files.record} cannot be loaded ({failures[0]}); loaded the previous "
                f"checkpoint {path} instead",
                RuntimeWarning,
                stacklevel=2,
            )
        return result
    if len(failures) == 1:
        raise failures[0]
    raise ValueError(
        f"{what}: no loadable checkpoint in {files.folder}: {files.record.name}: "
        f"({failures[0]}); {files.previous.name}: ({failures[1]})"
    )


# --------------------------------------------------------------------------------------------
# The writer lock of a folder
# --------------------------------------------------------------------------------------------

_held_lock = threading.Lock()
_held: dict[str, tuple[int, int]] = {}  # lock file -> (owning thread id, depth)


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdecimal() else "pid unknown"


@contextmanager
def writer_lock(folder: PathLike, what: str = "folder") -> Iterator[Path]:
    """Holds an exclusive, non-blocking ``flock`` on ``<folder>/.lcengine.lock`` (the folder is
    created if needed) for the duration of the block; the holder's pid is written into it.

    The same thread may nest it (the inner block is a no-op). The file stays in the folder
    (deleting a lock file races with a process that has just opened it).

    Args:
        folder: the folder about to be written.
        what: how errors name the folder (e.g. ``"--run"``).

    Yields:
        The lock file.

    Raises:
        RuntimeError: another process (or another thread of this one) holds the lock.
        ValueError: ``folder`` is a file.
    """
    import fcntl

    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what} {d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    path = d / WRITER_LOCK_FILE
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _held_lock:
        owner = _held.get(key)
        if owner is not None:
            if owner[0] != me:
                raise RuntimeError(
                    f"{what} {d}: another thread of this process (pid {os.getpid()}) is "
                    "writing this folder"
                )
            _held[key] = (me, owner[1] + 1)
    if owner is not None:
        try:
            yield path
        finally:
            with _held_lock:
                depth = _held[key][1]
                _held[key] = (me, depth - 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"{what} {d}: another process ({_lock_holder(path)}) is writing this folder "
            f"(it holds {path}); wait for it to finish or stop it"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        with _held_lock:
            _held[key] = (me, 1)
        try:
            yield path
        finally:
            with _held_lock:
                del _held[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def write_npz(path: PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` of ``arrays``, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg backend: no display needed)
# --------------------------------------------------------------------------------------------


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: PathLike) -> None:
    """Writes a figure as PNG (110 dpi, tight box) atomically and closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def draw_image_row(axes: Sequence, images: np.ndarray) -> None:
    """Shows grayscale images in [0, 1] on a row of axes, one each; spare axes stay blank.

    Args:
        axes: matplotlib axes, one per column.
        images: at most ``len(axes)`` images. # [K, H, W]
    """
    for i, ax in enumerate(axes):
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


def write_image_grid(path: PathLike, rows: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """A PNG grid: one labelled row per ``(label, images)``, images ``[K, H, W]`` in [0, 1].

    Raises:
        ValueError: the items are not 2-D images.
    """
    for label, images in rows:
        if np.ndim(images) != 3:
            raise ValueError(
                f"a PNG grid needs 2-D images [K, H, W]; row {label!r} has shape "
                f"{list(np.shape(images))}"
            )
    plt = pyplot()
    cols = max(1, max(len(images) for _, images in rows))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(cols * 0.9, len(rows) * 1.0 + 0.5), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        draw_image_row(axes[r], images)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
