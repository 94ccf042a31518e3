# SPDX-License-Identifier: Apache-2.0
"""Scaling of the batch job (``lcengine bench --ops optimize_job``): rows per second of
``lcengine optimize`` at 1 and more processes on one machine, and the parallel efficiency.

The workload is compute-bound by construction: a synthetic run folder
(:data:`BENCH_APPLICATION`: a latent model whose decoder is the identity, critics of two hidden
layers of 256 fitted for one step on Gaussian rows) whose optimizer runs a fixed number of steps
on every row (its thresholds are never met), so the time goes into the critics' GEMMs. Each
process count runs the same command (one torch thread per process; ``torchrun
--nproc-per-node K`` for K above 1) on the same targets file; the table reports

- ``rows/s``: rows over the processing window, from the first chunk's start to the last chunk's
  end over all ranks (the chunk records' timestamps; start-up excluded), and
- ``wall s``: the whole command, start-up (imports, rendezvous, loading the run) included,
- ``efficiency``: rows/s at K over K times rows/s at 1,
- ``same rows``: the outputs equal the one-process outputs bit for bit.

Per chunk nothing is communicated: each rank writes its rows into the shared output files, so
throughput adds up over processes, GPUs and nodes until the file system or the host's memory
bandwidth saturates.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

BENCH_APPLICATION_PATH = "lcengine.benchmarks.job:BENCH_APPLICATION"


class SyntheticApplication:
    """A run-folder application with no data set: Gaussian rows, the identity as decoder,
    attributes = signs of the first coordinates. Sized by its config (``latent_dim``,
    ``attributes``, ``hidden``, ``steps``)."""

    def default_config(
        self, *, fast: bool, seed: int, training_overrides: Mapping[str, Any]
    ) -> dict:
        return {
            "seed": seed,
            "latent_dim": 64,
            "attributes": 8,
            "hidden": [256, 256],
            "steps": 100 if fast else 200,
            "training_overrides": dict(training_overrides),
        }

    def _model(self, config: Mapping[str, Any]):
        from lcengine.method.latent_model import LatentModel

        d = int(config["latent_dim"])
        return LatentModel.from_callables(
            lambda x: (x, torch.full_like(x, -4.0)), lambda z: z, d, data_shape=(d,)
        )

    def _data(self, config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(config["seed"]))
        x = rng.standard_normal((512, int(config["latent_dim"]))).astype(np.float32)
        return x, (x[:, : int(config["attributes"])] > 0).astype(np.int8)

    def prepare_run(self, folder, config, *, cache_dir, use_cache, progress, log,
                    checkpoint_every=0, stop_requested=None, device="cpu"):  # fmt: skip
        from lcengine.method.config import SamplingConfig, TrainingConfig
        from lcengine.method.constraints import LatentConstraints
        from lcengine.method.run import CONSTRAINTS_DIR, Run, write_run_file

        hidden = tuple(int(h) for h in config["hidden"])
        training = TrainingConfig(
            hidden=hidden, attribute_hidden=hidden, attribute_steps=1, realism_steps=1,
            seed=int(config["seed"]), **config.get("training_overrides", {}),
        )  # fmt: skip
        names = [f"a{i}" for i in range(int(config["attributes"]))]
        never = 1.0 - 1e-9  # thresholds no row reaches: every row takes every step
        lc = LatentConstraints(
            self._model(config),
            names,
            training=training,
            sampling=SamplingConfig(
                steps=int(config["steps"]), lr=0.05, tau_r=never, tau_a=never
            ),  # fmt: skip
            device=device,
        )
        write_run_file(folder, BENCH_APPLICATION_PATH, dict(config))
        x, att = self._data(config)
        lc.fit(x, att, progress=False, checkpoint_dir=Path(folder) / CONSTRAINTS_DIR,
               checkpoint_every=checkpoint_every)  # fmt: skip
        return Run(Path(folder), self, BENCH_APPLICATION_PATH, dict(config), lc, None)

    def load_model(self, folder, config):
        return self._model(config), None

    def zero_shot_rules(self):
        return {}

    def training_data(self, run) -> dict:
        x, att = self._data(run.config)
        return {"x": x, "attributes": att}

    def measure(self, run, outputs, names):
        return (np.asarray(outputs)[:, : len(names)] > 0).astype(np.int8)

    def example_inputs(self, run, n):
        return self._data(run.config)[0][:n]

    def check_inputs(self, x):
        return x

    def updated_config(self, config, lc):
        return dict(config)


BENCH_APPLICATION = SyntheticApplication()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_command(processes: int, run: str, targets: str, out: str, device: str,
                chunk_rows: int, port: Optional[int] = None) -> list[str]:  # fmt: skip
    """The command line of one measurement (``torchrun`` for more than one process)."""
    job = ["optimize", "--run", run, "--targets", targets, "--out", out, "--device", device,
           "--chunk-rows", str(chunk_rows), "--threads", "1", "--no-progress"]  # fmt: skip
    if processes == 1:
        return [sys.executable, "-m", "lcengine", *job]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    if port is not None:
        launch += ["--master-port", str(port)]
    return launch + ["-m", "lcengine", "--", *job]


def run_job_bench(
    *,
    rows: int = 16384,
    processes: Sequence[int] = (1, 2),
    device: Optional[torch.device] = None,
    chunk_rows: int = 1024,
    steps: int = 200,
    log: Callable[[str], None] = print,
) -> dict:
    """Times ``lcengine optimize`` at each process count on one synthetic run and targets file.

    Returns:
        ``{"rows", "chunk_rows", "steps", "device", "cases": [{"processes", "rows_per_second",
        "wall_seconds", "efficiency", "same_rows", "command"}], "multi_gpu_command"}``.

    Raises:
        ValueError: a process count below 1, or more CUDA processes than GPUs.
        RuntimeError: a job failed (its stderr's tail in the message).
    """
    device = torch.device("cpu") if device is None else device
    procs = [int(p) for p in processes]
    if not procs or min(procs) < 1:
        raise ValueError(f"process counts must be >= 1, got {list(processes)}")
    if device.type == "cuda" and max(procs) > torch.cuda.device_count():
        raise ValueError(
            f"{max(procs)} processes need as many GPUs, {torch.cuda.device_count()} visible"
        )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    report: dict[str, Any] = {"rows": rows, "chunk_rows": chunk_rows, "steps": steps,
                              "device": str(device), "cases": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lcengine-job-bench-") as tmp:
        root = Path(tmp)
        run = root / "run"
        config = BENCH_APPLICATION.default_config(fast=False, seed=0, training_overrides={})
        config["steps"] = int(steps)
        BENCH_APPLICATION.prepare_run(run, config, cache_dir=None, use_cache=False,
                                      progress=False, log=log)  # fmt: skip
        a = int(config["attributes"])
        targets = root / "targets.npy"
        rng = np.random.default_rng(0)
        np.save(targets, rng.integers(-1, 2, size=(rows, a)).astype(np.int8))
        first = None
        for k in procs:
            out = root / f"out-{k}"
            cmd = job_command(k, str(run), str(targets), str(out), device.type, chunk_rows,
                              _free_port() if k > 1 else None)  # fmt: skip
            log(f"optimize_job: {rows} rows at {k} process(es)")
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-6000:]}")
            recs = [json.loads(p.read_text()) for p in (out / "chunks").glob("*.json")]
            window = max(x["finished"] for x in recs) - min(x["started"] for x in recs)
            rate = rows / window
            latents = np.load(out / "latents.npy")
            steps_taken = np.load(out / "steps.npy")
            if first is None:
                first = (rate, latents, steps_taken)
            case = {
                "processes": k,
                "rows_per_second": rate,
                "wall_seconds": wall,
                "efficiency": rate / (k * first[0]),
                "same_rows": bool(
                    np.array_equal(latents, first[1]) and np.array_equal(steps_taken, first[2])
                ),
                "mean_steps": float(steps_taken.mean()),
                "command": " ".join(cmd),
            }
            report["cases"].append(case)
    report["multi_gpu_command"] = (
        "torchrun --nproc-per-node <GPUs> -m lcengine -- optimize --run RUN --targets "
        "TARGETS.npy --out OUT --device cuda  (add --nnodes N --rdzv-backend c10d "
        "--rdzv-endpoint HOST:PORT --rdzv-id ID on each of N machines)"
    )
    return report


def format_job_table(report: Mapping[str, Any]) -> str:
    """The scaling table of :func:`run_job_bench`."""
    lines = [
        f"optimize_job: {report['rows']} rows, chunks of {report['chunk_rows']}, "
        f"{report['steps']} optimizer steps per row, {report['device']}, one thread per process",
        f"{'processes':>9} {'rows/s':>10} {'wall s':>8} {'efficiency':>10} {'same rows':>9}",
    ]
    for c in report["cases"]:
        eff = c["efficiency"]
        lines.append(
            f"{c['processes']:>9} {c['rows_per_second']:>10.1f} {c['wall_seconds']:>8.1f} "
            f"{'' if math.isnan(eff) else f'{100 * eff:.0f}%':>10} {str(c['same_rows']):>9}"
        )
    lines.append(f"multi-GPU / multi-node: {report['multi_gpu_command']}")
    return "\n".join(lines)


__all__ = [
    "BENCH_APPLICATION",
    "BENCH_APPLICATION_PATH",
    "format_job_table",
    "job_command",
    "run_job_bench",
]
