"""Package-level names imported on first use (PEP 562), so that importing a package stays cheap.

``radmi.data`` and ``radmi.transforms`` re-export names whose modules import torch and MONAI (5-9 s on a 2-core
machine). A command that only builds a manifest, or prints its ``--help``, should not pay for that; with these
exports, ``import radmi.data`` costs nothing until a name is used. Submodules still import each other eagerly,
so an import cycle between them shows as an ImportError (see tests/test_package_api.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``exports`` map a public name to its submodule.

    >>> __getattr__, __dir__ = lazy_exports(__name__, {"make_dataset": "dataset"})
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
