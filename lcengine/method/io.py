# SPDX-License-Identifier: Apache-2.0
"""Files of the method: atomic writes, checked JSON and safetensors reads, ``.npz``.

Every file the method or an application writes goes through :func:`atomic_write_bytes`: a
temporary file ``.<name>.<random>.tmp`` in the same folder, ``fsync``, ``os.replace``, then an
``fsync`` of the folder, so a crash leaves either the previous file or the new one, never a
truncated file. Readers turn a missing or corrupted file into a ``ValueError`` that names the
file (and the JSON key where one is at fault). Checkpoints made of several files and the writer
lock of a folder are :mod:`lcengine.method.store`; figures are :mod:`lcengine.method.figures`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import numpy as np
import torch

from lcengine.validation import MAX_LAYERS, MAX_WIDTH, check_finite_tensor

PathLike = Union[str, os.PathLike]
T = TypeVar("T")


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
    """A layer width read from a record: an int (not bool) in ``[1, MAX_WIDTH]``.

    Raises:
        ValueError: naming the file and the key.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
        raise ValueError(
            f"{what}: {path} key {key!r} must be an integer in [1, {MAX_WIDTH}], got {value!r}"
        )
    return value


def record_widths(
    value: Any,
    key: str,
    path: PathLike,
    what: str,
    *,
    min_len: int = 1,
    max_len: int = MAX_LAYERS,
) -> tuple[int, ...]:
    """Layer widths read from a record: a list of ``min_len`` to ``max_len`` widths (each as
    :func:`record_width`, named ``key[i]``)."""
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        raise ValueError(
            f"{what}: {path} key {key!r} must be a list of {min_len} to {max_len} layer widths, "
            f"got {value!r}"
        )
    return tuple(record_width(v, f"{key}[{i}]", path, what) for i, v in enumerate(value))


def write_npz(path: PathLike, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` of ``arrays``, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
