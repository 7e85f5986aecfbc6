"""The CheXpert manifest builder: ``build_chexpert_manifest`` for a CheXpert-v1.0 or CheXpert-v1.0-small folder.

CheXpert (Stanford) ships the 14 findings of MIMIC-CXR's labeller but **no reports**, so every row gets an empty
``report_path``: ``radmi prepare``, ``finetune``, ``evaluate`` and the classification part of ``benchmark`` use
it, and pretraining refuses it (:func:`radmi.data.source.require_reports`).

What is read: ``train.csv``, ``valid.csv`` and, where present, ``test.csv`` at the dataset root, columns ``Path``
(e.g. ``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``), ``Frontal/Lateral``, ``AP/PA`` and
the 14 labels (``Sex`` and ``Age`` are not kept). Everything is vectorized pandas; no image is opened, only one
``stat`` per row checks that the file exists and is a regular file (or a link to one): a missing file, a dangling
link, a link loop or a special file (FIFO, socket, device) is a bad row with that reason
(:func:`radmi.transforms.file_checks.file_problem`; a FIFO is never opened).

Ids, from the path: ``subject_id`` = the patient number (``00001``), ``study_id`` = patient * 1000 + study
(``00001001``: CheXpert numbers studies per patient, so the study folder alone is not unique),
``dicom_id`` = ``patient00001_study1_view1_frontal``.

Split policy: ``valid.csv`` (and ``test.csv``) -> ``test``; ``train.csv`` -> ``train``, except the patients
whose hash falls below ``val_fraction``, which go to ``validate`` (all their images; see :func:`hash_fraction`).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data.labels import CHEXPERT_LABELS, invalid_label_values
from radmi.data.manifest_schema import DATASET_ROOTS_ATTR, EDEMA_COLUMN, MANIFEST_COLUMNS, read_source_csv
from radmi.data.splits import hash_fraction
from radmi.errors import ManifestError
from radmi.transforms.file_checks import file_problem

__all__ = [
    "CHEXPERT_CSVS",
    "CHEXPERT_VAL_FRACTION",
    "build_chexpert_manifest",
    "hash_fraction",
]

logger = logging.getLogger(__name__)

#: Source CSV -> the split its rows get. The official validation set is the test split (the test set proper
#: was held back by Stanford; where a ``test.csv`` is present its rows are test rows too).
CHEXPERT_CSVS: dict[str, str] = {"train.csv": "train", "valid.csv": "test", "test.csv": "test"}
#: Fraction of the training *patients* moved to the validation split.
CHEXPERT_VAL_FRACTION = 0.05
_VAL_SALT = "radmi-chexpert-validate"

# optional dataset folder, then train|valid|test/patientNNNNN/studyN/<view file>.jpg|png
_PATH = (
    r"^(?:[^/]+/)?(?P<relative>(?P<part>train|valid|test)/patient(?P<patient>\d+)/study(?P<study>\d+)/"
    r"(?P<image>[^/]+?)\.(?:jpg|jpeg|png))$"
)
_VIEW_COLUMNS = ("Frontal/Lateral", "AP/PA")
#: Studies per patient must stay below this for ``study_id = patient * 1000 + study`` to be unique.
_STUDIES_PER_PATIENT = 1000
_ON_ERROR = ("raise", "skip")


class _BadRows:
    """Bad source rows: raise the first one (``on_error="raise"``) or log and count each one (``"skip"``)."""

    def __init__(self, on_error: str, skipped: list[dict] | None) -> None:
        self.on_error = on_error
        self.skipped = skipped if skipped is not None else []

    def handle(self, frame: pd.DataFrame, bad: pd.Series, reasons: pd.Series, csv: Path) -> pd.DataFrame:
        """``frame`` without the rows where ``bad`` is True (``reasons`` says why, per row)."""
        if not bad.any():
            return frame
        rows = np.flatnonzero(bad.to_numpy())
        if self.on_error == "raise":
            first = int(rows[0])
            raise ManifestError(f"{reasons.iloc[first]} (CSV line {first + 2})", path=csv, row=first)
        for row in rows:
            reason = str(reasons.iloc[row])
            logger.warning("skipped %s row %d: %s", csv.name, row, reason)
            self.skipped.append({"file": str(csv), "row": int(row), "reason": reason})
        return frame[~bad.to_numpy()]


def _label_problems(frame: pd.DataFrame) -> pd.Series:
    """Per row, why its labels are bad: the first column whose value is not 1, 0, -1 or blank ('' if none)."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    for name in reversed(CHEXPERT_LABELS):  # the last assignment wins: the first bad column is named
        text = frame[name].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = (np.isnan(values) & (text != "").to_numpy()) | invalid_label_values(values)
        if bad.any():
            reasons[bad] = (
                f"column '{name}': unknown label value '" + text[bad] + "' (allowed 1.0, 0.0, -1.0 or blank)"
            )
    return reasons


