# SPDX-License-Identifier: Apache-2.0
"""Batch latent optimization over a file of requests: out of core, resumable, distributed.

``lcengine optimize --run RUN --targets TARGETS.npy --out OUT`` (and :func:`optimize_job`, the
same as a function) runs the run's optimizer (its sampling config: ``method="optimize"``) on
every row of ``TARGETS``, an int8 ``[N, A]`` array in the run's attribute order (1 on, 0 off,
-1 not requested), and writes into ``OUT/``:

- ``latents.npy`` float32 ``[N, D]``, ``accepted.npy`` bool ``[N]`` (the stopping rule was met),
  ``steps.npy`` int32 ``[N]``; with ``decode``, ``images.npy`` float32 ``[N, *data_shape]``;
- ``manifest.json``: the run, the inputs with their sha256, the settings, the world size, the
  status of every chunk and the timings;
- ``chunks/chunk-<i>.json``: one record per finished chunk.

Rows go in chunks of ``chunk_rows``: inputs read with ``pread`` and outputs written with
``pwrite`` at their ``.npy`` offsets, nothing memory-mapped, so memory stays bounded by a chunk
whatever N. A chunk counts as done only once its rows are ``fsync``ed and its record is written
atomically after them; a rerun of the same
command skips the chunks with records and computes the others again, so a killed job resumes
and nothing half-written is ever read back as done. A rerun with a different input, setting or
run state is refused with an error naming what changed.

A row of -1 only requests nothing: it is optimized against the realism critic alone (its
completed attributes as the condition). Row ``r``'s start is ``start[r]``, or the prior sample
at position ``r`` of the Philox stream keyed by ``seed`` (the same latents as
``LatentConstraints.prior_latents(N, seed)``); its unrequested attributes are completed from the
run's training attributes by a draw keyed by ``(seed, r)``. Every row's result is therefore a
function of its own inputs and the settings, whatever the chunking of the work among processes
(chunks of other sizes give the same rows up to float rounding of the batched products; the
same chunks, as under any number of processes, give them bit for bit).

Under ``torchrun`` (:mod:`lcengine.method.distributed`) rank 0 creates or checks the outputs, the
ranks take disjoint chunks (round robin over the chunks not yet done) and write their rows into
the shared files, and rank 0 writes the manifest at the end. Nothing but these checks and the
final list of finished chunks is communicated; the rows go straight to the files, which every
rank must see (one machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

import lcengine

from .data import DeviceLike, _npy_file, resolve_device
from .distributed import Group, process_group
from .generation import optimize_from
from .io import atomic_write_json, fsync_folder
from .requests import complete_requests
from .run import CONSTRAINTS_DIR, RUN_FILE, Run, load_run
from .signals import StopOnSignals
from .store import writer_lock
from .streams import derive_seed

JOB_FORMAT = "lcengine.optimize-job/1"
MANIFEST_FILE = "manifest.json"
CHUNKS_DIR = "chunks"
OUTPUT_FILES = ("latents.npy", "accepted.npy", "steps.npy")
IMAGES_FILE = "images.npy"
DEFAULT_CHUNK_ROWS = 4096
_HASH_BLOCK = 1 << 24  # bytes per read while hashing an input

PathLike = Union[str, os.PathLike]
ArrayOrPath = Union[np.ndarray, PathLike]


class JobStopped(Exception):
    """A signal stopped the job between chunks; the finished chunks are on disk."""

    def __init__(self, signum: int, done: int, total: int):
        super().__init__(f"stopped by signal {signum} with {done} of {total} chunks done")
        self.signum, self.done, self.total = signum, done, total


class _Rows:
    """Rows of an input, read a block at a time: a ``.npy`` file through ``pread`` (never
    mapped, so the resident set stays bounded whatever its size), or an array in memory."""

    def __init__(self, value: ArrayOrPath, name: str):
        self.name = name
        self.file = None
        if isinstance(value, (str, os.PathLike)):
            path = Path(value)
            if not path.is_file():
                raise FileNotFoundError(f"{name} {path} does not exist")
            self.file = _npy_file(path, name)  # its errors name the input
            self.path: Optional[str] = str(path.resolve())
            self.shape = (self.file.rows, self.file.cols)
            self.dtype = self.file.dtype
            return
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name} must be a .npy path or an array, got {type(value).__name__}")
        self.array, self.path = value, None
        self.shape, self.dtype = tuple(value.shape), value.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.file is not None:
            return self.file.read_range(start, stop)
        return np.ascontiguousarray(self.array[start:stop])

    def sha256(self, check: Callable[[np.ndarray, int], None]) -> str:
        """sha256 of the rows' bytes (C order), ``check(block, first_row)`` on every block,
        one bounded block at a time."""
        h = hashlib.sha256()
        h.update(f"{np.dtype(self.dtype).str}{list(self.shape)}".encode())
        row_bytes = max(1, int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize)
        step = max(1, _HASH_BLOCK // row_bytes)
        for r0 in range(0, self.shape[0], step):
            block = self.read(r0, min(self.shape[0], r0 + step))
            check(block, r0)
            h.update(block.tobytes())
        return h.hexdigest()

    def close(self) -> None:
        if self.file is not None:
            self.file.release()


class _Output:
    """An output ``.npy`` written by rows with ``pwrite`` at the header's offset and made
    durable with ``fsync`` (never mapped: writing N rows keeps the resident set bounded)."""

    def __init__(self, path: Path):
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        self.offset, self.dtype, self.shape = int(arr.offset), arr.dtype, arr.shape
        del arr
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        at, done = self.offset + start * self.row_bytes, 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], at + done)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _check_targets(arr: "_Rows", num_attributes: int) -> None:
    if arr.dtype != np.int8:
        raise TypeError(f"targets must be int8 (1 on, 0 off, -1 not requested), got {arr.dtype}")
    if len(arr.shape) != 2 or arr.shape[1] != num_attributes or arr.shape[0] < 1:
        raise ValueError(
            f"targets must have shape [N, {num_attributes}] (N >= 1, one column per attribute "
            f"of the run, in its order), got {list(arr.shape)}"
        )


def _target_values(block: np.ndarray, first_row: int) -> None:
    bad = (block < -1) | (block > 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"targets[{first_row + r}, {c}] is {int(block[r, c])}: values must be 1 (on), "
            "0 (off) or -1 (not requested)"
        )


def _check_start(arr: "_Rows", rows: int, latent_dim: int) -> None:
    if arr.dtype != np.float32:
        raise TypeError(f"start must be float32, got {arr.dtype}")
    if arr.shape != (rows, latent_dim):
        raise ValueError(
            f"start must have shape [{rows}, {latent_dim}] (one latent per target row), got "
            f"{list(arr.shape)}"
        )


def _finite_rows(block: np.ndarray, first_row: int) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise ValueError(f"start[{first_row + r}] is not finite (NaN or inf)")


def _run_identity(folder: Path) -> str:
    """sha256 of the run's record and of its constraints' record (which names the weights by
    their content hash): continuing the training of the run changes it."""
    h = hashlib.sha256()
    for rel in (RUN_FILE, f"{CONSTRAINTS_DIR}/constraints.json"):
        p = folder / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def _chunk_file(out: Path, index: int) -> Path:
    return out / CHUNKS_DIR / f"chunk-{index:08d}.json"


def _chunk_bounds(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(r0, min(n, r0 + chunk_rows)) for r0 in range(0, n, chunk_rows)]


def _done_chunks(out: Path, job_id: str, bounds: list[tuple[int, int]]) -> dict[int, dict]:
    """The chunks whose records exist, name this job and cover the chunk's rows."""
    done = {}
    for i, (r0, r1) in enumerate(bounds):
        p = _chunk_file(out, i)
        if not p.is_file():
            continue
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record counts as not done: the chunk runs again
        if rec.get("job") == job_id and rec.get("rows") == [r0, r1]:
            done[i] = rec
    return done


