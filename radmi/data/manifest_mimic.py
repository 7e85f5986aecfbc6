"""The MIMIC-CXR manifest builder: ``build_mimic_manifest`` for a MIMIC-CXR (DICOM) or MIMIC-CXR-JPG tree.

Records come from the official CSVs when present (vectorized pandas merges, seconds for the full 377k images,
no file is opened except one probe for the image suffix), else from a walk of ``files/pNN/pNNNNNNNN/sNNNNNNNN/``.
Then one ``lstat`` per image and report path lists dangling links, link loops and special files (FIFO, socket,
device) as bad inputs with their reason (:func:`radmi.data.manifest_schema.link_or_special_problems`; nothing
is opened, a FIFO never blocks): an error by default, dropped and listed with ``on_error="skip"``.
"""

from __future__ import annotations

import logging
import os
import re
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest_schema import (
    DATASET_ROOTS_ATTR,
    EDEMA_COLUMN,
    FRONTAL_VIEWS,
    MANIFEST_COLUMNS,
    PATH_COLUMNS,
    link_or_special_problems,
    read_source_csv,
    require_unique,
)
from radmi.errors import DicomError, ManifestError
from radmi.transforms.dicom_decode import read_dicom_header

__all__ = [
    "CHEXPERT",
    "EDEMA_SEVERITY",
    "METADATA",
    "MIMIC_IMAGE_SUFFIXES",
    "RECORD_LIST",
    "SPLIT",
    "build_mimic_manifest",
]

logger = logging.getLogger(__name__)

# Official MIMIC-CXR file names at the dataset root (gzipped or not).
RECORD_LIST = "cxr-record-list.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
#: radmi's name for the optional pulmonary edema severity table: subject_id, study_id, edema_severity (0..3).
EDEMA_SEVERITY = "mimic-cxr-2.0.0-edema-severity.csv"
#: Image suffixes of MIMIC-CXR (DICOM, gzipped DICOM) and MIMIC-CXR-JPG, in order of preference.
MIMIC_IMAGE_SUFFIXES = (".dcm", ".dcm.gz", ".jpg")

_ON_ERROR = ("raise", "skip")

_TREE_IMAGE = re.compile(
    r"(?:^|/)p\d{2}/p(?P<subject_id>\d+)/s(?P<study_id>\d+)/(?P<dicom_id>[^/]+?)(?P<suffix>\.dcm\.gz|\.dcm|\.jpg)$"
)


def _find_csv(root: Path, name: str) -> Path | None:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    return None


def _study_folder(subject: pd.Series, study: pd.Series) -> pd.Series:
    """``files/pNN/pNNNNNNNN/sNNNNNNNN`` for each row (ids as strings), vectorized."""
    return "files/p" + subject.str.slice(0, 2) + "/p" + subject + "/s" + study