def _view(frame: pd.DataFrame) -> pd.Series:
    """``LATERAL`` for lateral images, else ``AP``/``PA`` from the ``AP/PA`` column, else '' (unknown)."""
    kind = frame["Frontal/Lateral"].fillna("").astype(str).str.strip().str.lower()
    projection = frame["AP/PA"].fillna("").astype(str).str.strip().str.upper()
    view = projection.where(projection.isin(("AP", "PA")), "")
    return view.where(kind != "lateral", "LATERAL")


def _read_csv(root: Path, name: str, bad_rows: _BadRows, check_images: bool) -> pd.DataFrame:
    """The records of one official CSV: ids, image path, view, frontal flag, labels; bad rows raised or dropped.

    Bad rows, each with its reason: an unknown label value, a path not in CheXpert's layout, an image file
    that is missing, a dangling link, a link loop or a special file (``check_images``), a study number >= 1000,
    a path listed twice.
    """
    csv = root / name
    frame = read_source_csv(csv, ["Path", *_VIEW_COLUMNS, *CHEXPERT_LABELS], check_ids=False)
    frame = frame.reset_index(drop=True)
    paths = frame["Path"].fillna("").astype(str).str.strip().str.replace("\\", "/", regex=False)
    parts = paths.str.extract(_PATH)
    reasons = _label_problems(frame)
    unparsed = parts["part"].isna()
    reasons[unparsed] = (
        "path '" + paths[unparsed] + "' is not <folder>/train|valid|test/patientN/studyN/<image>.jpg"
    )
    bad = reasons != ""
    image_paths = str(root) + "/" + parts["relative"].fillna("")
    too_many = ~bad & (pd.to_numeric(parts["study"], errors="coerce") >= _STUDIES_PER_PATIENT)
    reasons[too_many] = f"study number >= {_STUDIES_PER_PATIENT} (radmi's study ids would collide)"
    bad |= too_many
    dicom_id = "patient" + parts["patient"] + "_study" + parts["study"] + "_" + parts["image"]
    duplicated = ~bad & dicom_id.duplicated(keep="first")
    reasons[duplicated] = "image path '" + paths[duplicated] + "' is listed twice"
    bad |= duplicated
    if check_images:  # one stat per good row (lstat/readlink only for the bad ones); no image is opened
        candidates = np.flatnonzero(~bad.to_numpy())
        checked = image_paths.to_numpy()[candidates]
        problems = pd.Series([file_problem(p, missing="image file not found") for p in checked], dtype=object)
        found = problems.isna().to_numpy()
        unusable = pd.Series(False, index=frame.index)
        unusable.iloc[candidates[~found]] = True
        reasons[unusable] = (problems[~found] + ": " + checked[~found]).to_numpy()
        bad |= unusable
    records = pd.DataFrame(
        {
            "patient": parts["patient"],
            "study": parts["study"],
            "dicom_id": dicom_id,
            "image_path": image_paths,
            "view": _view(frame),
            "frontal": frame["Frontal/Lateral"].fillna("").astype(str).str.strip().str.lower() == "frontal",
            "split": CHEXPERT_CSVS[name],
        }
    )
    for label in CHEXPERT_LABELS:
        records[label] = pd.to_numeric(frame[label], errors="coerce").astype(np.float64)
    return bad_rows.handle(records, bad, reasons, csv)


