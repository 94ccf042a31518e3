# SPDX-License-Identifier: Apache-2.0
"""Layers import only downward: lcengine.method never imports an application (lcengine.apps),
and lcengine.ops and lcengine.reference never import the method or an application.

Checked statically (every import statement of every module, relative imports resolved, plus
string constants naming an application module) and at run time (importing the method loads no
application). The method also names no data set.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lcengine

PACKAGE_ROOT = Path(lcengine.__file__).resolve().parent  # .../lcengine

FORBIDDEN = {
    "method": ("lcengine.apps",),
    "ops": ("lcengine.method", "lcengine.apps"),
    "reference": ("lcengine.method", "lcengine.apps"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module the import statements of ``source`` may load.

    Args:
        source: Python source.
        module: its dotted module name (relative imports resolve against it).
        is_package: the source is a package's ``__init__.py``.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def _file_imports(path: Path) -> set[str]:
    return _imported_modules(
        path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
    )


def _named_modules(path: Path) -> set[str]:
    """String constants that look like lcengine module paths (``importlib`` targets)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.value.partition(":")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("lcengine.")
    }


def _modules(subpackage: str) -> list[Path]:
    return sorted((PACKAGE_ROOT / subpackage).rglob("*.py"))


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_no_upward_imports(subpackage):
    files = _modules(subpackage)
    assert files, f"no modules found under lcengine/{subpackage}"
    bad = []
    for path in files:
        for target in _file_imports(path) | _named_modules(path):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[subpackage]):
                bad.append(f"{path.relative_to(PACKAGE_ROOT.parent)} -> {target}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_scan_resolves_relative_imports():
    """The checker itself: relative imports resolve against the importing module."""
    source = "from ..apps import digits\nfrom . import io\nimport numpy\n"
    found = _imported_modules(source, "lcengine.method.x", is_package=False)
    assert {"lcengine.apps", "lcengine.apps.digits", "lcengine.method.io", "numpy"} <= found
    found = _imported_modules("from .apps import digits\n", "lcengine", is_package=True)
    assert "lcengine.apps.digits" in found


def test_importing_the_method_loads_no_application():
    code = (
        "import sys, lcengine.method, lcengine.method.run, lcengine.method.commands, "
        "lcengine.method.metrics, lcengine.method.timing; "
        "bad = sorted(m for m in sys.modules if m.startswith('lcengine.apps')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_method_names_no_data_set():
    hits = [
        f"{p.relative_to(PACKAGE_ROOT.parent)}:{i}"
        for p in _modules("method")
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "mnist" in line.lower() or "digit" in line.lower()
    ]
    assert not hits, hits
