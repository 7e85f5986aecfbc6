"""Where the shipped bundle recipes live."""

from __future__ import annotations

from pathlib import Path

from radmi.errors import BundleError

BUNDLES_ROOT = Path(__file__).resolve().parents[2] / "bundles"


def bundle_dir(name: str) -> Path:
    """The folder of a shipped bundle, e.g. ``bundle_dir("radmi_cxr_pretrain")``."""
    path = BUNDLES_ROOT / name
    if not path.is_dir() or not (path / "configs" / "metadata.json").is_file():
        raise BundleError(
            "no such shipped bundle (a folder with configs/metadata.json; radmi must be installed from a "
            "source checkout: pip install -e .)",
            path=path,
        )
    return path


def bundle_config(name: str, config: str = "train.json") -> Path:
    """Path of one config file of a shipped bundle."""
    path = bundle_dir(name) / "configs" / config
    if not path.is_file():
        raise BundleError("config file missing from the bundle", path=path)
    return path
