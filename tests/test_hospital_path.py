"""Hospital data to a fine-tuned classifier, end to end on a tiny demo dataset made to look like a hospital export.

The demo's DICOM files are copied into one flat folder (no MIMIC layout) and its reports into a reports.csv
keyed by StudyInstanceUID, with no labels and no split: what a PACS export gives. Then the documented path
(README, "Run it on a hospital export"):

    radmi manifest folder --label-reports --split-fractions ... --salt-file ...
    radmi prepare -> radmi finetune -> radmi evaluate

and the labeler's labels are compared with the demo generator's CheXpert CSV (the ground truth it wrote).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from radmi.cli import main
from radmi.data.demo import generate
from radmi.data.labels import CHEXPERT_LABELS

STUDIES, SIZE, SEED = 40, 64, 5
TINY = ["--set", "image_size=32", "--set", "batch_size=8", "--set",
        'encoder={"backbone": "resnet18", "embed_dim": 16, "local_stride": 16}']  # fmt: skip


def make_hospital_export(demo: Path, export: Path) -> tuple[Path, Path, pd.DataFrame]:
    """A flat DICOM folder and reports.csv (StudyInstanceUID, report) from a demo dataset.

    Returns:
        (images folder, reports CSV, the demo's CheXpert rows indexed by StudyInstanceUID).
    """
    images = export / "dicom"
    images.mkdir(parents=True)
    uid_of_study, rows = {}, []
    for index, path in enumerate(sorted(demo.glob("files/p*/p*/s*/*.dcm"))):
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        study = int(path.parent.name[1:])
        uid_of_study[study] = header.StudyInstanceUID
        shutil.copy(path, images / f"IMG{index:05d}.dcm")
    for study, uid in uid_of_study.items():
        report = next(demo.glob(f"files/p*/p*/s{study}.txt")).read_text(encoding="utf-8")
        rows.append({"StudyInstanceUID": uid, "report": report})
    reports = export / "reports.csv"
    pd.DataFrame(rows).to_csv(reports, index=False)
    truth = pd.read_csv(demo / "mimic-cxr-2.0.0-chexpert.csv.gz")
    truth["StudyInstanceUID"] = truth["study_id"].map(uid_of_study)
    return images, reports, truth.set_index("StudyInstanceUID")[list(CHEXPERT_LABELS)]


def agreement(labels: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Per finding, the share of studies whose value (1/0/-1/blank) equals the truth's."""
    truth = truth.loc[labels.index]
    same = (labels.to_numpy() == truth.to_numpy()) | (np.isnan(labels.to_numpy()) & np.isnan(truth.to_numpy()))
    return pd.Series(same.mean(axis=0), index=list(CHEXPERT_LABELS))


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    root = tmp_path_factory.mktemp("hospital")
    generate(root / "demo", STUDIES, seed=SEED, size=SIZE, compress="none", progress=False)
    return root, *make_hospital_export(root / "demo", root / "export")


def test_manifest_from_export_has_labels_splits_and_no_patient_ids(hospital, capsys):
    root, images, reports, truth = hospital
    out = root / "work" / "manifest.csv"
    salt = root / "private" / "radmi.salt"
    command = ["manifest", "folder", "--images", str(images), "--reports", str(reports), "--out", str(out),
               "--id-column", "StudyInstanceUID", "--label-reports", "--split-fractions", "0.5,0.25,0.25",
               "--seed", "0", "--salt-file", str(salt)]  # fmt: skip
    assert main(command) == 0
    assert f"created {salt}" in capsys.readouterr().out
    manifest = pd.read_csv(out, dtype={"subject_id": str, "study_id": str})
    assert set(manifest["split"]) == {"train", "validate", "test"}
    assert manifest.groupby("subject_id")["split"].nunique().max() == 1  # no patient in two splits
    # the labeler's labels against the demo's ground truth, per study
    studies = pd.read_csv(out.parent / "manifest_studies.csv", dtype=str).set_index("study_id")
    labels = manifest.drop_duplicates("study_id").set_index("study_id")[list(CHEXPERT_LABELS)]
    labels.index = studies.loc[labels.index, "StudyInstanceUID"]
    assert len(labels) == STUDIES
    per_finding = agreement(labels, truth)
    assert per_finding.min() >= 0.85 and per_finding.mean() >= 0.97, per_finding.to_string()
    # no PatientID (demo ids look like RD0123ABCD) in anything written
    patient_ids = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in images.glob("*.dcm")}
    for written in out.parent.rglob("*"):
        if written.is_file():
            text = written.read_text(encoding="utf-8")
            assert not any(pid in text for pid in patient_ids), written


def test_export_to_finetuned_and_evaluated_classifier(hospital, tmp_path):
    root, images, reports, _ = hospital
    manifest, cache, run = tmp_path / "manifest.csv", tmp_path / "cache", tmp_path / "run"
    assert main(["manifest", "folder", "--images", str(images), "--reports", str(reports), "--out", str(manifest),
                 "--id-column", "StudyInstanceUID", "--label-reports", "--split-fractions", "0.5,0.25,0.25",
                 "--salt", "test-salt"]) == 0  # fmt: skip
    assert main(["prepare", str(manifest), "--out", str(cache), "--size", "32", "--max-length", "32",
                 "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    assert main(["finetune", "--data", str(cache), "--out", str(run), "--epochs", "1", *TINY]) == 0
    assert (run / "models" / "model.pt").is_file()
    assert main(["evaluate", str(run), "--data", str(cache), "--split", "test", "--bootstrap", "20"]) == 0
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["run"]["split"] == "test" and metrics["n_samples"] > 0