def _create_outputs(out: Path, n: int, d: int, data_shape: tuple, decode: bool) -> None:
    specs = [
        ("latents.npy", np.float32, (n, d)),
        ("accepted.npy", np.bool_, (n,)),
        ("steps.npy", np.int32, (n,)),
    ]
    if decode:
        specs.append((IMAGES_FILE, np.float32, (n, *data_shape)))
    for name, dtype, shape in specs:
        mm = np.lib.format.open_memmap(out / name, mode="w+", dtype=dtype, shape=shape)
        mm.flush()
        del mm
    fsync_folder(out)


def _prepare(
    out: Path, identity: dict, job_id: str, sources: dict, n: int, d: int, data_shape: tuple
) -> bool:
    """Creates the outputs of a new job, or checks that ``out`` holds this very job.
    -> True when the outputs were (re)created."""
    manifest = out / MANIFEST_FILE
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except ValueError as exc:
            raise ValueError(f"{manifest} is not valid JSON ({exc}); use a new --out") from None
        if old.get("format") != JOB_FORMAT:
            raise ValueError(f"{out} holds no lcengine optimize job ({manifest}); use a new --out")
        if old.get("job") != job_id:
            changed = [
                k for k in identity if json.dumps(old.get(k), sort_keys=True) != json.dumps(
                    identity[k], sort_keys=True)
            ]  # fmt: skip
            raise ValueError(
                f"{out} holds a job with different {', '.join(changed) or 'inputs'} "
                f"(recorded in {manifest}); rerun with the same inputs and settings to resume "
                "it, or use a new --out"
            )
        missing = [
            f for f in OUTPUT_FILES + ((IMAGES_FILE,) if identity["settings"]["decode"] else ())
            if not (out / f).is_file()
        ]  # fmt: skip
        if missing:
            raise ValueError(f"{out} is missing {missing} of its job; use a new --out")
        return False
    if (out / CHUNKS_DIR).is_dir():
        for p in (out / CHUNKS_DIR).glob("chunk-*.json"):
            p.unlink()  # records of a job whose creation did not finish
    _create_outputs(out, n, d, data_shape, identity["settings"]["decode"])
    (out / CHUNKS_DIR).mkdir(exist_ok=True)
    atomic_write_json(
        manifest,
        {"format": JOB_FORMAT, "job": job_id, **identity, "sources": sources, "complete": False},
    )
    return True


