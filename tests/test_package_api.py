"""The package-level names resolve, the leaf modules stay leaves, and each entry point imports on its own.

``radmi.data.labels`` and ``radmi.data.reports`` import nothing from radmi; the transforms build on them, and
``radmi.data``'s pipeline, datasets and manifest modules build on the transforms. The two packages resolve
their public names on first use (for start-up time), but submodules import each other eagerly, so an import
cycle would still show as an ImportError in a fresh interpreter. The manifest builders must not import torch or
MONAI, so that ``radmi manifest`` and ``--help`` start fast.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import radmi.data
import radmi.models
import radmi.transforms

PACKAGE_ROOT = Path(radmi.__file__).parent


@pytest.mark.parametrize("package", [radmi.data, radmi.transforms, radmi.models], ids=lambda p: p.__name__)
def test_package_exports_resolve(package) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, name


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        radmi.data.no_such_name  # noqa: B018


@pytest.mark.parametrize("module", ["data/labels.py", "data/reports.py", "errors.py"])
def test_leaf_modules_import_nothing_from_radmi(module: str) -> None:
    tree = ast.parse((PACKAGE_ROOT / module).read_text())
    imported = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name == "radmi" or name.startswith("radmi.")]


# Entry points whose first import walks the data <-> transforms layering from different ends.
ENTRY_POINTS = [
    "radmi.transforms",
    "radmi.transforms.labels",
    "radmi.transforms.text",
    "radmi.data.labels",
    "radmi.data.manifest",
    "radmi.data.pipeline",
    "radmi.models",
    "radmi.eval.metrics",
]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one child per entry point")
def test_entry_points_import_first_in_a_fresh_interpreter() -> None:
    # a cycle only shows in a fresh interpreter (in this one, test order decides what was imported first);
    # one forked child per entry point keeps this to one interpreter start-up
    script = (
        "import os, sys\n"
        "failed = []\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            __import__(name)\n"
        "        except BaseException as err:\n"
        "            print(name, type(err).__name__, err, file=sys.stderr)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    if os.waitpid(pid, 0)[1] != 0:\n"
        "        failed.append(name)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# Modules that must not import torch or MONAI (they take 5-9 s to import on a 2-core machine).
LIGHT_MODULES = [
    "radmi.cli",
    "radmi.data",
    "radmi.transforms",
    "radmi.transforms.dicom_decode",
    "radmi.data.manifest_schema",
    "radmi.data.manifest_mimic",
    "radmi.data.manifest_check",
    "radmi.data.manifest_folder",
    "radmi.data.manifest",
    # every command module: heavy imports happen inside run(), so --help and argument errors are instant
    *sorted(
        f"radmi.commands.{path.stem}" for path in (PACKAGE_ROOT / "commands").glob("*.py") if path.stem != "__init__"
    ),
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_do_not_import_torch_or_monai(module: str) -> None:
    script = f"import sys, {module}; print(sorted(m for m in ('torch', 'monai', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", (module, result.stdout)


def test_lazy_names_are_listed_by_dir() -> None:
    assert set(radmi.data.__all__) <= set(dir(radmi.data))
    assert "make_dataset" in dir(radmi.data) and "LoadXRayDicom" in dir(radmi.transforms)
