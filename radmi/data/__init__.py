"""Manifests, reports, labels, datasets and the preprocessed cache: one obvious name per thing.

>>> from radmi.data import make_dataset, sample_transform
>>> dataset = make_dataset("manifest.csv", sample_transform(image_size=256), on_error="skip")

Layering (see docs/architecture.md): ``labels`` and ``reports`` import nothing from radmi, so the transforms
can build on them; ``manifest`` (and its ``manifest_*`` modules), ``dataset``, ``pipeline`` and ``cache`` build
on the transforms. The names below are imported on first use (:mod:`radmi.lazy_exports`): building a manifest
does not import torch or MONAI.
"""

from __future__ import annotations

from radmi.lazy_exports import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
