"""A tiny MIMIC-CXR-layout tree for tests: 3 subjects, 4 studies, 6 images, reports and the official CSVs.

``make_mimic_tree(root, suffix=".dcm")`` writes::

    root/files/p10/p10000001/s50000001/<dicom_id>.dcm   (+ s50000001.txt beside the study folder)
    root/cxr-record-list.csv.gz, mimic-cxr-2.0.0-metadata.csv.gz, -split.csv.gz, -chexpert.csv.gz,
    mimic-cxr-2.0.0-edema-severity.csv.gz

and returns the images as a list of dicts (the ground truth the manifest builders must reproduce).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from dicom_factory import known_pixels, write_dicom, xray_dataset
from PIL import Image

from radmi.data.labels import CHEXPERT_LABELS

# (subject, study, view, split); two images share study 50000001 and two share 50000003
IMAGES = [
    ("10000001", "50000001", "PA", "train"),
    ("10000001", "50000001", "LATERAL", "train"),
    ("10000001", "50000002", "AP", "train"),
    ("10000002", "50000003", "PA", "validate"),
    ("10000002", "50000003", "LL", "validate"),
    ("11000003", "50000004", "AP", "test"),
]
# per-study CheXpert rows (study 50000004 has none: all blank); NaN = blank
_NAN = float("nan")
CHEXPERT_ROWS = {
    ("10000001", "50000001"): [_NAN, 1.0, 1.0, _NAN, -1.0, 1.0, _NAN, _NAN, 0.0, 0.0, 1.0, _NAN, _NAN, 1.0],
    ("10000001", "50000002"): [1.0] + [_NAN] * 13,
    ("10000002", "50000003"): [
        _NAN,
        _NAN,
        -1.0,
        0.0,
        1.0,
        -1.0,
        1.0,
        -1.0,
        _NAN,
        _NAN,
        0.0,
        _NAN,
        _NAN,
        _NAN,
    ],
}
EDEMA_ROWS = {("10000001", "50000001"): 2, ("10000002", "50000003"): 0}

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough.

 FINDINGS:

 The heart size is normal.  There is a small left pleural effusion.

 IMPRESSION:

 Small left pleural effusion.
"""


def dicom_id(index: int) -> str:
    """A MIMIC-style dicom_id: 40 hex characters in five dash-separated groups of eight."""
    digest = hashlib.sha1(f"image-{index}".encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def expected_rows() -> list[dict]:
    """The images with their ids, view, split, labels and edema severity (no paths)."""
    rows = []
    for index, (subject, study, view, split) in enumerate(IMAGES):
        labels = CHEXPERT_ROWS.get((subject, study), [_NAN] * 14)
        rows.append(
            {
                "subject_id": subject,
                "study_id": study,
                "dicom_id": dicom_id(index),
                "view": view,
                "split": split,
                **dict(zip(CHEXPERT_LABELS, labels, strict=True)),
                "edema_severity": float(EDEMA_ROWS.get((subject, study), _NAN)),
            }
        )
    return rows


def study_folder(subject: str, study: str) -> str:
    return f"files/p{subject[:2]}/p{subject}/s{study}"


def write_image(path: Path, view: str, suffix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jpg":
        Image.fromarray(known_pixels(8, 6, bits_stored=8).astype(np.uint8), mode="L").save(path)
    else:
        ds = xray_dataset(known_pixels(8, 6), view_position=view)
        write_dicom(path, ds, gzipped=suffix == ".dcm.gz")


def make_mimic_tree(
    root: Path,
    suffix: str = ".dcm",
    csvs: tuple[str, ...] = ("record", "metadata", "split", "chexpert", "edema"),
) -> list[dict]:
    """Write the tree (images with ``suffix``, reports) and the chosen official CSVs under ``root``."""
    rows = expected_rows()
    for row in rows:
        folder = root / study_folder(row["subject_id"], row["study_id"])
        write_image(folder / f"{row['dicom_id']}{suffix}", row["view"], suffix)
        folder.with_suffix(".txt").write_text(REPORT)
        row["image_path"] = str(folder / f"{row['dicom_id']}{suffix}")
        row["report_path"] = str(folder.with_suffix(".txt"))
    frame = pd.DataFrame(rows)
    if "record" in csvs:  # the official record list always names .dcm files
        path = frame.apply(lambda r: f"{study_folder(r.subject_id, r.study_id)}/{r.dicom_id}.dcm", axis=1)
        frame.assign(path=path)[["subject_id", "study_id", "dicom_id", "path"]].to_csv(
            root / "cxr-record-list.csv.gz", index=False
        )
    if "metadata" in csvs:
        meta = frame.rename(columns={"view": "ViewPosition"}).assign(Rows=8, Columns=6, StudyDate="21800101")
        meta[["dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns", "StudyDate"]].to_csv(
            root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False
        )
    if "split" in csvs:
        frame[["dicom_id", "study_id", "subject_id", "split"]].to_csv(
            root / "mimic-cxr-2.0.0-split.csv.gz", index=False
        )
    if "chexpert" in csvs:
        table = pd.DataFrame(
            [
                {"subject_id": s, "study_id": t, **dict(zip(CHEXPERT_LABELS, v, strict=True))}
                for (s, t), v in CHEXPERT_ROWS.items()
            ]
        )
        table.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    if "edema" in csvs:
        table = pd.DataFrame(
            [{"subject_id": s, "study_id": t, "edema_severity": v} for (s, t), v in EDEMA_ROWS.items()]
        )
        table.to_csv(root / "mimic-cxr-2.0.0-edema-severity.csv.gz", index=False)
    return rows
