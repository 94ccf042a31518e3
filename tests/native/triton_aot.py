# SPDX-License-Identifier: Apache-2.0
"""Compiles the Triton kernel variants the launchers choose ahead of time, for sm_90 (``--archs
80,90`` adds sm_80), with no GPU.

Run as a script (``python tests/native/triton_aot.py``), as ``test_triton_aot.py`` does in a
subprocess without TRITON_INTERPRET (the interpreter replaces the kernels with Python, and the
launchers pick other tiles for it).

The variants are not listed here: the launchers pick them. Every launch of ``lcengine._triton``
goes through ``_common.launch``; :func:`collect` replaces it with a recorder and drives the
launchers on meta tensors (no memory, any size) for

- the optimizer: one step and the final check of ``lcengine.ops.optimize_latents.triton``'s loop
  for every GPU case of the optimizer benchmark (``lcengine.benchmarks.optimizer``) and every
  Triton case of ``tests/ops/test_optimize_latents.py``, with float32 and bfloat16 weights;
- the row ops and the RNG: each launcher as the public op's forward and backward call it, for
  the row-op benchmark's GPU shapes (``lcengine.benchmarks.row_ops``) in every storage dtype.

Each distinct variant (kernel, argument types, pointer and integer divisibility as the JIT
specializes them, constexprs, num_warps/num_stages) goes through Triton's full pipeline down to
a cubin with Triton's bundled ptxas. One line per variant and architecture: registers, spill
bytes (read from the cubin with the bundled cuobjdump) and shared memory, then a summary line.
Exits non-zero on any compile failure, on a kernel of the package that no driver launched (a new
kernel must be driven here), and on any approximate float32 division in the PTX
(``div.full.f32``/``div.approx.f32``: every division in these kernels is ``tl.div_rn``, to match
the other backends). Register spills are reported, not judged (they depend on the Triton
release's register allocation), unless ``--strict-spills``. Importing this module compiles
nothing.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import tempfile

import torch

ARCHS = (90,)  # the default; --archs 80,90 adds Ampere
WEIGHT_DTYPES = (torch.float32, torch.bfloat16)
META = torch.device("meta")
APPROX_DIV = re.compile(r"\bdiv\.(?:full|approx)(?:\.ftz)?\.f32\b")

_TYPES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int32: "i32",
    torch.int64: "i64",
    torch.bool: "i1",
}


@contextlib.contextmanager
def _recording(launches: list):
    """``lcengine._triton._common.launch`` records ``(kernel, args, kwargs)`` instead of
    launching."""
    from lcengine._triton import _common

    def record(kernel, grid, args, kwargs):
        del grid
        launches.append((kernel, tuple(args), dict(kwargs)))

    saved = _common.launch
    _common.launch = record
    try:
        yield
    finally:
        _common.launch = saved


def _int_type(v: int) -> str:
    if -(2**31) <= v < 2**31:
        return "i32"
    return "u64" if v >= 2**63 else "i64"


def variant(kernel, args: tuple, kwargs: dict) -> tuple:
    """``(kernel name, signature, constexprs, attrs, options)`` of one launch, specialized as
    Triton's JIT specializes it: constexpr parameters by value, integers equal to 1 as
    constexprs and integers divisible by 16 as such (unless ``do_not_specialize``), pointers
    16-byte aligned (a meta tensor's base is: only its storage offset can misalign it)."""
    names = kernel.arg_names
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    options = tuple(sorted((k, v) for k, v in kwargs.items() if k not in names))
    signature, constexprs, attrs = {}, {}, {}
    for i, param in enumerate(kernel.params):
        name, value = param.name, bound[param.name]
        specialize = not getattr(param, "do_not_specialize", False)
        align = specialize and not getattr(param, "do_not_specialize_on_alignment", False)
        if param.is_constexpr or (
            isinstance(value, int) and not isinstance(value, bool) and value == 1 and specialize
        ):
            signature[name] = "constexpr"
            constexprs[name] = value
            continue
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + _TYPES[value.dtype]
            divisible = value.storage_offset() * value.element_size() % 16 == 0
        elif isinstance(value, bool):
            signature[name] = "i1"
            divisible = False
        elif isinstance(value, int):
            signature[name] = _int_type(value)
            divisible = value % 16 == 0
        elif isinstance(value, float):
            signature[name] = "fp32"
            divisible = False
        else:
            raise TypeError(f"{kernel.fn.__name__}: argument {name} of type {type(value)}")
        if divisible and align:
            attrs[(i,)] = (("tt.divisibility", 16),)
    return (
        kernel.fn.__name__,
        tuple(signature.items()),
        tuple(constexprs.items()),
        tuple(sorted(attrs.items())),
        options,
    )


def _test_cases() -> list:
    """``TRITON_CASES`` of tests/ops/test_optimize_latents.py, read from its source (importing
    the test module would evaluate its parametrization, which needs the interpreter)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops")
    with open(os.path.join(path, "test_optimize_latents.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TRITON_CASES" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError("TRITON_CASES not found in tests/ops/test_optimize_latents.py")


def _optimizer_problems() -> list:
    """(name, inputs) of the optimizer workloads: the benchmark's GPU cases and the Triton
    test cases, as ``lcengine.benchmarks.optimizer.optimizer_inputs`` builds them (on meta)."""
    from lcengine.benchmarks.optimizer import OPTIMIZER_CASES, OptimizerCase, optimizer_inputs

    cases = [c for c in OPTIMIZER_CASES.values() if c.device == "cuda"]
    for b, d, hidden, activation in _test_cases():
        cases.append(
            OptimizerCase(f"test_B{b}_D{d}_{activation}", b, d, tuple(hidden), activation, 3, 4, 3)
        )
    return [(c.name, optimizer_inputs(c, device=META)) for c in cases]


def _drive_optimizer(launches: list) -> None:
    from lcengine.ops.optimize_latents.config import OptimizeHyperParams
    from lcengine.ops.optimize_latents.prepare import parse_critics, prepare
    from lcengine.ops.optimize_latents.triton import _Loop

    for _, x in _optimizer_problems():
        kw = x["kwargs"]
        beta1, beta2 = kw["betas"]
        hyper = OptimizeHyperParams(
            steps=kw["steps"],
            lr=kw["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=kw["eps"],
            w_realism=kw["w_realism"],
            w_attr=kw["w_attr"],
            w_dist=kw["w_dist"],
            tau_r=kw["tau_r"],
            tau_a=kw["tau_a"],
        )
        z, y, mask = x["z"], x["y"], x["mask"]
        num_attr = y.shape[1]
        realism_attributes = int(getattr(x["real"], "num_attributes", num_attr))
        critics = parse_critics(x["real"], x["attr"], z.shape[1], num_attr, realism_attributes)
        for weight_dtype in WEIGHT_DTYPES:
            prep = prepare(
                critics,
                z,
                y,
                mask,
                x["sigma_bar"],
                hyper,
                realism_attributes=realism_attributes,
                weight_dtype=weight_dtype,
            )
            with _recording(launches):
                loop = _Loop(prep, hyper)
                loop.one_step()
                loop.finish()


def _drive_row_ops(launches: list) -> None:
    """Each launcher as the public ops' forward and backward call it for the row-op
    benchmark's GPU shapes (lcengine/ops/*.py: gradients fused into the forward, the mean
    reduction, sigma_bar per dimension, no constraint weight)."""
    from lcengine._triton import (
        WEIGHT_NONE,
        constraint_loss,
        distance_penalty,
        gaussian_kl,
        latent_adam_,
        philox_words,
        reparameterize,
        reparameterize_backward,
        standard_normal,
    )
    from lcengine.benchmarks.cli_args import DEFAULT_SHAPES, LARGE_SHAPES
    from lcengine.benchmarks.row_ops import DTYPES, parse_shape

    shapes = {parse_shape(s) for s in DEFAULT_SHAPES["cuda"] + LARGE_SHAPES["cuda"]}
    with _recording(launches):
        for rows, dim in sorted(shapes):
            for dtype in DTYPES.values():

                def t(*shape, dt=dtype):
                    return torch.empty(*shape, dtype=dt, device=META)

                x, x2, out = t(rows, dim), t(rows, dim), t(rows, dim)
                per_row = t(rows, dt=torch.float32)
                standard_normal(out, 1, 0)
                if dtype == torch.float32:  # the integer stream (the RNG tests' launcher)
                    philox_words(t(2, rows * dim, dt=torch.int32), 1, 0)
                reparameterize(x, x2, out, 1, 0)
                reparameterize_backward(x, x2, out, 1, 0)
                gaussian_kl(x, x2, per_row, out, t(rows, dim), 1.0 / rows)
                distance_penalty(x, x2, t(dim, dt=torch.float32), True, per_row, out, 1.0 / rows)
                constraint_loss(x, x2, None, WEIGHT_NONE, None, per_row, out, 1.0 / rows)
                latent_adam_(x, x2, out, t(rows, dim), None, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)


def collect() -> list:
    """The distinct variants launched, in first-launch order: ``[(kernel, variant)]``."""
    launches: list = []
    with torch.no_grad():
        _drive_optimizer(launches)
        _drive_row_ops(launches)
    seen, out = set(), []
    for kernel, args, kwargs in launches:
        key = variant(kernel, args, kwargs)
        if key not in seen:
            seen.add(key)
            out.append((kernel, key))
    return out


def all_kernels() -> dict:
    """Every ``@triton.jit`` kernel (``_*_kernel``) of ``lcengine._triton``'s modules, by name."""
    import lcengine._triton as package

    found = {}
    for module in (package.optimize, package.rng, package.row_losses, package.adam):
        for name, obj in vars(module).items():
            if name.endswith("_kernel") and hasattr(obj, "arg_names"):
                found[name] = obj
    return found


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spill stack bytes) of the cubin's kernel, via Triton's bundled cuobjdump."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [tool, "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    regs = int(re.search(r"REG:(\d+)", out).group(1))
    spills = re.search(r"STACK:(\d+)", out)
    return regs, int(spills.group(1)) if spills else 0


