"""A small CheXpert-v1.0-small stand-in in the real layout, for the tests.

``write_chexpert(root)`` writes ``root/CheXpert-v1.0-small/`` with ``train.csv`` and ``valid.csv`` (columns
``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the 14 labels in CheXpert's own column order, values ``1.0``,
``0.0``, ``-1.0`` or blank) and 8-bit greyscale JPGs at ``train/patientNNNNN/studyN/viewN_frontal.jpg``. Each
study has a frontal image; every third one also a lateral. Cardiomegaly is a bright disc in the image, so a
classifier can learn it; the other labels are random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

#: CheXpert's CSV column order (Lung Opacity before Lung Lesion, unlike MIMIC-CXR's).
CHEXPERT_CSV_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FOLDER = "CheXpert-v1.0-small"


def _pixels(rng: np.random.Generator, positive: bool, size: tuple[int, int]) -> np.ndarray:
    pixels = rng.integers(0, 60, size=size).astype(np.uint8)
    if positive:
        rows, cols = np.mgrid[: size[0], : size[1]]
        pixels[(rows - size[0] * 0.55) ** 2 + (cols - size[1] * 0.5) ** 2 < (min(size) * 0.25) ** 2] = 220
    return pixels


def _rows(
    root: Path, part: str, patients: range, rng: np.random.Generator, size: tuple[int, int], studies: int
) -> list[dict]:
    rows = []
    for patient in patients:
        for study in range(1, studies + 1):
            positive = (patient + study) % 2 == 0
            views = [("view1_frontal", "Frontal", rng.choice(["AP", "PA"]))]
            if (patient + study) % 3 == 0:
                views.append(("view2_lateral", "Lateral", ""))
            for name, kind, projection in views:
                relative = f"{part}/patient{patient:05d}/study{study}/{name}.jpg"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_pixels(rng, positive, size)).save(root / relative, quality=95)
                row = {
                    "Path": f"{FOLDER}/{relative}",
                    "Sex": rng.choice(["Female", "Male"]),
                    "Age": int(rng.integers(20, 90)),
                    "Frontal/Lateral": kind,
                    "AP/PA": projection,
                }
                values = ["1.0", "0.0", "-1.0", ""] if part == "train" else ["1.0", "0.0"]
                row.update({label: rng.choice(values) for label in CHEXPERT_CSV_LABELS})
                row["Cardiomegaly"] = "1.0" if positive else "0.0"
                rows.append(row)
    return rows


def write_chexpert(
    root: str | Path,
    train_patients: int = 12,
    valid_patients: int = 4,
    studies: int = 2,
    size: tuple[int, int] = (40, 36),
    seed: int = 0,
) -> Path:
    """Write the stand-in under ``root``; returns the dataset folder ``root/CheXpert-v1.0-small``.

    Patients are numbered from 1 (train) and from 64541 (valid), as in the release.
    """
    dataset = Path(root) / FOLDER
    dataset.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    columns = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_CSV_LABELS]
    train = _rows(dataset, "train", range(1, train_patients + 1), rng, size, studies)
    valid = _rows(dataset, "valid", range(64541, 64541 + valid_patients), rng, size, 1)
    pd.DataFrame(train, columns=columns).to_csv(dataset / "train.csv", index=False)
    pd.DataFrame(valid, columns=columns).to_csv(dataset / "valid.csv", index=False)
    return dataset


def append_rows(dataset: Path, csv: str, rows: list[dict]) -> None:
    """Append rows (``Path`` + any columns; the rest blank) to one of the stand-in's CSVs."""
    frame = pd.read_csv(dataset / csv, dtype=str, keep_default_na=False)
    extra = pd.DataFrame(rows, dtype=str).reindex(columns=frame.columns).fillna("")
    pd.concat([frame, extra], ignore_index=True).to_csv(dataset / csv, index=False)
