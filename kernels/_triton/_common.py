# SPDX-License-Identifier: Apache-2.0
"""Launch helpers shared by the Triton launchers: block-size heuristics, traceable launches on
the tensors' device, and the supported Triton releases.

Nothing here imports lcengine: this folder ships as the subpackage ``lcengine._triton``.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Optional

import torch
import triton

try:
    from torch.library import wrap_triton as _wrap_triton  # torch >= 2.6
except ImportError:  # pragma: no cover - older torch launches the kernel directly
    _wrap_triton = None

_U64_MASK = (1 << 64) - 1

# The oldest Triton release these kernels are written for (pyproject.toml's extras say the same).
# The RNG is Philox written out (_math.philox_first_two), so no kernel depends on the stream of
# tl.randn, which changed in 3.4 for int64 offsets.
MIN_TRITON = (3, 2)


def _release(version: str) -> Optional[tuple[int, int]]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problem(version: Optional[str] = None) -> Optional[str]:
    """Why the installed Triton (or ``version``) cannot run these kernels, or None.

    lcengine.backend.unavailable_reason reports it as the Triton backend's reason.
    """
    version = triton.__version__ if version is None else version
    release = _release(version)
    need = ".".join(map(str, MIN_TRITON))
    if release is None:
        return f"cannot read the Triton version {version!r}; lcengine needs Triton >= {need}"
    if release < MIN_TRITON:
        return f"Triton {version} is installed; lcengine's Triton kernels need Triton >= {need}"
    return None


# Elements per program for flat elementwise kernels (RNG-bound: ~40 IMADs of Philox per element).
FLAT_BLOCK = 2048
FLAT_NUM_WARPS = 8

# Row kernels: a [BLOCK_R, BLOCK_D] tile per loop step, looping over D in BLOCK_D chunks.
MAX_BLOCK_D = 1024  # a 1024-wide row fits one step; D = 8192 takes 8 steps
# Elements per step at 8 warps. When D % 16 == 0 (Triton's divisibility specialization), rows are
# 16-element aligned and loads vectorize to 128 bits: 16 elements per thread (4 fp32 x v4 loads)
# at 60-130 registers. Otherwise every element is a scalar load with its own 64-bit address, and
# 16 per thread costs up to 255 registers (one CTA per SM), so such shapes get 8 per thread.
TILE_ELEMS_ALIGNED = 4096
TILE_ELEMS_UNALIGNED = 2048
MIN_PROGRAMS = 256  # about two programs per SM on H100/H200 (132 SMs) before shrinking BLOCK_R


def is_interpreted(kernel: Any) -> bool:
    """Whether ``kernel`` runs under the Triton interpreter (TRITON_INTERPRET=1 at import)."""
    return type(kernel).__name__ == "InterpretedFunction"


def _is_fake(arg: Any) -> bool:
    if not isinstance(arg, torch.Tensor):
        return False
    if arg.device.type == "meta":
        return True
    try:
        from torch._subclasses.fake_tensor import is_fake
    except ImportError:  # pragma: no cover - very old torch
        return False
    return is_fake(arg)


class _InterpretedLaunch:
    """``kernel[grid](...)`` for an interpreted kernel, refusing fake and meta tensors loudly.

    ``wrap_triton`` cannot trace an interpreted kernel: tracing a ``triton_op`` under
    TRITON_INTERPRET=1 (opcheck's fake/AOT passes, torch.compile) would hand data-less tensors to
    the interpreter, and skipping the launch would trace a graph that silently drops the kernel.
    Under the interpreter, register the op as an opaque ``custom_op`` with ``register_fake``.
    """

    def __init__(self, kernel: Any):
        self.kernel = kernel

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, **kwargs: Any) -> None:
            if any(_is_fake(a) for a in (*args, *kwargs.values())):
                raise RuntimeError(
                    f"{self.kernel.fn.__name__}: the Triton interpreter (TRITON_INTERPRET=1) "
                    "cannot run or trace fake/meta tensors; wrap the launcher in an opaque "
                    "torch.library.custom_op with register_fake instead of triton_op"
                )
            self.kernel[grid](*args, **kwargs)

        return launch


def _launcher(kernel: Callable) -> Any:
    """``torch.library.wrap_triton(kernel)`` where available, else the kernel itself.

    The wrapped form lets ``torch.compile``/``torch.export`` trace the launch inside a
    ``torch.library.triton_op``; in eager mode it just launches. Interpreted kernels
    (TRITON_INTERPRET=1) launch through :class:`_InterpretedLaunch` instead.
    """
    if is_interpreted(kernel):
        return _InterpretedLaunch(kernel)
    if _wrap_triton is None:
        return kernel
    return _wrap_triton(kernel)


def launch_device(args: tuple) -> Optional[torch.device]:
    """The CUDA device of the first tensor among ``args`` when it is not the current device
    (the launch must switch to it), else None: CPU tensors, fake/meta tensors and tensors on
    the current device need no switch."""
    for arg in args:
        if isinstance(arg, torch.Tensor):
            device = arg.device
            if device.type != "cuda" or device.index is None or _is_fake(arg):
                return None
            return None if device.index == torch.cuda.current_device() else device
    return None


def device_guard(args: tuple) -> contextlib.AbstractContextManager:
    """The context every launch runs in: ``torch.cuda.device`` of the tensors' device.

    Triton launches on the current CUDA device and its current stream; tensors on ``cuda:1``
    launched while ``cuda:0`` is current would run on the wrong device. A no-op (a shared
    ``nullcontext``) for CPU tensors, under the interpreter and on the current device.
    """
    device = launch_device(args)
    return _NO_GUARD if device is None else torch.cuda.device(device)


_NO_GUARD = contextlib.nullcontext()


def launch(kernel: Callable, grid: Any, args: tuple, kwargs: dict) -> None:
    """``kernel[grid](*args, **kwargs)`` inside :func:`device_guard`: the one place every
    launcher's launch goes through (tests replace it to record launches)."""
    with device_guard(args):
        _launcher(kernel)[grid](*args, **kwargs)


class _Launch:
    """``wrap(kernel)[grid](...)``: calls :func:`launch` (looked up at call time)."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: Callable):
        self.kernel = kernel

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        kernel = self.kernel

        def run(*args: Any, **kwargs: Any) -> None:
            launch(kernel, grid, args, kwargs)

        return run


def wrap(kernel: Callable) -> Any:
    """The launch form every launcher uses: ``wrap(kernel)[grid](*args, **kwargs)`` launches
    ``kernel`` through ``torch.library.wrap_triton`` (or the interpreter's
    :class:`_InterpretedLaunch`) on the device of the first tensor argument
    (:func:`device_guard`)."""
    return _Launch(kernel)


def seed_arg(seed: int) -> int:
    """The 64-bit Philox key, reduced modulo 2^64 (Triton passes it as int32/int64/uint64)."""
    return int(seed) & _U64_MASK


def offset_arg(offset: int) -> int:
    """A 64-bit stream offset as a signed int64 with the same bits.

    ``offset + index`` then wraps modulo 2^64 exactly like the uint64 arithmetic of the native
    backends, and tl.randn reads its low/high words from the same bits.
    """
    offset = int(offset) & _U64_MASK
    return offset - (1 << 64) if offset >= (1 << 63) else offset


def flat_grid(numel: int) -> tuple[int]:
    return (triton.cdiv(numel, FLAT_BLOCK),)


def row_config(rows: int, dim: int, min_programs: int = MIN_PROGRAMS) -> dict[str, int]:
    """Block sizes and warps for a row kernel over a [rows, dim] tensor.

    BLOCK_D is the next power of two of ``dim`` capped at MAX_BLOCK_D (so one step covers a row up
    to 1024 wide); BLOCK_R packs enough rows into a step to fill the tile (TILE_ELEMS_*), but no
    more rows than exist, and halves while that would leave fewer than MIN_PROGRAMS programs. Warps
    scale with the tile (8 warps from 2048 elements). EVEN_D drops the column mask when BLOCK_D
    divides dim.
    """
    block_d = min(triton.next_power_of_2(max(dim, 1)), MAX_BLOCK_D)
    tile_elems = TILE_ELEMS_ALIGNED if dim % 16 == 0 else TILE_ELEMS_UNALIGNED
    block_r = max(1, min(tile_elems // block_d, triton.next_power_of_2(max(rows, 1))))
    # Few rows: trade rows per program for programs, so that a small batch of wide rows still
    # spreads over the GPU (a large batch keeps the full tile).
    while block_r > 1 and triton.cdiv(rows, block_r) < min_programs:
        block_r //= 2
    tile = block_r * block_d
    num_warps = 8 if tile >= 2048 else (4 if tile >= 1024 else (2 if tile >= 256 else 1))
    return {
        "BLOCK_R": block_r,
        "BLOCK_D": block_d,
        "EVEN_D": dim % block_d == 0,
        "num_warps": num_warps,
    }


def row_grid(rows: int, block_r: int) -> tuple[int]:
    return (triton.cdiv(rows, block_r),)


def row_launch_config(kernel: Any, rows: int, dim: int) -> dict[str, int]:
    """Meta-parameters of a row kernel launch: :func:`row_config` plus ``D_STATIC``.

    ``D_STATIC`` is ``dim`` under the interpreter and -1 when compiled. Triton 3.6's interpreter
    cannot use a runtime loop bound under numpy >= 2.4 (it calls ``int()`` on a 1-element array;
    triton-lang/triton#9171), so there the D loop runs to this constexpr copy of ``dim``; compiled
    kernels always get -1 and loop to the runtime ``dim``, so a new D never recompiles on the GPU.

    Under the interpreter, programs also run one after another in Python, so BLOCK_R is not
    shrunk for parallelism: fewer programs, faster tests, and small test shapes still exercise
    several rows per program with a masked row tail.
    """
    interpreted = is_interpreted(kernel)
    cfg = row_config(rows, dim, min_programs=1 if interpreted else MIN_PROGRAMS)
    cfg["D_STATIC"] = int(dim) if interpreted else -1
    return cfg
