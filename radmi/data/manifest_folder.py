"""The folder manifest builder: ``build_folder_manifest`` for a hospital export (DICOM files + a report CSV).

Headers are read with :func:`radmi.transforms.dicom_decode.read_dicom_header` (named tags only, no pixels).
PatientIDs are read only to derive subject ids by a keyed hash (:mod:`radmi.data.splits`); none is written or
logged. Labels come from the hospital's own CSV (``labels_csv``), from radmi's report labeler
(``label_reports``), or stay blank; splits are one fixed value or patient-level fractions.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset
from tqdm.auto import tqdm

from radmi.data.labeler import label_reports as run_labeler
from radmi.data.labeler import read_csv_strings
from radmi.data.labels import CHEXPERT_LABELS, invalid_label_values
from radmi.data.manifest_schema import (
    DATASET_ROOTS_ATTR,
    MANIFEST_COLUMNS,
    SPLITS,
    empty_labels,
    write_manifest,
)
from radmi.data.splits import assign_splits, subject_ids
from radmi.errors import DicomError, ManifestError, ReportError
from radmi.transforms.dicom_decode import read_dicom_header
from radmi.transforms.file_checks import file_problem

__all__ = ["build_folder_manifest", "read_label_table"]

logger = logging.getLogger(__name__)

_FOLDER_TAGS = ("StudyInstanceUID", "SOPInstanceUID", "PatientID", "ViewPosition", "AccessionNumber")


def _read_header(path: Path) -> Dataset:
    """The ``_FOLDER_TAGS`` of one file; ManifestError naming the file when it is not a readable DICOM file."""
    try:
        return read_dicom_header(path, _FOLDER_TAGS)
    except DicomError as err:
        raise ManifestError(f"not a readable DICOM file: {err.reason}", path=path) from err


def _dicom_files(images_dir: Path, suffixes: Sequence[str] | None) -> list[Path]:
    """Every entry under ``images_dir`` that is not a folder (regular files, and also dangling links, link loops,
    FIFOs, sockets and devices, so that the builder lists those as bad inputs with their reason instead of
    dropping them silently), by name."""
    files = sorted(p for p in images_dir.rglob("*") if not p.is_dir() and p.name != "DICOMDIR")
    if suffixes is None:
        return files
    lowered = tuple(s.lower() for s in suffixes)
    return [p for p in files if p.name.lower().endswith(lowered)]


def _sequential_ids(keys: pd.Series, start: int) -> pd.Series:
    """8-digit id strings numbering the distinct keys in sorted order from ``start``."""
    codes, _ = pd.factorize(keys, sort=True)
    return pd.Series(codes + start, index=keys.index).astype(str)


def read_label_table(path: str | PathLike, id_column: str = "study_id") -> pd.DataFrame:
    """A hospital's labels CSV: ``id_column`` plus the 14 CheXpert columns (exact names), values 1/0/-1/blank.

    Returns:
        the 14 labels as float64 (NaN = blank), indexed by the stripped id strings.

    Raises:
        ManifestError: missing file or column, an empty or duplicate id, or a value outside {1, 0, -1, blank}
            (naming the 0-based data row and the column).
        ReportError: a cell that is not UTF-8 text.
    """
    path = Path(path)
    frame = read_csv_strings(path, [id_column, *CHEXPERT_LABELS])
    ids = frame[id_column].str.strip()
    for mask, problem in ((ids == "", f"empty {id_column}"), (ids.duplicated(), f"duplicate {id_column}")):
        if mask.any():
            raise ManifestError(problem, path=path, row=int(np.flatnonzero(mask.to_numpy())[0]))
    labels = pd.DataFrame(index=pd.Index(ids, name=id_column))
    for column in CHEXPERT_LABELS:
        text = frame[column].str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = (np.isnan(values) & (text != "").to_numpy()) | invalid_label_values(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ManifestError(
                f"column '{column}': {frame[column].iloc[row]!r} is not 1, 0, -1 or blank", path=path, row=row
            )
        labels[column] = values
    return labels


def _read_reports(path: Path, id_column: str, report_column: str) -> tuple[pd.Series, pd.Series]:
    """(report text by study key, CSV row by study key); duplicate and empty keys named by row."""
    frame = read_csv_strings(path, [id_column, report_column])
    keys = frame[id_column].str.strip()
    duplicated = keys.duplicated() & (keys != "")
    if duplicated.any():
        raise ManifestError(
            f"duplicate {id_column}", path=path, row=int(np.flatnonzero(duplicated.to_numpy())[0])
        )
    index = pd.Index(keys, name="key")
    return (
        pd.Series(frame[report_column].to_numpy(), index=index),
        pd.Series(np.arange(len(frame)), index=index),
    )


def _dicom_id(header: Dataset, path: Path, images_dir: Path) -> str:
    """SOPInstanceUID, else the file's path inside the export (a bare file name may repeat across folders)."""
    uid = str(header.get("SOPInstanceUID", "") or "").strip()
    return uid or path.relative_to(images_dir).as_posix()


