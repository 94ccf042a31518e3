# SPDX-License-Identifier: Apache-2.0
"""``lcengine export``: a run's actor-mode sampler as an artifact to embed.

Two formats of one graph, ``(targets [B, A] float32, latents [B, D] float32) -> images
[B, *data_shape] float32`` (:class:`~lcengine.method.sampler.SamplerModule`: the actor, then
the decoder), with a dynamic batch dimension:

* ``aoti``: ``torch.export`` of the module, compiled and packaged by AOTInductor into one
  ``.pt2``. It loads with ``torch._inductor.aoti_load_package`` in a Python process that never
  imports lcengine, and from C++ with ``torch::inductor::AOTIModelPackageLoader``
  (``examples/cpp``). The package's metadata (``loader.get_metadata()``) carries
  :meth:`ConditionalSampler.metadata <lcengine.method.sampler.ConditionalSampler.metadata>`
  under ``lcengine.*`` keys (JSON values): the attribute columns, latent dimension, data shape.
* ``onnx``: the same graph through ``torch.onnx.export(..., dynamo=True)`` (opset 18), for
  ONNX Runtime and TensorRT; the metadata goes into the model's ``metadata_props``. Needs the
  ``onnx`` extra (``pip install "lcengine[onnx]"``).

Every export is checked before it is kept: the artifact is loaded back (AOTInductor's loader,
or an ONNX Runtime session) and run on example inputs; the largest difference from the
sampler's images must be at most ``tolerance`` (1e-4). Those inputs and the sampler's images are
written beside the artifact as ``<out>.example.pt`` (a ``torch.save`` dict of ``targets``,
``latents``, ``images``; it loads with ``torch.load`` and, from C++, ``torch::pickle_load``).
Both files are written to temporary names and renamed into place: an interrupted export leaves
no partial artifact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch

import lcengine
from lcengine.validation import check_int

from .requests import complete_requests
from .sampler import ConditionalSampler
from .streams import derive_seed

FORMATS = ("aoti", "onnx")
SUFFIXES = {"aoti": ".pt2", "onnx": ".onnx"}
TOLERANCE = 1e-4
MAX_BATCH = 1 << 16  # the dynamic batch dimension's upper bound
METADATA_PREFIX = "lcengine."


@dataclass
class ExportResult:
    """What :func:`export_sampler` wrote and measured.

    Attributes:
        path: the artifact.
        example_path: ``<path>.example.pt``: example inputs with the sampler's images.
        format: "aoti" or "onnx".
        max_abs_diff: largest difference between the artifact's and the sampler's images on
            the example inputs.
        seconds: wall time of the export (tracing, compiling, checking).
        metadata: the ``lcengine.*`` metadata stored in the artifact.
    """

    path: Path
    example_path: Path
    format: str
    max_abs_diff: float
    seconds: float
    metadata: dict[str, str]


def example_path_for(path: Union[str, Path]) -> Path:
    """``model.pt2`` -> ``model.example.pt`` (beside the artifact)."""
    p = Path(path)
    return p.with_name(p.stem + ".example.pt")


def example_inputs(sampler: ConditionalSampler, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``n`` rows of example inputs: target vectors drawn from the training set's attribute
    combinations, prior latents; float32 on the sampler's device. # -> [n, A], [n, D]"""
    check_int("n", n, minimum=1)
    a = sampler.num_data_attributes
    targets = complete_requests(
        np.zeros(a, dtype=np.int8),
        np.zeros(a, dtype=bool),
        sampler.attribute_table,
        n,
        seed=derive_seed(seed, "export/targets"),
    )  # [n, A] int8
    latents = lcengine.standard_normal(
        (n, sampler.latent_dim), seed=derive_seed(seed, "export/latents"), device=sampler.device
    )  # [n, D]
    return torch.from_numpy(targets.astype(np.float32)).to(sampler.device), latents


def artifact_metadata(sampler: ConditionalSampler) -> dict[str, str]:
    """The sampler's metadata as ``lcengine.<key>`` -> JSON text."""
    return {METADATA_PREFIX + k: json.dumps(v) for k, v in sampler.metadata().items()}


def _new_temp(folder: Path, name: str, suffix: str) -> Path:
    """An empty file of a fresh hidden name in ``folder``, created as ``open()`` would create it
    (mode 0666 less the umask; ``tempfile.mkstemp`` would make it 0600)."""
    while True:
        path = folder / f".{name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue


