"""The folder manifest builder: ``build_folder_manifest`` for a hospital export (DICOM files + a report CSV).

Headers are read with :func:`radmi.transforms.dicom.read_dicom_header` (named tags only, no pixels). Patient
identifiers are read only to number subjects; none is written or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
from pydicom.dataset import Dataset
from tqdm.auto import tqdm

from radmi.data.manifest_schema import (
    MANIFEST_COLUMNS,
    SPLITS,
    empty_labels,
    read_source_csv,
    require_unique,
    write_manifest,
)
from radmi.errors import DicomError, ManifestError
from radmi.transforms.dicom import read_dicom_header

__all__ = ["build_folder_manifest"]

logger = logging.getLogger(__name__)

_FOLDER_TAGS = ("StudyInstanceUID", "SOPInstanceUID", "PatientID", "ViewPosition", "AccessionNumber")


def _read_header(path: Path) -> Dataset:
    """The ``_FOLDER_TAGS`` of one file; ManifestError naming the file when it is not a readable DICOM file."""
    try:
        return read_dicom_header(path, _FOLDER_TAGS)
    except DicomError as err:
        raise ManifestError(f"not a readable DICOM file: {err.reason}", path=path) from err


def _dicom_files(images_dir: Path, suffixes: Sequence[str] | None) -> list[Path]:
    files = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    if suffixes is None:
        return files
    lowered = tuple(s.lower() for s in suffixes)
    return [p for p in files if p.name.lower().endswith(lowered)]


def _sequential_ids(keys: pd.Series, start: int) -> pd.Series:
    """8-digit id strings numbering the distinct keys in sorted order from ``start``."""
    codes, _ = pd.factorize(keys, sort=True)
    return pd.Series(codes + start, index=keys.index).astype(str)


def build_folder_manifest(
    images_dir: str | PathLike,
    reports_csv: str | PathLike,
    out: str | PathLike,
    study_key: str = "StudyInstanceUID",
    id_column: str = "study_id",
    report_column: str = "report",
    split: str = "",
    suffixes: Sequence[str] | None = (".dcm", ".dcm.gz"),
    on_error: str = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """Manifest of a hospital export: DICOM files anywhere under ``images_dir`` plus a CSV of reports.

    Each study's report is written to ``<out folder>/<out stem>_reports/s<study_id>.txt`` so that the
    manifest keeps the one schema; ``<out stem>_studies.csv`` maps radmi's study ids back to ``study_key``.
    Subjects and studies are numbered (``1xxxxxxx``, ``5xxxxxxx``) in sorted order of PatientID and
    ``study_key``; no patient identifier is written. The manifest itself is written to ``out``.

    Args:
        images_dir: the export folder (searched recursively).
        reports_csv: CSV with ``id_column`` (the value of the DICOM tag ``study_key``) and ``report_column``.
        out: the manifest CSV to write.
        study_key: DICOM keyword matching the reports CSV: ``StudyInstanceUID`` or ``AccessionNumber``.
        split: the split written to every row (``""`` = unassigned, or ``train``/``validate``/``test``).
        suffixes: file-name endings to read; ``None`` tries every file (non-DICOM files count as errors).
        on_error: ``raise`` on the first unreadable file or study without report; ``skip`` logs and drops it.

    Returns:
        the manifest, with absolute paths.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if split not in (*SPLITS, ""):
        raise ValueError(f"split must be one of {SPLITS} or empty, got {split!r}")
    images_dir, out = Path(images_dir).resolve(), Path(out).resolve()
    if not images_dir.is_dir():
        raise ManifestError("images folder not found", path=images_dir)
    reports = read_source_csv(Path(reports_csv), [id_column, report_column], check_ids=False)
    reports = reports.assign(key=reports[id_column].astype(str).str.strip())
    reports = require_unique(reports, ["key"], Path(reports_csv)).set_index("key")[report_column]

    rows, skipped = [], 0
    for path in tqdm(_dicom_files(images_dir, suffixes), desc="reading DICOM headers", disable=not progress):
        try:
            header = _read_header(path)
            key = str(header.get(study_key, "") or "").strip()
            if not key:
                raise ManifestError(f"no {study_key} in the header", path=path)
            text = reports.get(key)
            if not isinstance(text, str) or not text.strip():
                raise ManifestError(f"no report for this study in {Path(reports_csv).name}", path=path)
        except ManifestError as err:
            if on_error == "raise":
                raise
            skipped += 1
            logger.warning("skipped %s: %s", path, err.reason)
            continue
        rows.append(
            {
                "patient": str(header.get("PatientID", "") or ""),
                "key": key,
                "dicom_id": str(header.get("SOPInstanceUID", "") or path.name),
                "image_path": str(path),
                "view": str(header.get("ViewPosition", "") or "").strip(),
            }
        )
    if not rows:
        raise ManifestError("no DICOM image with a matching report found", path=images_dir)
    logger.info("folder manifest: %d images kept, %d skipped", len(rows), skipped)
    frame = pd.DataFrame(rows)
    frame["subject_id"] = _sequential_ids(frame["patient"], 10_000_000)
    frame["study_id"] = _sequential_ids(frame["key"], 50_000_000)

    report_dir = out.parent / f"{out.stem}_reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    studies = frame.drop_duplicates("study_id").loc[:, ["study_id", "key"]]
    for study_id, key in zip(studies["study_id"], studies["key"], strict=True):
        (report_dir / f"s{study_id}.txt").write_text(reports[key], encoding="utf-8")
    studies.rename(columns={"key": study_key}).to_csv(out.parent / f"{out.stem}_studies.csv", index=False)

    frame["report_path"] = str(report_dir) + "/s" + frame["study_id"] + ".txt"
    frame["split"] = split
    manifest = frame.assign(**empty_labels(len(frame))).loc[:, list(MANIFEST_COLUMNS)]
    write_manifest(manifest, out)
    return manifest