def build_chexpert_manifest(
    root: str | PathLike,
    frontal_only: bool = False,
    val_fraction: float = CHEXPERT_VAL_FRACTION,
    check_images: bool = True,
    on_error: str = "raise",
    skipped: list[dict] | None = None,
) -> pd.DataFrame:
    """Manifest of a CheXpert-v1.0(-small) folder, with absolute image paths and no reports.

    The returned table's ``attrs["dataset_roots"]`` is ``[root]``: ``write_manifest`` writes it beside the
    manifest (``M.roots.json``) and ``radmi prepare`` refuses a row outside it.

    Args:
        root: the dataset folder holding ``train.csv``, ``valid.csv`` (``test.csv`` optional) and ``train/``,
            ``valid/``. The CSVs' paths start with the dataset's folder name, which is ignored (the folder may
            be renamed or moved).
        frontal_only: keep the images CheXpert marks ``Frontal`` (AP, PA or unknown projection).
        val_fraction: fraction of the training patients moved to ``validate`` (0 keeps them all in ``train``).
        check_images: check that every image file exists and is a regular file or a link to one (one
            ``stat`` per row; no image is opened): a dangling link, a link loop or a FIFO, socket or device is a
            bad row with that reason.
        on_error: ``raise`` on the first bad row (unknown label value, unparsable path, missing image,
            duplicate path); ``skip`` logs each one (file, row, reason) and drops it.
        skipped: a list to which each skipped row is appended as ``{"file", "row", "reason"}`` (``row`` =
            0-based data row of the CSV), for exact counts.

    Raises:
        ManifestError: naming the CSV, the row and the reason (bad data in ``raise`` mode, a missing folder,
            CSV or column).
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ManifestError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise ManifestError("CheXpert folder not found", path=root)
    names = [name for name in CHEXPERT_CSVS if (root / name).is_file()]
    if "train.csv" not in names and "valid.csv" not in names:
        raise ManifestError("no train.csv or valid.csv: not a CheXpert-v1.0(-small) folder", path=root)
    bad_rows = _BadRows(on_error, skipped)
    records = pd.concat([_read_csv(root, name, bad_rows, check_images) for name in names], ignore_index=True)
    duplicated = records["dicom_id"].duplicated(keep="first")
    if duplicated.any():  # CheXpert's patient numbers never repeat across train/valid/test
        first = records.loc[duplicated, "dicom_id"].iloc[0]
        raise ManifestError(
            f"{first} is in two of the CSVs (a patient number is in two of train/valid/test)", path=root
        )

    patient = records["patient"].astype(np.int64)
    records["subject_id"] = records["patient"]
    study_id = patient * _STUDIES_PER_PATIENT + records["study"].astype(np.int64)
    records["study_id"] = study_id.map("{:08d}".format)
    if val_fraction > 0:
        train = records["split"] == "train"
        patients = pd.unique(records.loc[train, "patient"])
        to_validate = patients[hash_fraction(patients, _VAL_SALT) < val_fraction]
        records.loc[train & records["patient"].isin(to_validate), "split"] = "validate"
    if frontal_only:
        records = records[records["frontal"]]
    records["report_path"] = ""  # CheXpert has no reports
    records[EDEMA_COLUMN] = np.nan
    if skipped:
        logger.info("CheXpert manifest: %d images kept, %d rows skipped", len(records), len(skipped))
    manifest = records.loc[:, list(MANIFEST_COLUMNS)].reset_index(drop=True)
    manifest.attrs[DATASET_ROOTS_ATTR] = [str(root)]  # write_manifest writes it beside the manifest
    return manifest
