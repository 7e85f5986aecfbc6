"""radmi manifests: one CSV row per image, the single input format of every radmi dataset.

This module is the public façade; the work lives in small modules, each with one job:

- :mod:`radmi.data.manifest_schema`: the columns (``MANIFEST_COLUMNS``), value validation, ``read_manifest``
  (validates, returns absolute paths), ``write_manifest`` (paths relative to its own folder, the builder's
  dataset roots beside it in ``M.roots.json``) and ``dataset_roots`` (the folders every path must lie in);
- :mod:`radmi.data.manifest_mimic`: ``build_mimic_manifest`` for a MIMIC-CXR(-JPG) tree, from the official
  CSVs when present (vectorized merges), else by walking ``files/pNN/pNNNNNNNN/sNNNNNNNN/``;
- :mod:`radmi.data.manifest_folder`: ``build_folder_manifest`` for a hospital export (DICOM files plus a CSV of
  study -> report text);
- :mod:`radmi.data.manifest_chexpert`: ``build_chexpert_manifest`` for CheXpert-v1.0(-small) (labels, no
  reports); :mod:`radmi.data.manifest_openi`: ``build_openi_manifest`` for Open-i (report XML + PNG images);
- :mod:`radmi.data.manifest_check`: ``check_manifest`` (``radmi manifest check``) opens every row (image
  header, report, labels) and returns a per-row problem table.

Import from here (``radmi.data.manifest.build_mimic_manifest``); bundle configs and the CLI do.
"""

from __future__ import annotations

from radmi.data.manifest_check import ManifestCheck, check_manifest
from radmi.data.manifest_chexpert import CHEXPERT_VAL_FRACTION, build_chexpert_manifest
from radmi.data.manifest_folder import build_folder_manifest
from radmi.data.manifest_mimic import (
    CHEXPERT,
    EDEMA_SEVERITY,
    METADATA,
    MIMIC_IMAGE_SUFFIXES,
    RECORD_LIST,
    SPLIT,
    build_mimic_manifest,
)
from radmi.data.manifest_openi import OPENI_TEST_FRACTION, OPENI_VAL_FRACTION, build_openi_manifest
from radmi.data.manifest_schema import (
    DATASET_ROOTS_ATTR,
    EDEMA_COLUMN,
    FRONTAL_VIEWS,
    ID_COLUMNS,
    MANIFEST_COLUMNS,
    MAX_PARENT_LEVELS,
    OPTIONAL_COLUMNS,
    PATH_COLUMNS,
    ROOTS_SUFFIX,
    SPLITS,
    TEXT_COLUMNS,
    dataset_roots,
    empty_labels,
    enforced_roots,
    manifest_problems,
    outside_root,
    outside_roots,
    read_dataset_roots,
    read_manifest,
    read_manifest_within_roots,
    require_inside_root,
    require_inside_roots,
    resolve_paths,
    roots_file,
    split_counts,
    typed_manifest,
    write_manifest,
)

__all__ = [
    "CHEXPERT",
    "DATASET_ROOTS_ATTR",
    "EDEMA_COLUMN",
    "EDEMA_SEVERITY",
    "FRONTAL_VIEWS",
    "ID_COLUMNS",
    "MANIFEST_COLUMNS",
    "MAX_PARENT_LEVELS",
    "METADATA",
    "MIMIC_IMAGE_SUFFIXES",
    "PATH_COLUMNS",
    "RECORD_LIST",
    "ROOTS_SUFFIX",
    "SPLIT",
    "SPLITS",
    "TEXT_COLUMNS",
    "ManifestCheck",
    "build_folder_manifest",
    "build_mimic_manifest",
    "check_manifest",
    "dataset_roots",
    "empty_labels",
    "enforced_roots",
    "manifest_problems",
    "outside_root",
    "outside_roots",
    "read_dataset_roots",
    "read_manifest",
    "read_manifest_within_roots",
    "require_inside_root",
    "require_inside_roots",
    "resolve_paths",
    "roots_file",
    "split_counts",
    "typed_manifest",
    "write_manifest",
    # CheXpert and Open-i (radmi/data/manifest_chexpert.py, manifest_openi.py)
    "CHEXPERT_VAL_FRACTION",
    "OPENI_TEST_FRACTION",
    "OPENI_VAL_FRACTION",
    "OPTIONAL_COLUMNS",
    "build_chexpert_manifest",
    "build_openi_manifest",
]