def _label(arch: int, key: tuple) -> str:
    name, signature, constexprs, _, options = key
    shown = " ".join(f"{k}={v}" for k, v in constexprs)
    opts = " ".join(f"{k}={v}" for k, v in options)
    weights = [t for k, t in signature if k == "w_ptr"]
    dtype = f" w={weights[0][1:]}" if weights else ""
    return f"sm_{arch} {name}{dtype} {shown} {opts}".rstrip()


def _compile(job: tuple) -> tuple[str, str]:
    """(status, line) of one variant on one architecture, in a worker process."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import lcengine._triton as package

    arch, key, strict_spills = job
    name, signature, constexprs, attrs, options = key
    module = next(
        m
        for m in (package.optimize, package.rng, package.row_losses, package.adam)
        if hasattr(m, name)
    )
    fn = getattr(module, name)
    attrs = {k: [list(a) for a in v] for k, v in attrs}
    label = _label(arch, key)
    try:
        compiled = triton.compile(
            ASTSource(fn=fn, signature=dict(signature), constexprs=dict(constexprs), attrs=attrs),
            target=GPUTarget("cuda", arch, 32),
            options=dict(options),
        )
        regs, stack = resources(compiled.asm["cubin"])
        ptx = compiled.asm["ptx"]
    except Exception as exc:  # report every failing variant, then fail
        return "FAIL", f"FAIL {label}: {type(exc).__name__}: {str(exc)[:400]}"
    if APPROX_DIV.search(ptx):
        return "FAIL", f"APPROX-DIV {label}: {APPROX_DIV.search(ptx).group(0)} in the PTX"
    # Spills depend on the Triton release's register allocation: reported, and fatal only with
    # --strict-spills, never a failure of the default check.
    status = "SPILL" if stack and strict_spills else "ok"
    line = f"{status} {label} regs={regs} stack={stack} smem={compiled.metadata.shared}"
    return ("FAIL" if status == "SPILL" else "ok"), line


def main(strict_spills: bool = False, workers: int = 0, archs: tuple = ARCHS) -> int:
    variants = collect()
    jobs = [(arch, key, strict_spills) for arch in archs for _, key in variants]
    workers = workers or min(4, os.cpu_count() or 1)
    failures = 0
    launched = {key[0] for _, key in variants}
    for name in sorted(set(all_kernels()) - launched):
        failures += 1
        print(f"FAIL {name}: no driver in tests/native/triton_aot.py launches it")
    compiled = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        for status, line in pool.map(_compile, jobs):
            failures += status != "ok"
            compiled += status == "ok"
            print(line, flush=True)
    print(
        f"summary: {compiled} of {len(jobs)} compiled "
        f"({len(variants)} variants x {len(archs)} architectures)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("run without TRITON_INTERPRET: the interpreter does not compile kernels")
    argv = sys.argv[1:]
    archs = ARCHS
    if "--archs" in argv:
        archs = tuple(int(a) for a in argv[argv.index("--archs") + 1].split(","))
    sys.exit(main(strict_spills="--strict-spills" in argv, archs=archs))
