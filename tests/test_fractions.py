"""Label-fraction subsampler: deterministic, patient-level, every finding keeps positives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radmi.data.fractions import select_patients, subsample_label_fraction
from radmi.errors import ManifestError

LABELS = ["Cardiomegaly", "Edema", "Pneumothorax", "Fracture"]


def _manifest(n_patients: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    prevalence = {"Cardiomegaly": 0.3, "Edema": 0.15, "Pneumothorax": 0.03, "Fracture": 0.0}
    for p in range(n_patients):
        split = "train" if p < 0.8 * n_patients else "test"
        for _ in range(rng.integers(1, 4)):  # 1-3 images per patient
            row = {"subject_id": f"1{p:07d}", "split": split}
            for name, prev in prevalence.items():
                row[name] = rng.choice([1.0, 0.0, -1.0, np.nan], p=[prev, 0.9 - prev, 0.05, 0.05])
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.loc[5, "Fracture"] = 1.0  # exactly one positive patient for a rare finding
    return frame


@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_patient_disjoint_and_positives_kept(fraction):
    frame = _manifest()
    sub = subsample_label_fraction(frame, fraction, seed=3, label_names=LABELS)
    train, sub_train = frame[frame.split == "train"], sub[sub.split == "train"]
    kept = set(sub_train.subject_id)
    # every image of a kept patient is kept, no image of another patient
    assert sub_train.index.tolist() == train.index[train.subject_id.isin(kept)].tolist()
    # other splits untouched
    assert sub[sub.split == "test"].equals(frame[frame.split == "test"])
    n_train_patients = train.subject_id.nunique()
    assert len(kept) >= round(fraction * n_train_patients)
    for name in LABELS:
        if (train[name] == 1.0).any():
            assert (sub_train[name] == 1.0).any(), name
    if fraction == 0.1:
        assert len(kept) == round(fraction * n_train_patients)


def test_deterministic_and_row_order_independent():
    frame = _manifest()
    a = select_patients(frame[frame.split == "train"], 0.1, seed=7, label_names=LABELS)
    shuffled = frame.sample(frac=1.0, random_state=1)
    b = select_patients(shuffled[shuffled.split == "train"], 0.1, seed=7, label_names=LABELS)
    c = select_patients(frame[frame.split == "train"], 0.1, seed=8, label_names=LABELS)
    assert a == b
    assert a != c


def test_stratified_by_rarest_positive_finding():
    frame = _manifest(n_patients=2000, seed=1)
    train = frame[frame.split == "train"]
    kept = set(select_patients(train, 0.1, seed=0, label_names=LABELS))
    positive = (train[LABELS] == 1.0).groupby(train.subject_id).any()
    # stratum by hand: the rarest positive finding (prevalences: Fracture < Pneumothorax < Edema < Cardiomegaly)
    stratum = pd.Series("none", index=positive.index)
    for name in ["Cardiomegaly", "Edema", "Pneumothorax", "Fracture"]:
        stratum[positive[name]] = name
    for name, members in stratum.groupby(stratum):
        n_kept = members.index.isin(list(kept)).sum()
        # +-1 for rounding, +1 for the patient step 1 may have drawn for the finding
        assert abs(n_kept - 0.1 * len(members)) <= 2.0, (name, n_kept, len(members))


def test_full_fraction_and_errors():
    frame = _manifest(50)
    assert subsample_label_fraction(frame, 1.0, label_names=LABELS).equals(frame)
    with pytest.raises(ValueError):
        select_patients(frame, 0.0, label_names=LABELS)
    with pytest.raises(ManifestError):
        select_patients(frame.drop(columns=["Edema"]), 0.5, label_names=LABELS)
