# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of several files committed as a whole, and the writer lock of a folder.

Each file is written by :func:`lcengine.method.io.atomic_write_bytes`; a checkpoint is several
files, so it needs more than that.

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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch

from .io import PathLike, atomic_write_bytes, json_bytes, parse_tensors, read_json_file

T = TypeVar("T")

WRITER_LOCK_FILE = ".lcengine.lock"


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


def commit_module(
    folder: PathLike,
    stem: str,
    module: "torch.nn.Module",
    record_format: str,
    *,
    config: Optional[dict] = None,
    history: Any = None,
    what: str,
) -> Path:
    """Commits a network (:func:`commit_checkpoint`): its ``state_dict`` as the weights, the
    record ``{"format", "config", "history"}``, and the format and the configuration (JSON) in
    the safetensors header. ``config`` defaults to ``module.config()``, ``history`` to
    ``module.history`` (or ``[]``).

    Raises:
        ValueError: ``folder`` exists and is not a folder.

    Returns:
        The folder.
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what}: {d} exists and is not a folder")
    config = module.config() if config is None else config
    history = getattr(module, "history", []) if history is None else history
    commit_checkpoint(
        d,
        stem,
        module.state_dict(),
        {"format": record_format, "config": config, "history": history},
        metadata={"format": record_format, "config": json.dumps(config, sort_keys=True)},
        what=what,
    )
    return d


def build_module(
    ck: "LoadedCheckpoint",
    *,
    record_format: str,
    kind: str,
    what: str,
    parse: Callable[[dict, Path, str], dict],
    make: Callable[..., "torch.nn.Module"],
) -> "torch.nn.Module":
    """A network from a record written by :func:`commit_module`, everything checked before it
    is allocated: the format, ``config`` an object, the keyword arguments ``parse(record, path,
    what)`` reads from it, ``history`` a list, and the parameter count of ``make(**kwargs)``
    (built on the meta device) against the weights; then the tensor names and shapes. The
    record's ``history`` is attached as ``module.history``. For :func:`load_checkpoint`'s
    ``build``.

    Raises:
        ValueError: naming the file and the key that is wrong.
    """
    from .io import check_tensors_match, record_value

    path, w_path = ck.record_path, ck.weights_path
    if ck.record.get("format") != record_format:
        raise ValueError(
            f"{what}: {path} is not an lcengine {kind} record (key 'format' is "
            f"{ck.record.get('format')!r}, expected {record_format!r})"
        )
    if not isinstance(record_value(ck.record, "config", path, what), dict):
        raise ValueError(f"{what}: {path} key 'config' must be an object")
    kwargs = parse(ck.record, path, what)
    history = ck.record.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"{what}: {path} key 'history' must be a list")
    with torch.device("meta"):  # the parameter count, before anything is allocated
        shapes = make(**kwargs).state_dict()
    held = sum(t.numel() for t in ck.tensors.values())
    needed = sum(t.numel() for t in shapes.values())
    if held != needed:
        raise ValueError(
            f"{what}: {w_path} does not match the configuration: it holds {held} values, "
            f"the architecture in {path} has {needed}"
        )
    module = make(**kwargs)
    check_tensors_match(ck.tensors, module.state_dict(), w_path, what)
    module.load_state_dict(ck.tensors)
    module.history = history
    return module


def load_module(
    folder: PathLike,
    stem: str,
    what: str,
    build: Callable[["LoadedCheckpoint"], "torch.nn.Module"],
    device: Any = "cpu",
) -> "torch.nn.Module":
    """:func:`load_checkpoint` of a network (``build``, e.g. through :func:`build_module`),
    moved to ``device``, in eval mode.

    Raises:
        ValueError: ``folder`` is a file, or nothing loadable (the message names the file).
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what}: {d} is not a folder")
    return load_checkpoint(d, stem, what, build).to(device).eval()


def has_checkpoint(folder: PathLike, stem: str) -> bool:
    """The folder holds a record of ``stem`` (``<stem>.json`` or ``<stem>.previous.json``)."""
    return CheckpointFiles(Path(folder), stem).exists()


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