def optimize_job(
    run: Union[Run, PathLike],
    targets: ArrayOrPath,
    out: PathLike,
    *,
    start: Optional[ArrayOrPath] = None,
    seed: int = 0,
    decode: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    device: DeviceLike = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    handle_signals: bool = False,
) -> dict:
    """Runs (or resumes) a batch optimization job; see the module docstring.

    Under ``torchrun`` every rank calls it with the same arguments.

    Args:
        run: a run folder (or a loaded :class:`~lcengine.method.run.Run`).
        targets: int8 ``[N, A]`` in the run's attribute order, or a ``.npy`` path.
        out: the output folder.
        start: float32 ``[N, D]`` starting latents or a ``.npy`` path; None: prior samples
            keyed by ``(seed, row)``.
        seed: seed of the prior samples and of the completion of unrequested attributes.
        decode: also write the decoded ``images.npy``.
        chunk_rows: rows per chunk (the unit of memory, of work per rank and of resumption).
        device: where the optimization runs; under torchrun each CUDA rank takes
            ``cuda:LOCAL_RANK``.
        progress: a tqdm bar (rows/s, ETA) on rank 0.
        log: messages (rank 0).
        handle_signals: stop cleanly after the chunk in flight on SIGINT/SIGTERM (a second
            SIGINT aborts at once) and raise :class:`JobStopped` (the command sets it; the main
            thread only).

    Returns:
        The manifest (on every rank).

    Raises:
        TypeError, ValueError: a bad input or setting, or ``out`` holding another job, named.
        RuntimeError: another process is writing ``out``.
        JobStopped: a signal stopped it (``handle_signals``).
    """
    from lcengine.validation import check_int

    check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    check_int("chunk_rows", chunk_rows, minimum=1, maximum=2**24)
    if not isinstance(decode, bool):
        raise TypeError(f"decode must be a bool, got {decode!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    with process_group(resolve_device(device)) as group:
        try:
            return _job(group, run, targets, out, start, seed, decode, chunk_rows, progress,
                        log, handle_signals)  # fmt: skip
        except BaseException as exc:
            if group.world > 1 and not isinstance(exc, (JobStopped, KeyboardInterrupt)):
                log(f"rank {group.rank} of {group.world} failed: {exc}")
            raise


def _job(
    group: Group,
    run: Union[Run, PathLike],
    targets: ArrayOrPath,
    out: Path,
    start: Optional[ArrayOrPath],
    seed: int,
    decode: bool,
    chunk_rows: int,
    progress: bool,
    log: Callable[[str], None],
    handle_signals: bool,
) -> dict:
    t_start = time.perf_counter()
    main = group.is_main
    say = log if main else (lambda msg: None)
    if not isinstance(run, Run):
        run = load_run(run, device=group.device)
    lc = run.constraints
    lc.require_trainer("optimize")
    n_attr, d = lc.num_attributes, lc.latent_dim
    tgt = _Rows(targets, "targets")
    _check_targets(tgt, n_attr)
    n = int(tgt.shape[0])
    st = None
    if start is not None:
        st = _Rows(start, "start")
        _check_start(st, n, d)
    # rank 0 reads and hashes the inputs; the others take its verdict
    verdict: dict[str, Any] = {}
    if main:
        try:
            tgt_info = {"sha256": tgt.sha256(_target_values), "shape": list(tgt.shape)}
            st_info = None
            if st is not None:
                st_info = {"sha256": st.sha256(_finite_rows), "shape": list(st.shape)}
            sources = {
                "run": str(run.folder.resolve()),
                "targets": tgt.path,
                "start": st.path if st is not None else None,
            }
            identity = {
                "run": {"state": _run_identity(run.folder)},
                "inputs": {"targets": tgt_info, "start": st_info},
                "settings": {
                    "seed": seed,
                    "decode": decode,
                    "chunk_rows": chunk_rows,
                    "sampling": lc.sampling.to_dict(),
                    "attribute_names": list(lc.attribute_names),
                },
            }
            job_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
            verdict = {"identity": identity, "job": job_id, "sources": sources}
        except (TypeError, ValueError, OSError) as exc:
            verdict = {"error": f"{type(exc).__name__}: {exc}"}
    verdict = group.broadcast(verdict)
    if "error" in verdict:
        raise ValueError(verdict["error"])
    identity, job_id, sources = verdict["identity"], verdict["job"], verdict["sources"]
    bounds = _chunk_bounds(n, chunk_rows)

    with writer_lock(out, "--out") if main else contextlib.nullcontext():
        setup: dict[str, Any] = {}
        if main:
            try:
                created = _prepare(out, identity, job_id, sources, n, d, tuple(lc.model.data_shape))
                done = _done_chunks(out, job_id, bounds)
                setup = {"pending": [i for i in range(len(bounds)) if i not in done]}
                say(
                    f"{'new job' if created else 'resuming'}: {n} rows in {len(bounds)} chunks "
                    f"of {chunk_rows}, {len(done)} done, {group.world} process(es)"
                )
            except (TypeError, ValueError, OSError, RuntimeError) as exc:
                setup = {"error": f"{type(exc).__name__}: {exc}"}
        setup = group.broadcast(setup)
        if "error" in setup:
            raise ValueError(setup["error"])
        mine = setup["pending"][group.rank :: group.world]
        stop, received = threading.Event(), []
        with StopOnSignals(stop, received, handle_signals, command="lcengine optimize",
                           boundary="stopping after the chunks in flight"):  # fmt: skip
            _run_chunks(
                group, run, tgt, st, out, job_id, bounds, mine, seed, decode, progress, stop
            )
        stopped = group.gather(received[0] if received else None)
        group.barrier()
        manifest = None
        if main:
            done = _done_chunks(out, job_id, bounds)
            manifest = _write_manifest(
                out, identity, job_id, sources, bounds, done, group.world,
                time.perf_counter() - t_start,
            )  # fmt: skip
            if manifest["complete"]:
                say(
                    f"done: {n} rows, {manifest['accepted_rows']} accepted "
                    f"({100 * manifest['accepted_rows'] / n:.1f}%) in {out}"
                )
        manifest = group.broadcast(manifest)
    signum = next((s for s in stopped if s is not None), None)
    if signum is not None:
        raise JobStopped(signum, len(manifest["chunks_done"]), len(bounds))
    return manifest


def _run_chunks(
    group: Group,
    run: Run,
    tgt: _Rows,
    st: Optional[_Rows],
    out: Path,
    job_id: str,
    bounds: list[tuple[int, int]],
    mine: list[int],
    seed: int,
    decode: bool,
    progress: bool,
    stop: threading.Event,
) -> None:
    from tqdm.auto import tqdm

    lc = run.constraints
    dev = lc.device
    d = lc.latent_dim
    table = lc.summary.attribute_table() if lc.summary is not None else None
    prior_seed = derive_seed(seed, "sample/prior")
    complete_seed = derive_seed(seed, "optimize/complete")
    files = {
        name: _Output(out / name) for name in OUTPUT_FILES + ((IMAGES_FILE,) if decode else ())
    }
    rows_mine = sum(bounds[i][1] - bounds[i][0] for i in mine)
    bar = tqdm(
        total=rows_mine,
        unit="row",
        unit_scale=True,
        desc=f"optimize (rank {group.rank}/{group.world})" if group.world > 1 else "optimize",
        disable=None if (progress and group.is_main) else True,
    )
    try:
        for i in mine:
            if stop.is_set():
                break
            r0, r1 = bounds[i]
            t0, started = time.perf_counter(), time.time()
            y = tgt.read(r0, r1)  # [C, A] int8
            mask = y >= 0
            values = np.where(mask, y, 0).astype(np.int8)
            if table is not None:
                values = complete_requests(
                    values, mask, table, r1 - r0, seed=complete_seed,
                    row_index=np.arange(r0, r1, dtype=np.int64),
                )  # fmt: skip
            if st is not None:
                z0 = torch.from_numpy(st.read(r0, r1)).to(dev)  # [C, D]
            else:
                z0 = lcengine.standard_normal(
                    (r1 - r0, d), seed=prior_seed, offset=r0 * d, device=dev
                )  # [C, D]: rows r0..r1 of the stream, whatever the chunk
            y_t = torch.from_numpy(values.astype(np.float32)).to(dev)
            m_t = torch.from_numpy(mask).to(dev)
            res = optimize_from(lc, z0, y_t, m_t, lc.sampling)
            z = res.latents
            if not torch.isfinite(z).all():
                raise FloatingPointError(f"chunk {i} (rows {r0}-{r1}) gave non-finite latents")
            files["latents.npy"].write(r0, z.detach().cpu().numpy())
            acc = res.converged.cpu().numpy().astype(bool)
            files["accepted.npy"].write(r0, acc)
            files["steps.npy"].write(r0, res.steps.cpu().numpy().astype(np.int32))
            if decode:
                files[IMAGES_FILE].write(r0, lc.decode(z))
            for f in files.values():
                f.sync()  # the rows are on disk before the record says so
            rec = {
                "job": job_id,
                "index": i,
                "rows": [r0, r1],
                "rank": group.rank,
                "accepted": int(acc.sum()),
                "seconds": time.perf_counter() - t0,
                "started": started,
                "finished": time.time(),
            }
            atomic_write_json(_chunk_file(out, i), rec)
            bar.update(r1 - r0)
    finally:
        bar.close()
        for f in files.values():
            f.close()


def _write_manifest(
    out: Path,
    identity: dict,
    job_id: str,
    sources: dict,
    bounds: list[tuple[int, int]],
    done: dict[int, dict],
    world: int,
    seconds: float,
) -> dict:
    n = bounds[-1][1]
    chunks = [
        {
            "index": i,
            "rows": [r0, r1],
            "status": "done" if i in done else "pending",
            **({k: done[i][k] for k in ("rank", "seconds", "accepted")} if i in done else {}),
        }
        for i, (r0, r1) in enumerate(bounds)
    ]
    busy = sum(c.get("seconds", 0.0) for c in chunks)
    rows_done = sum(r1 - r0 for i, (r0, r1) in enumerate(bounds) if i in done)
    manifest = {
        "format": JOB_FORMAT,
        "job": job_id,
        **identity,
        "sources": sources,
        "rows": n,
        "world_size": world,
        "complete": len(done) == len(bounds),
        "chunks_done": sorted(done),
        "chunks": chunks,
        "accepted_rows": sum(c.get("accepted", 0) for c in chunks),
        "timings": {
            "last_call_seconds": seconds,
            "chunk_seconds_total": busy,
            "rows_per_second_per_process": rows_done / busy if busy > 0 else None,
        },
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    return manifest


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "JOB_FORMAT",
    "JobStopped",
    "MANIFEST_FILE",
    "optimize_job",
]
