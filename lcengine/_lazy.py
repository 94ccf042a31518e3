# SPDX-License-Identifier: Apache-2.0
"""Lazy imports, so that ``lcengine --help`` and the argument parsers load no torch or numpy.

:func:`lazy_package` gives a package the module ``__getattr__`` and ``__dir__`` of PEP 562: a
public name is imported from its submodule on first access (then cached in the package's
namespace), and a submodule named as an attribute is imported. :class:`LazyModule` stands for a
module imported on first attribute access (``np = LazyModule("numpy")``). This module imports
only the standard library.
"""

from __future__ import annotations

import importlib
import types
from typing import Any, Callable, Iterable, Mapping


def lazy_package(
    package: str,
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package``.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``; resolved names are stored there, so each import happens
            once and later lookups do not reach ``__getattr__``.
        exports: public name -> the submodule that defines it, relative (``".ops"``) or absolute.
        submodules: submodules that ``package.<name>`` imports on access.
    """
    exports = dict(exports)
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
            namespace[name] = value
            return value
        if name in subs:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | subs)

    return __getattr__, __dir__


class LazyModule(types.ModuleType):
    """A module imported on first attribute access; ``sys.modules`` is untouched until then."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_module"] = None

    def _load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        loaded = "loaded" if self.__dict__["_lazy_module"] is not None else "not loaded yet"
        return f"<lazy module {self.__name__!r} ({loaded})>"


__all__ = ["LazyModule", "lazy_package"]
