"""Manifests, reports, labels, datasets and the preprocessed cache: one obvious name per thing.

>>> from radmi.data import make_dataset, sample_transform
>>> dataset = make_dataset("manifest.csv", sample_transform(image_size=256), on_error="skip")

Names are imported on first use: the transforms import ``radmi.data.labels`` and ``radmi.data.reports``, and
``radmi.data.pipeline`` imports the transforms, so eager imports here would be circular.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHEXPERT_LABELS": "labels",
    "apply_label_policy": "labels",
    "MANIFEST_COLUMNS": "manifest",
    "build_folder_manifest": "manifest",
    "build_mimic_manifest": "manifest",
    "check_manifest": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "parse_report": "reports",
    "report_sentences": "reports",
    "split_sentences": "reports",
    "ManifestDataLoader": "dataset",
    "ManifestDataset": "dataset",
    "make_dataset": "dataset",
    "sample_transform": "pipeline",
    "prepare_cache": "cache",
    "CachedDataset": "cache_dataset",
    "collate_cached": "cache_dataset",
    "subsample_label_fraction": "fractions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'radmi.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"radmi.data.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