def _drop_duplicate_images(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the first file of each SOPInstanceUID: exports often hold one image twice (copies, re-sends)."""
    duplicated = frame["dicom_id"].duplicated()
    if duplicated.any():
        logger.warning(
            "folder manifest: %d duplicate image(s) (same SOPInstanceUID) kept once", int(duplicated.sum())
        )
    return frame[~duplicated].reset_index(drop=True)


def _study_labels(
    keys: pd.Series,
    reports: pd.Series,
    labels_csv: Path | None,
    id_column: str,
    label_reports: bool,
    reports_csv: Path,
    report_rows: pd.Series,
) -> pd.DataFrame:
    """The 14 labels of every study key (rows in ``keys`` order): imported, from the labeler, or blank."""
    if labels_csv is not None:
        table = read_label_table(labels_csv, id_column)
        unlabeled = int((~keys.isin(table.index)).sum())
        if unlabeled:
            logger.warning(
                "labels: %d of %d studies have no row in %s (left blank)",
                unlabeled,
                len(keys),
                labels_csv.name,
            )
        return table.reindex(keys.to_numpy())
    if label_reports:
        texts = reports.loc[keys.to_numpy()]
        try:
            return run_labeler(texts.reset_index(drop=True), path=reports_csv).set_axis(keys.to_numpy())
        except ReportError as err:  # name the reports CSV row, not the position among the studies
            row = None if err.row is None else int(report_rows[keys.iloc[err.row]])
            raise ReportError(err.reason, path=reports_csv, row=row) from err
    return pd.DataFrame(np.nan, index=keys.to_numpy(), columns=list(CHEXPERT_LABELS))


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
    salt: str | bytes | None = None,
    split_fractions: Sequence[float] | None = None,
    seed: int = 0,
    labels_csv: str | PathLike | None = None,
    label_reports: bool = False,
) -> pd.DataFrame:
    """Manifest of a hospital export: DICOM files anywhere under ``images_dir`` plus a CSV of reports.

    Each study's report is written to ``<out folder>/<out stem>_reports/s<study_id>.txt`` so that the
    manifest keeps the one schema; ``<out stem>_studies.csv`` maps radmi's study ids back to ``study_key``.
    Studies are numbered (``5xxxxxxx``) in sorted order of ``study_key``. Subject ids are a keyed hash of the
    PatientID (16 digits, :func:`radmi.data.splits.subject_ids`); no patient identifier is written. A file
    whose SOPInstanceUID was already seen is a copy and is kept once. The manifest is written to ``out``, its
    dataset roots (``images_dir`` and the reports folder) beside it as ``<out stem>.roots.json``.

    Args:
        images_dir: the export folder (searched recursively).
        reports_csv: CSV with ``id_column`` (the value of the DICOM tag ``study_key``) and ``report_column``.
        out: the manifest CSV to write.
        study_key: DICOM keyword matching the reports CSV: ``StudyInstanceUID`` or ``AccessionNumber``.
        split: the split written to every row (``""`` = unassigned, or ``train``/``validate``/``test``).
        suffixes: file-name endings to read; ``None`` tries every file (non-DICOM files count as errors).
        on_error: ``raise`` on the first unreadable file or study without report; ``skip`` logs and drops it.
        salt: the secret key of the subject-id hash. Keep it to get the same ids (and fraction splits) on
            the next export; ``None`` draws a random one, so ids change from run to run.
        split_fractions: train/validate/test fractions assigned per patient (instead of ``split``); a
            patient's split depends only on its hashed id and ``seed`` (:func:`radmi.data.splits.assign_splits`).
        seed: the seed of the fraction split.
        labels_csv: the hospital's labels, keyed by ``id_column`` like the reports, with the 14 CheXpert
            columns (:func:`read_label_table`); studies without a row stay blank.
        label_reports: label each study from its report with :mod:`radmi.data.labeler`.

    Returns:
        the manifest, with absolute paths.

    Raises:
        ManifestError: unreadable file, study without report, bad labels CSV, duplicate ids (row named).
        ReportError: an empty or non-UTF-8 report (the reports CSV row named).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if split not in (*SPLITS, ""):
        raise ValueError(f"split must be one of {SPLITS} or empty, got {split!r}")
    if split and split_fractions is not None:
        raise ValueError("give either split or split_fractions, not both")
    if labels_csv is not None and label_reports:
        raise ValueError("give either labels_csv or label_reports, not both")
    images_dir, out, reports_csv = Path(images_dir).resolve(), Path(out).resolve(), Path(reports_csv)
    if not images_dir.is_dir():
        raise ManifestError("images folder not found", path=images_dir)
    reports, report_rows = _read_reports(reports_csv, id_column, report_column)

    rows, skipped = [], 0
    for path in tqdm(_dicom_files(images_dir, suffixes), desc="reading DICOM headers", disable=not progress):
        try:
            problem = file_problem(path)  # from stat alone: a FIFO is never opened
            if problem is not None:
                raise ManifestError(problem, path=path)
            header = _read_header(path)
            key = str(header.get(study_key, "") or "").strip()
            if not key:
                raise ManifestError(f"no {study_key} in the header", path=path)
            text = reports.get(key)
            if text is None:
                raise ManifestError(f"no report for this study in {reports_csv.name}", path=path)
            if not text.strip():
                raise ReportError("empty report", path=reports_csv, row=int(report_rows[key]))
        except (ManifestError, ReportError) as err:
            if on_error == "raise":
                raise
            skipped += 1
            logger.warning("skipped %s: %s", path, err.reason)
            continue
        rows.append(
            {
                "patient": str(header.get("PatientID", "") or ""),
                "key": key,
                "dicom_id": _dicom_id(header, path, images_dir),
                "image_path": str(path),
                "view": str(header.get("ViewPosition", "") or "").strip(),
            }
        )
    if not rows:
        raise ManifestError("no DICOM image with a matching report found", path=images_dir)
    frame = _drop_duplicate_images(pd.DataFrame(rows))
    logger.info("folder manifest: %d images kept, %d skipped", len(frame), skipped)
    if salt is None:
        logger.warning("no salt given: subject ids (and fraction splits) are random for this run")
        salt = secrets.token_bytes(32)
    frame["subject_id"] = subject_ids(
        frame.pop("patient"), salt.encode("utf-8") if isinstance(salt, str) else salt
    )
    frame["study_id"] = _sequential_ids(frame["key"], 50_000_000)

    report_dir = out.parent / f"{out.stem}_reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    studies = frame.drop_duplicates("study_id").loc[:, ["study_id", "key"]]
    for study_id, key in zip(studies["study_id"], studies["key"], strict=True):
        (report_dir / f"s{study_id}.txt").write_text(reports[key], encoding="utf-8")
    studies.rename(columns={"key": study_key}).to_csv(out.parent / f"{out.stem}_studies.csv", index=False)

    frame["report_path"] = str(report_dir) + "/s" + frame["study_id"] + ".txt"
    frame["split"] = (
        split if split_fractions is None else assign_splits(frame["subject_id"], split_fractions, seed)
    )
    study_labels = _study_labels(
        studies["key"], reports, None if labels_csv is None else Path(labels_csv), id_column, label_reports,
        reports_csv, report_rows,
    )  # fmt: skip
    manifest = frame.assign(**empty_labels(len(frame)))
    manifest.loc[:, list(CHEXPERT_LABELS)] = study_labels.loc[
        frame["key"].to_numpy(), list(CHEXPERT_LABELS)
    ].to_numpy()
    manifest = manifest.loc[:, list(MANIFEST_COLUMNS)]
    manifest.attrs[DATASET_ROOTS_ATTR] = [str(images_dir), str(report_dir)]
    write_manifest(manifest, out)
    return manifest
