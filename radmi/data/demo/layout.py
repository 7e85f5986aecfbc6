"""MIMIC-CXR v2.0.0 identifiers, paths and root CSV files for the demo dataset.

- subject_id: 8 digits starting with 1; study_id: 8 digits starting with 5; dicom_id: five dash-separated
  groups of 8 hex digits.
- ``files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.dcm`` and the report ``files/pNN/pNNNNNNNN/sNNNNNNNN.txt``.
- Root CSVs (gzipped): ``cxr-record-list``, ``cxr-study-list``, ``mimic-cxr-2.0.0-metadata``,
  ``mimic-cxr-2.0.0-split``, ``mimic-cxr-2.0.0-chexpert``, ``mimic-cxr-2.0.0-edema-severity`` and the demo's
  ground truth ``finding-locations``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data.labels import CHEXPERT_LABELS

RECORD_LIST = "cxr-record-list.csv.gz"
STUDY_LIST = "cxr-study-list.csv.gz"
METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv.gz"
EDEMA_SEVERITY = "mimic-cxr-2.0.0-edema-severity.csv.gz"
FINDING_LOCATIONS = "finding-locations.csv.gz"

METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)  # fmt: skip
LOCATION_COLUMNS = (
    "dicom_id", "study_id", "subject_id", "label", "side", "zone", "severity", "hedged",
    "x0", "y0", "x1", "y1", "sentence_index",
)  # fmt: skip


def unique_ids(rng: np.random.Generator, count: int, first_digit: int) -> list[str]:
    """``count`` distinct 8-digit ids starting with ``first_digit``, in random order."""
    values = rng.choice(10**7, size=count, replace=False)
    return [f"{first_digit}{v:07d}" for v in values]


def dicom_id(rng: np.random.Generator) -> str:
    """A MIMIC-style dicom_id: 40 hex digits in five dash-separated groups of eight."""
    return "-".join(f"{int(g):08x}" for g in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def study_dir(subject_id: str, study_id: str) -> str:
    """``files/pNN/pNNNNNNNN/sNNNNNNNN`` (relative, forward slashes)."""
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def image_path(subject_id: str, study_id: str, dicom: str) -> str:
    return f"{study_dir(subject_id, study_id)}/{dicom}.dcm"


def report_path(subject_id: str, study_id: str) -> str:
    return f"{study_dir(subject_id, study_id)}.txt"


def assign_splits(
    subject_ids: list[str], rng: np.random.Generator, fractions=(0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Split by subject (all studies of a subject in one split): train/validate/test in ``fractions``."""
    order = rng.permutation(len(subject_ids))
    n_train = int(round(fractions[0] * len(subject_ids)))
    n_val = int(round(fractions[1] * len(subject_ids)))
    names = np.array(["test"] * len(subject_ids), dtype=object)
    names[order[:n_train]] = "train"
    names[order[n_train : n_train + n_val]] = "validate"
    return dict(zip(subject_ids, names.tolist(), strict=True))


def _write(frame: pd.DataFrame, path: Path) -> None:
    # mtime=0 keeps the gzip header, and so the bytes, identical across runs
    frame.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def write_root_csvs(out: Path, images: list[dict], studies: list[dict], locations: list[dict]) -> None:
    """Write every root CSV from the per-image, per-study and per-finding records.

    Args:
        out: the dataset root.
        images: one dict per image with the metadata columns plus ``split`` and ``path``.
        studies: one dict per study with subject_id, study_id, the 14 label values and ``edema_severity``.
        locations: one dict per drawn finding with ``LOCATION_COLUMNS``.
    """
    image_frame = pd.DataFrame(images).sort_values(["subject_id", "study_id", "dicom_id"], kind="stable")
    study_frame = pd.DataFrame(studies).sort_values(["subject_id", "study_id"], kind="stable")
    _write(image_frame[["subject_id", "study_id", "dicom_id", "path"]], out / RECORD_LIST)
    study_paths = [study_dir(s, t) for s, t in zip(study_frame.subject_id, study_frame.study_id, strict=True)]
    _write(study_frame[["subject_id", "study_id"]].assign(path=study_paths), out / STUDY_LIST)
    _write(image_frame[list(METADATA_COLUMNS)], out / METADATA)
    _write(image_frame[["dicom_id", "study_id", "subject_id", "split"]], out / SPLIT)
    _write(study_frame[["subject_id", "study_id", *CHEXPERT_LABELS]], out / CHEXPERT)
    _write(study_frame[["subject_id", "study_id", "edema_severity"]], out / EDEMA_SEVERITY)
    location_frame = pd.DataFrame(locations, columns=list(LOCATION_COLUMNS))
    _write(
        location_frame.sort_values(["subject_id", "study_id", "dicom_id"], kind="stable"),
        out / FINDING_LOCATIONS,
    )
