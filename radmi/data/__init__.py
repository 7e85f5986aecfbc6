"""Manifests, reports, labels, datasets and the preprocessed cache: one obvious name per thing.

>>> from radmi.data import make_dataset, sample_transform
>>> dataset = make_dataset("manifest.csv", sample_transform(image_size=256), on_error="skip")

Layering (see docs/architecture.md): ``labels`` and ``reports`` import nothing from radmi, so the transforms
can build on them at any point of this package's initialisation; ``manifest`` (and its ``manifest_*`` modules),
``dataset``, ``pipeline`` and ``cache`` build on the transforms. ``radmi.transforms`` imports this package first.
"""

from __future__ import annotations

from radmi.data.cache import prepare_cache
from radmi.data.cache_dataset import CachedDataset, collate_cached
from radmi.data.dataset import ManifestDataLoader, ManifestDataset, make_dataset
from radmi.data.fractions import subsample_label_fraction
from radmi.data.labels import CHEXPERT_LABELS, apply_label_policy
from radmi.data.manifest import (
    MANIFEST_COLUMNS,
    build_folder_manifest,
    build_mimic_manifest,
    check_manifest,
    read_manifest,
    write_manifest,
)
from radmi.data.pipeline import sample_transform
from radmi.data.reports import parse_report, report_sentences, split_sentences

__all__ = [
    "CHEXPERT_LABELS",
    "CachedDataset",
    "MANIFEST_COLUMNS",
    "ManifestDataLoader",
    "ManifestDataset",
    "apply_label_policy",
    "build_folder_manifest",
    "build_mimic_manifest",
    "check_manifest",
    "collate_cached",
    "make_dataset",
    "parse_report",
    "prepare_cache",
    "read_manifest",
    "report_sentences",
    "sample_transform",
    "split_sentences",
    "subsample_label_fraction",
    "write_manifest",
]
