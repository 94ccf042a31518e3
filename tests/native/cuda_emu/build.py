# SPDX-License-Identifier: Apache-2.0
"""Builds a host emulation of ``lcengine._C`` whose CUDA optimizer runs on the CPU.

The optimizer's CUDA sources (kernels/cuda/optimize*.cu*) are copied with two mechanical rewrites
(``kernel<<<cfg>>>(args)`` -> ``emu::launch(emu::Cfg{cfg}, kernel, args)`` and the dynamic shared
memory array -> a per-CTA host buffer) next to this folder's ``common.cuh`` and
``cuda_runtime.h``, which stand in for the real ones (``optimize.cu`` becomes
``optimize_cu.cpp``, apart from csrc/optimize.cpp); then csrc/ (the real bindings and CPU
kernels) and the copies are compiled with g++ into a module named ``_C`` in ``out_dir``.

Usage: ``python tests/native/cuda_emu/build.py OUT_DIR`` prints the module's path.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor

import pybind11

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))  # tests/native/cuda_emu
KERNELS = os.path.join(ROOT, "kernels", "cuda")
CSRC = os.path.join(ROOT, "csrc")
SOURCES = ("optimize_device.cuh", "optimize_tile.cuh", "optimize.cu")
FLAGS = [
    "-std=c++20",
    "-O2",
    "-fPIC",
    "-fopenmp",
    "-pthread",
    "-fno-strict-aliasing",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-DLCENGINE_WITH_CUDA=1",
    "-Wno-unknown-pragmas",
]
LAUNCH = re.compile(r"([\w:]+(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\((.*?)\);", re.S)


def transform(out_dir: str) -> None:
    for name in SOURCES:
        with open(os.path.join(KERNELS, name)) as fh:
            text = fh.read()
        text = text.replace(
            "extern __shared__ float4 smem_f4[];", "float4* smem_f4 = emu::g_dyn_smem;"
        )
        text = LAUNCH.sub(
            lambda m: f"emu::launch(emu::Cfg{{{m.group(2)}}}, {m.group(1)}, {m.group(3)});", text
        )
        target = name.replace(".cu", "_cu.cpp") if name.endswith(".cu") else name
        with open(os.path.join(out_dir, target), "w") as fh:
            fh.write(text)
    for name in ("common.cuh", "cuda_runtime.h", "stubs.cpp"):
        shutil.copy(os.path.join(HERE, name), out_dir)


def build(out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    transform(out_dir)
    includes = [
        f"-I{out_dir}",
        f"-I{CSRC}",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    units = [os.path.join(CSRC, f) for f in sorted(os.listdir(CSRC)) if f.endswith(".cpp")]
    units += [os.path.join(out_dir, "optimize_cu.cpp"), os.path.join(out_dir, "stubs.cpp")]
    defines = ['-DLCENGINE_VERSION="emu"', '-DLCENGINE_CUDA_ARCHS="emu"']

    def compile_unit(src: str) -> str:
        obj = os.path.join(out_dir, os.path.basename(src) + ".o")
        subprocess.run(["g++", *FLAGS, *includes, *defines, "-c", src, "-o", obj], check=True)
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objects = list(pool.map(compile_unit, units))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    module = os.path.join(out_dir, "_C" + suffix)
    subprocess.run(["g++", "-shared", "-fopenmp", "-pthread", *objects, "-o", module], check=True)
    return module


if __name__ == "__main__":
    print(build(sys.argv[1]))