@contextlib.contextmanager
def _quiet_pytree_warning() -> Iterator[None]:
    """torch's own pytree deprecation (``LeafSpec``), raised while exporting and packaging."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*", category=FutureWarning)
        yield


def _exported_program(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], max_batch: int):
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return torch.export.export(
        module, inputs, dynamic_shapes=({0: batch}, {0: batch}), strict=False
    )


def _write_aoti(module, inputs, tmp: Path, metadata: dict[str, str], max_batch: int):
    from torch._inductor import aoti_compile_and_package, aoti_load_package

    ep = _exported_program(module, inputs, max_batch)
    with _quiet_pytree_warning():
        aoti_compile_and_package(
            ep, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": metadata}
        )
    compiled = aoti_load_package(str(tmp))
    return lambda t, z: compiled(t, z)


def _write_onnx(module, inputs, tmp: Path, metadata: dict[str, str], max_batch: int):
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise RuntimeError(
            f"--format onnx needs onnx, onnxscript and onnxruntime ({exc}); install them with "
            'pip install "lcengine[onnx]"'
        ) from exc
    # the exporter logs one line per torchvision op it cannot register; none is used here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with _quiet_pytree_warning(), warnings.catch_warnings():
        # both inputs share the batch axis: the exporter drops one of its names and says so
        warnings.filterwarnings("ignore", message="# The axis name")
        program = torch.onnx.export(
            module,
            inputs,
            dynamo=True,
            dynamic_shapes=({0: batch}, {0: batch}),
            input_names=["targets", "latents"],
            output_names=["images"],
            opset_version=18,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save_model(model, str(tmp))
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

    def run(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        feeds = {"targets": t.cpu().numpy(), "latents": z.cpu().numpy()}
        return torch.from_numpy(session.run(["images"], feeds)[0])

    return run


def export_sampler(
    sampler: ConditionalSampler,
    out: Union[str, Path],
    *,
    format: str = "aoti",
    example_rows: int = 8,
    seed: int = 0,
    max_batch: int = MAX_BATCH,
    tolerance: float = TOLERANCE,
    log: Optional[Any] = None,
) -> ExportResult:
    """Exports ``sampler``'s actor-mode graph to ``out`` and checks it (module docstring).

    Args:
        sampler: the run's sampler (its device is the artifact's: AOTInductor compiles for
            it; ONNX exports from the CPU).
        out: the artifact's path (``.pt2`` for aoti, ``.onnx`` for onnx); its folder must
            exist.
        format: "aoti" or "onnx".
        example_rows: rows of the example inputs (at least 2: a batch of one would be
            specialized by the tracer).
        seed: seed of the example inputs.
        max_batch: the largest batch the artifact accepts.
        tolerance: the largest difference from the sampler's images accepted.
        log: a callable for progress lines (None: silent).

    Raises:
        ValueError: bad arguments (naming them), or an artifact that differs from the sampler
            by more than ``tolerance`` (nothing is then written).
        RuntimeError: the onnx extra is not installed.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    check_int("example_rows", example_rows, minimum=2)
    check_int("max_batch", max_batch, minimum=example_rows)
    out = Path(out)
    if out.suffix != SUFFIXES[format]:
        raise ValueError(f"out must end in {SUFFIXES[format]} for format {format!r}, got {out}")
    if not out.parent.is_dir():
        raise ValueError(f"out's folder {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"out {out} is a folder")
    say = log if log is not None else (lambda _msg: None)
    t0 = time.perf_counter()
    module = sampler.module()
    if format == "onnx" and sampler.device.type != "cpu":
        raise ValueError("format 'onnx' exports from the CPU: make the sampler with device='cpu'")
    inputs = example_inputs(sampler, example_rows, seed)
    extra = len(sampler.attribute_names) - sampler.num_data_attributes  # zero-shot columns
    full = torch.cat([inputs[0], inputs[0].new_zeros(example_rows, extra)], dim=1)  # [n, A_all]
    expected = sampler(full, inputs[1])  # [n, *data_shape]
    metadata = artifact_metadata(sampler)
    example = example_path_for(out)
    tmp = _new_temp(out.parent, out.name, out.suffix)
    tmp_example = _new_temp(out.parent, example.name, ".pt")
    try:
        say(f"tracing and compiling ({format}) ...")
        writer = _write_aoti if format == "aoti" else _write_onnx
        with torch.no_grad():
            run = writer(module, inputs, tmp, metadata, max_batch)
            got = run(*inputs).to(expected.device, torch.float32)
        if got.shape != expected.shape:
            raise ValueError(
                f"the exported {format} graph returned shape {list(got.shape)}, the sampler "
                f"{list(expected.shape)}"
            )
        diff = float((got - expected).abs().max())
        if not diff <= tolerance:
            raise ValueError(
                f"the exported {format} graph differs from the sampler by {diff:.3g} on the "
                f"example inputs (tolerance {tolerance:g}); nothing was written"
            )
        torch.save(
            {
                "targets": inputs[0].cpu(),
                "latents": inputs[1].cpu(),
                "images": expected.cpu(),
            },
            tmp_example,
        )
        os.replace(tmp_example, example)
        os.replace(tmp, out)
    finally:
        for p in (tmp, tmp_example):
            if p.exists():
                p.unlink()
    return ExportResult(out, example, format, diff, time.perf_counter() - t0, metadata)


__all__ = [
    "ExportResult",
    "FORMATS",
    "TOLERANCE",
    "artifact_metadata",
    "example_inputs",
    "example_path_for",
    "export_sampler",
]
