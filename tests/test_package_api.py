"""The package-level names resolve, and each submodule imports on its own (no import cycles)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import radmi.data


@pytest.mark.parametrize("name", radmi.data.__all__)
def test_data_exports_resolve(name: str) -> None:
    assert getattr(radmi.data, name) is not None


def test_transforms_import_first_in_a_fresh_interpreter() -> None:
    # importing radmi.transforms first walks transforms -> radmi.data.labels -> radmi.data; a cycle there only
    # shows in a fresh interpreter (in this one, test order decides what was imported first)
    result = subprocess.run([sys.executable, "-c", "import radmi.transforms"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-800:]


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        importlib.import_module("radmi.data").no_such_name  # noqa: B018
