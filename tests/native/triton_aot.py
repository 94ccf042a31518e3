# SPDX-License-Identifier: Apache-2.0
"""Compiles the fused optimizer's Triton kernels ahead of time for sm_80 and sm_90, with no GPU.

Run as a script (``python tests/native/triton_aot.py``), as ``test_triton_aot.py`` does in a
subprocess without TRITON_INTERPRET (the interpreter replaces the kernels with Python). Every
configuration the optimizer launches on a GPU (float32 at FP32_PRECISION and bfloat16 weights,
each activation, both skip modes, check and final) goes through Triton's full pipeline down to
a cubin with Triton's bundled ptxas; registers and spills are read from the cubin. Prints one
line per kernel with its registers and spill bytes and exits non-zero on any compile failure (and,
with ``--strict-spills``, on any spill: spills depend on the Triton release). Importing it (the
test does, for ``expected_count``) compiles nothing.
"""

import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from lcengine._triton import optimize as k

SIGS = {
    "_linear_fwd_kernel": dict(
        x_ptr="*fp32",
        ldx="i64",
        w_ptr="W",
        b_ptr="*fp32",
        rb_ptr="*fp32",
        ld_rb="i64",
        out_ptr="*fp32",
        ldo="i64",
        active_ptr="*u8",
        M="i32",
    ),
    "_linear_bwd_kernel": dict(
        g_ptr="*fp32",
        ldg="i64",
        w_ptr="W",
        a_ptr="*fp32",
        lda="i64",
        out_ptr="*fp32",
        ldo="i64",
        active_ptr="*u8",
        M="i32",
    ),
    "_first_bwd_adam_kernel": dict(
        g_ptr="*fp32",
        w_ptr="W",
        z_ptr="*fp32",
        z0_ptr="*fp32",
        m_ptr="*fp32",
        v_ptr="*fp32",
        coef_ptr="*fp32",
        active_ptr="*u8",
        step_ptr="*i32",
        table_ptr="*fp32",
        beta1="fp32",
        one_minus_beta1="fp32",
        beta2="fp32",
        one_minus_beta2="fp32",
        eps="fp32",
        M="i32",
    ),
    "_loss_check_kernel": dict(
        logits_ptr="*fp32",
        target_ptr="*fp32",
        weight_ptr="*fp32",
        req_ptr="*i8",
        upper_ptr="*fp32",
        lower_ptr="*fp32",
        active_ptr="*u8",
        converged_ptr="*u8",
        steps_ptr="*i64",
        g_ptr="*fp32",
        step_ptr="*i32",
        M="i32",
    ),
}


ARCHS = (80, 90)
WEIGHT_BF16 = (False, True)  # float32 weights at FP32_PRECISION, bfloat16 weights
ACTIVATIONS = (k.RELU, k.SOFTPLUS, k.LEAKY_RELU)
SKIP_INACTIVE = (False, True)
FINAL = (False, True)  # the per-step loss check, and the final convergence check


def expected_count() -> int:
    """Kernels compiled (lines printed) per run, counted from the lists above.

    Per weight dtype and activation: the hidden layer's forward in each skip mode, its backward,
    and the backward into the logit layer; per weight dtype: the logit layer's forward and the
    first layer's fused backward + Adam; per architecture: the check in each FINAL mode.
    """
    per_dtype = len(ACTIVATIONS) * (len(SKIP_INACTIVE) + 2) + 2
    return len(ARCHS) * (len(WEIGHT_BF16) * per_dtype + len(FINAL))


def configs():
    def split(bf16, n):
        """(tile constexprs, launch options) exactly as the launchers pick them."""
        cfg = k.gemm_tile(bf16=bf16, n=n, interpreted=False)
        launch = {key: cfg.pop(key) for key in ("num_warps", "num_stages")}
        return dict(BF16=bf16, EMULATE_BF16=False, PRECISION=k.FP32_PRECISION, **cfg), launch

    for bf16 in WEIGHT_BF16:
        for act in ACTIVATIONS:
            common, opts = split(bf16, 256)
            for skip in SKIP_INACTIVE:
                yield (
                    "_linear_fwd_kernel",
                    bf16,
                    dict(
                        N=256, K=64, RB_N=128, ACT=act, APPLY_ACT=True, SKIP_INACTIVE=skip, **common
                    ),
                    opts,
                )
            yield "_linear_bwd_kernel", bf16, dict(N=256, K=256, ACT=act, **common), opts
            common, opts = split(bf16, 1)  # a logit layer: forward, and backward into it
            yield "_linear_bwd_kernel", bf16, dict(N=1, K=256, ACT=act, **common), opts
        common, opts = split(bf16, 1)
        yield (
            "_linear_fwd_kernel",
            bf16,
            dict(N=1, K=256, RB_N=0, ACT=0, APPLY_ACT=False, SKIP_INACTIVE=True, **common),
            opts,
        )
        common, opts = split(bf16, 512)
        yield "_first_bwd_adam_kernel", bf16, dict(H=512, D=64, **common), opts
    for final in FINAL:
        yield (
            "_loss_check_kernel",
            False,
            dict(C=16, FINAL=final, BLOCK_R=k.CHECK_TILE_ELEMS // 16, BLOCK_C=16),
            {"num_warps": 4},
        )


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spill stores) of the cubin's kernel, via Triton's bundled cuobjdump."""
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


def main(strict_spills: bool = False) -> int:
    failures = 0
    for arch in ARCHS:
        target = GPUTarget("cuda", arch, 32)
        for name, bf16, consts, opts in configs():
            fn = getattr(k, name)
            sig = {
                a: ("*bf16" if bf16 else "*fp32") if t == "W" else t for a, t in SIGS[name].items()
            }
            sig.update({c: "constexpr" for c in consts})
            label = f"sm_{arch} {name} bf16={bf16} " + " ".join(
                f"{c}={v}"
                for c, v in consts.items()
                if c in ("ACT", "SKIP_INACTIVE", "FINAL", "APPLY_ACT")
            )
            try:
                compiled = triton.compile(
                    ASTSource(fn=fn, signature=sig, constexprs=consts), target=target, options=opts
                )
                regs, stack = resources(compiled.asm["cubin"])
            except Exception as exc:  # report every failing configuration, then fail
                failures += 1
                print(f"FAIL {label}: {type(exc).__name__}: {str(exc)[:400]}")
                continue
            # Spills depend on the Triton release's register allocation: reported (and fatal
            # only with --strict-spills), never a failure of the default check.
            spilled = stack != 0 and strict_spills
            failures += spilled
            status = "SPILL" if spilled else "ok"
            print(f"{status} {label} regs={regs} stack={stack} smem={compiled.metadata.shared}")
    return 1 if failures else 0


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("run without TRITON_INTERPRET: the interpreter does not compile kernels")
    sys.exit(main(strict_spills="--strict-spills" in sys.argv[1:]))