def _id_strings(records: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    return records["subject_id"].astype(str), records["study_id"].astype(str)


def _choose_suffix(root: Path, stems: pd.Series, image_ext: str) -> str:
    """The image suffix: the given one, or for ``auto`` the first of .dcm/.dcm.gz/.jpg that exists for the
    first row (one probe, never a stat of every file)."""
    if image_ext != "auto":
        if image_ext not in MIMIC_IMAGE_SUFFIXES:
            raise ValueError(f"image_ext must be 'auto' or one of {MIMIC_IMAGE_SUFFIXES}, got {image_ext!r}")
        return image_ext
    if len(stems):
        for suffix in MIMIC_IMAGE_SUFFIXES:
            if (root / f"{stems.iloc[0]}{suffix}").is_file():
                return suffix
    logger.warning("no image found for the first record under %s; assuming '.dcm' paths", root)
    return ".dcm"


def _records_from_csvs(root: Path, image_ext: str) -> pd.DataFrame | None:
    """subject_id, study_id, dicom_id, image stem (root-relative, no suffix) from the record list or metadata."""
    record_list = _find_csv(root, RECORD_LIST)
    if record_list is not None:
        records = read_source_csv(record_list, ["subject_id", "study_id", "dicom_id", "path"])
        paths = records["path"].str.strip()
        stems = paths.where(
            ~paths.str.endswith(".dcm"), paths.str.slice(0, -4)
        )  # the official list names .dcm
        return records.assign(stem=stems).drop(columns="path")
    metadata = _find_csv(root, METADATA)
    if metadata is not None:  # MIMIC-CXR-JPG ships no record list
        records = read_source_csv(metadata, ["dicom_id", "subject_id", "study_id"])
        stems = _study_folder(*_id_strings(records)) + "/" + records["dicom_id"]
        return records.loc[:, ["subject_id", "study_id", "dicom_id"]].assign(stem=stems)
    return None


def _walk_tree(root: Path, image_ext: str, progress: bool) -> pd.DataFrame:
    """Records found by listing ``files/pNN/pNNNNNNNN/sNNNNNNNN/*`` (scandir, no per-file stat)."""
    top = root / "files" if (root / "files").is_dir() else root
    found: list[str] = []
    with tqdm(desc="listing images", unit=" files", disable=not progress) as bar:
        for folder, _, names in os.walk(top):
            relative = os.path.relpath(folder, root).replace(os.sep, "/")
            found.extend(f"{relative}/{name}" for name in names)
            bar.update(len(names))
    paths = pd.Series(sorted(found), dtype=object)
    parts = paths.str.extract(_TREE_IMAGE)
    keep = parts["dicom_id"].notna()
    if image_ext != "auto":
        keep &= parts["suffix"] == image_ext
    logger.info("tree walk: %d image files, %d other files ignored", int(keep.sum()), int((~keep).sum()))
    parts = parts[keep].assign(stem=paths[keep].str.replace(r"(\.dcm\.gz|\.dcm|\.jpg)$", "", regex=True))
    # the same image stored twice (e.g. .dcm and .jpg): keep the preferred suffix
    parts["rank"] = parts["suffix"].map({s: i for i, s in enumerate(MIMIC_IMAGE_SUFFIXES)})
    parts = parts.sort_values(["stem", "rank"], kind="stable").drop_duplicates("dicom_id", keep="first")
    parts = parts.astype({"subject_id": np.int64, "study_id": np.int64})  # the CSV readers' key type
    return parts.loc[:, ["subject_id", "study_id", "dicom_id", "stem", "suffix"]].reset_index(drop=True)


def _read_view(path: str) -> str:
    """``ViewPosition`` from a DICOM header; ManifestError naming the file when it is unreadable."""
    try:
        header = read_dicom_header(path, ("ViewPosition",))
    except DicomError as err:
        raise ManifestError(f"not a readable DICOM file: {err.reason}", path=path) from err
    return str(header.get("ViewPosition", "") or "")


def _drop_bad_files(records: pd.DataFrame, on_error: str, skipped: list[dict] | None) -> pd.DataFrame:
    """``records`` without the rows whose image or report is a dangling link, a link loop or a special file.

    ``raise``: a ManifestError naming the first such file and the reason. ``skip``: each bad file is logged
    (path and reason) and appended to ``skipped`` as ``{"file", "reason"}``, and every row naming it dropped.
    Missing files are not this check's business (``radmi manifest check`` lists them).
    """
    bad = np.zeros(len(records), dtype=bool)
    for column in PATH_COLUMNS:
        paths = records[column]
        unique = pd.unique(paths)  # a report is shared by the images of its study: one lstat each
        reasons = dict(zip(unique, link_or_special_problems(unique), strict=True))
        for path, reason in reasons.items():
            if not reason:
                continue
            if on_error == "raise":
                raise ManifestError(reason, path=path)
            logger.warning("skipped %s: %s", path, reason)
            if skipped is not None:
                skipped.append({"file": str(path), "reason": reason})
        bad |= paths.map(reasons).astype(bool).to_numpy()
    if bad.any():
        logger.info("MIMIC-CXR manifest: %d image(s) dropped for a bad image or report file", int(bad.sum()))
    return records[~bad].reset_index(drop=True)


def build_mimic_manifest(
    root: str | PathLike,
    frontal_only: bool = False,
    image_ext: str = "auto",
    reports_root: str | PathLike | None = None,
    progress: bool = True,
    on_error: str = "raise",
    skipped: list[dict] | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Manifest of a MIMIC-CXR (DICOM) or MIMIC-CXR-JPG tree, with absolute paths.

    Records come from ``cxr-record-list.csv.gz``, else ``mimic-cxr-2.0.0-metadata.csv.gz``, else a walk of
    ``files/``. Views come from the metadata CSV, splits from the split CSV, labels from the CheXpert CSV and
    edema severity from ``mimic-cxr-2.0.0-edema-severity.csv.gz``, each when present (else empty/blank).
    Every step is a vectorized pandas merge. The returned table's ``attrs["dataset_roots"]`` holds ``root``
    and ``reports_root``: :func:`~radmi.data.manifest_schema.write_manifest` writes them beside the manifest
    (``M.roots.json``) and ``radmi prepare`` refuses a row outside them.

    Args:
        root: the dataset folder (holding ``files/`` and the CSVs).
        frontal_only: keep PA and AP views only.
        image_ext: ``.dcm``, ``.dcm.gz`` or ``.jpg``; ``auto`` probes the first record (CSV mode) or keeps
            what the walk finds (preferring .dcm, then .dcm.gz, then .jpg for the same image).
        reports_root: folder holding the report tree ``files/pNN/pNNNNNNNN/sNNNNNNNN.txt`` (default ``root``;
            MIMIC-CXR-JPG users point it at their MIMIC-CXR folder).
        progress: show progress bars (tree walk, DICOM header reading).
        on_error: what to do with an image or report that is a dangling link, a link loop or a special file
            (FIFO, socket, device, folder): ``raise`` a ManifestError naming it; ``skip`` logs it, appends
            ``{"file", "reason"}`` to ``skipped`` and drops the rows naming it.
        skipped: the list the skipped files are appended to (exact counts).
        check_files: one ``lstat`` per image and report path for that check (nothing is opened); False
            touches no file (missing or special files then show in ``radmi manifest check``).

    Raises:
        ManifestError: the root is missing, a CSV lacks columns or has duplicate keys, no image is found,
            ``frontal_only`` needs views that are nowhere to be found, or (``on_error="raise"``) an image or
            report is a link that goes nowhere or a special file.
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise ManifestError("dataset root is not a folder", path=root)
    reports_root = Path(reports_root).resolve() if reports_root is not None else root
    records = _records_from_csvs(root, image_ext)
    if records is None:
        records = _walk_tree(root, image_ext, progress)
        image_paths = str(root) + "/" + records["stem"] + records.pop("suffix")
    else:
        image_paths = str(root) + "/" + records["stem"] + _choose_suffix(root, records["stem"], image_ext)
    if records.empty:
        raise ManifestError(
            "no MIMIC-CXR images or record CSVs found (expected files/pNN/pNNNNNNNN/sNNNNNNNN/)", path=root
        )
    records = records.drop(columns="stem")
    records["image_path"] = image_paths.to_numpy()
    records["report_path"] = str(reports_root) + "/" + _study_folder(*_id_strings(records)) + ".txt"
    if check_files:
        records = _drop_bad_files(records, on_error, skipped)

    metadata = _find_csv(root, METADATA)
    if metadata is not None:
        views = read_source_csv(metadata, ["dicom_id", "ViewPosition"]).loc[:, ["dicom_id", "ViewPosition"]]
        views = require_unique(views, ["dicom_id"], metadata)
        records = records.merge(views, on="dicom_id", how="left")  # keys checked unique above
        records["view"] = records.pop("ViewPosition").fillna("").str.strip()
    elif frontal_only:
        dicom = ~records["image_path"].str.endswith(".jpg")
        if not dicom.all():
            raise ManifestError(
                f"--frontal-only needs {METADATA}.gz for JPG images (they carry no view)", path=root
            )
        # no metadata CSV: read ViewPosition from the DICOM headers (a small tree, e.g. a subset)
        paths = records["image_path"].tolist()
        records["view"] = [_read_view(p) for p in tqdm(paths, desc="reading views", disable=not progress)]
    else:
        records["view"] = ""

    split_csv = _find_csv(root, SPLIT)
    if split_csv is not None:
        splits = require_unique(
            read_source_csv(split_csv, ["dicom_id", "split"]).loc[:, ["dicom_id", "split"]],
            ["dicom_id"],
            split_csv,
        )
        records = records.merge(splits, on="dicom_id", how="left")
        records["split"] = records["split"].fillna("").str.strip()
    else:
        records["split"] = ""

    records = _merge_study_table(records, root, CHEXPERT, list(CHEXPERT_LABELS))
    records = _merge_study_table(records, root, EDEMA_SEVERITY, [EDEMA_COLUMN])
    if frontal_only:
        records = records[records["view"].isin(FRONTAL_VIEWS)]
    records["subject_id"], records["study_id"] = _id_strings(records)
    manifest = records.loc[:, list(MANIFEST_COLUMNS)].reset_index(drop=True)
    manifest.attrs[DATASET_ROOTS_ATTR] = list(dict.fromkeys((str(root), str(reports_root))))
    return manifest


def _merge_study_table(records: pd.DataFrame, root: Path, name: str, columns: list[str]) -> pd.DataFrame:
    """Left-merge a per-study table (subject_id, study_id, columns...) onto the records; blank if absent."""
    path = _find_csv(root, name)
    if path is None:
        return records.assign(**{c: np.nan for c in columns})
    table = read_source_csv(path, ["subject_id", "study_id", *columns], numeric=columns)
    table = require_unique(
        table.loc[:, ["subject_id", "study_id", *columns]], ["subject_id", "study_id"], path
    )
    for column in columns:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
    return records.merge(table, on=["subject_id", "study_id"], how="left")
