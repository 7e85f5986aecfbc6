"""Patient-level splits and keyed-hash subject ids (``radmi.data.splits``), and the folder builder's use of
them and of label import (``radmi manifest folder --labels / --split-fractions / --salt-file``)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from dicom_factory import known_pixels, write_dicom, xray_dataset

from radmi.cli import main
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import build_folder_manifest, check_manifest, read_manifest
from radmi.data.splits import assign_splits, load_or_create_salt, parse_fractions, subject_ids
from radmi.errors import ManifestError, ReportError

PATIENTS = pd.Series([f"MRN{i:05d}" for i in range(2000)])


def test_subject_ids_are_keyed_hashes_not_a_sort_order():
    ids = subject_ids(PATIENTS, b"salt-a")
    assert ids.str.fullmatch(r"1\d{15}").all() and ids.nunique() == len(PATIENTS)
    assert subject_ids(PATIENTS, b"salt-a").equals(ids)  # deterministic for one salt
    assert (subject_ids(PATIENTS, b"salt-b") != ids).all()  # another salt: unlinkable ids
    # the id of a patient does not depend on who else is in the export
    assert subject_ids(PATIENTS[:10], b"salt-a").equals(ids[:10])
    assert not ids.is_monotonic_increasing  # not numbered in sorted PatientID order
    repeated = subject_ids(pd.Series(["A", "B", "A"]), b"s")
    assert repeated[0] == repeated[2] != repeated[1]
    with pytest.raises(ManifestError, match="salt must not be empty"):
        subject_ids(PATIENTS, b"")


def test_splits_are_per_patient_deterministic_and_stable_when_patients_are_added():
    subjects = subject_ids(PATIENTS, b"salt")
    splits = assign_splits(subjects, (0.8, 0.1, 0.1), seed=3)
    shares = splits.value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.04 and abs(shares["test"] - 0.1) < 0.03
    assert assign_splits(subjects, (0.8, 0.1, 0.1), seed=3).equals(splits)
    # new patients never move old ones
    grown = subject_ids(pd.concat([PATIENTS, pd.Series([f"NEW{i}" for i in range(500)])], ignore_index=True), b"salt")
    assert assign_splits(grown, (0.8, 0.1, 0.1), seed=3)[: len(PATIENTS)].equals(splits)
    # another seed: another assignment
    assert (assign_splits(subjects, (0.8, 0.1, 0.1), seed=4) != splits).mean() > 0.2
    # several rows of one patient share the split
    rows = pd.Series(np.repeat(subjects[:50].to_numpy(), 3))
    assert (assign_splits(rows, (0.5, 0.25, 0.25)).groupby(rows).nunique() == 1).all()
    # a zero fraction empties its split
    assert "validate" not in set(assign_splits(subjects, (0.9, 0.0, 0.1)))


@pytest.mark.parametrize("text", ["0.8,0.1", "0.8,0.1,0.2", "a,b,c", "1.2,-0.1,-0.1"])
def test_parse_fractions_rejects_bad_values(text):
    with pytest.raises(ManifestError, match="split fractions must be"):
        parse_fractions(text)
    assert parse_fractions("0.8, 0.1, 0.1") == (0.8, 0.1, 0.1)


def test_salt_file_is_created_private_then_reused(tmp_path):
    path = tmp_path / "keys" / "radmi.salt"
    salt, created = load_or_create_salt(path)
    assert created and len(salt) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_salt(path) == (salt, False)
    (tmp_path / "empty.salt").write_text("\n")
    with pytest.raises(ManifestError, match="empty"):
        load_or_create_salt(tmp_path / "empty.salt")


# ---- the folder builder -------------------------------------------------------------------------------
REPORTS = {
    "s1": "FINDINGS: Small left pleural effusion. No pneumothorax.\n",
    "s2": "IMPRESSION: Normal chest.\n",
    "s3": "IMPRESSION: Mild cardiomegaly. Possible pneumonia.\n",
}


@pytest.fixture
def export(tmp_path):
    """Six images of three studies of three patients (one image duplicated), and a reports CSV keyed by UID."""
    images = tmp_path / "export"
    uids = {}
    for index, (study, patient) in enumerate([("s1", "P-1"), ("s1", "P-1"), ("s2", "P-2"), ("s3", "P-3"), ("s3", "P-3")]):
        ds = xray_dataset(known_pixels(4, 4), view_position="PA")
        uids.setdefault(study, ds.StudyInstanceUID)
        ds.StudyInstanceUID, ds.PatientID = uids[study], patient
        (images / study).mkdir(parents=True, exist_ok=True)
        write_dicom(images / study / f"img{index}.dcm", ds)
        if index == 4:  # the same image sent twice, under another name
            write_dicom(images / study / "copy_of_img4.dcm", ds)
    reports = pd.DataFrame({"study_id": [uids[s] for s in REPORTS], "report": list(REPORTS.values())})
    reports.to_csv(tmp_path / "reports.csv", index=False)
    return images, tmp_path / "reports.csv", uids


def test_folder_labels_from_reports_hashed_subjects_and_fraction_splits(export, tmp_path):
    images, reports, uids = export
    out = tmp_path / "out" / "m.csv"
    kwargs = dict(progress=False, salt="secret", label_reports=True, split_fractions=(0.5, 0.25, 0.25), seed=1)
    manifest = build_folder_manifest(images, reports, out, **kwargs)
    assert len(manifest) == 5 and manifest["dicom_id"].is_unique  # the copy is kept once
    assert check_manifest(out, progress=False).ok
    study_of = dict(zip(pd.read_csv(out.parent / "m_studies.csv", dtype=str)["StudyInstanceUID"],
                        pd.read_csv(out.parent / "m_studies.csv", dtype=str)["study_id"], strict=True))  # fmt: skip
    rows = read_manifest(out).set_index("study_id")
    s1, s3 = rows.loc[[study_of[uids["s1"]]]].iloc[0], rows.loc[[study_of[uids["s3"]]]].iloc[0]
    assert s1["Pleural Effusion"] == 1.0 and s1["Pneumothorax"] == 0.0 and np.isnan(s1["No Finding"])
    assert s3["Cardiomegaly"] == 1.0 and s3["Pneumonia"] == -1.0
    assert manifest.groupby("subject_id")["split"].nunique().max() == 1
    assert manifest["subject_id"].str.len().eq(16).all()
    expected_ids = subject_ids(pd.Series(["P-1", "P-3"]), b"secret").tolist()
    assert set(expected_ids) <= set(manifest["subject_id"])
    # the same salt and seed on a later run: the same ids and splits (stability over new patients: above)
    again = build_folder_manifest(images, reports, tmp_path / "again.csv", **kwargs)
    assert again[["subject_id", "split"]].equals(manifest[["subject_id", "split"]])
    for written in out.parent.rglob("*"):  # no PatientID anywhere in the output
        assert written.is_dir() or "P-1" not in written.read_text()


def test_folder_label_import_and_its_errors(export, tmp_path):
    images, reports, uids = export
    labels = pd.DataFrame({"study_id": [uids["s1"], uids["s2"]], **{n: ["", ""] for n in CHEXPERT_LABELS}})
    labels.loc[0, "Edema"], labels.loc[1, "No Finding"] = "1", "1.0"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "m.csv"
    manifest = build_folder_manifest(images, reports, out, progress=False, salt="x", labels_csv=tmp_path / "labels.csv")
    by_study = read_manifest(out).drop_duplicates("study_id").set_index("study_id")
    assert sorted(by_study["Edema"].fillna(9).tolist()) == [1.0, 9.0, 9.0]  # s3 has no row: blank
    assert by_study["No Finding"].eq(1.0).sum() == 1 and len(manifest) == 5

    bad = labels.copy()
    bad.loc[1, "Pneumothorax"] = "2"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ManifestError, match=r"bad.csv \(row 1\): column 'Pneumothorax': '2' is not 1, 0, -1"):
        build_folder_manifest(images, reports, out, progress=False, salt="x", labels_csv=tmp_path / "bad.csv")
    labels.drop(columns="Fracture").to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(ManifestError, match=r"nocol.csv: missing column\(s\) \['Fracture'\]"):
        build_folder_manifest(images, reports, out, progress=False, salt="x", labels_csv=tmp_path / "nocol.csv")
    pd.concat([labels, labels.iloc[[0]]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ManifestError, match=r"dup.csv \(row 2\): duplicate study_id"):
        build_folder_manifest(images, reports, out, progress=False, salt="x", labels_csv=tmp_path / "dup.csv")


def test_folder_report_errors_name_the_row(export, tmp_path):
    images, reports, uids = export
    table = pd.read_csv(reports, dtype=str)
    empty = table.copy()
    empty.loc[1, "report"] = "  "
    empty.to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ReportError, match=r"empty.csv \(row 1\): empty report"):
        build_folder_manifest(images, tmp_path / "empty.csv", tmp_path / "m.csv", progress=False, salt="x")
    pd.concat([table, table.iloc[[2]]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ManifestError, match=r"dup.csv \(row 3\): duplicate study_id"):
        build_folder_manifest(images, tmp_path / "dup.csv", tmp_path / "m.csv", progress=False, salt="x")
    raw = reports.read_bytes().replace(b"Normal chest", "Normal ch\xe9st".encode("latin-1"))
    (tmp_path / "latin.csv").write_bytes(raw)
    with pytest.raises(ReportError, match=r"latin.csv \(row 1\): column 'report' is not UTF-8"):
        build_folder_manifest(images, tmp_path / "latin.csv", tmp_path / "m.csv", progress=False, salt="x")
    table.rename(columns={"report": "text"}).to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(ManifestError, match=r"nocol.csv: missing column\(s\) \['report'\]"):
        build_folder_manifest(images, tmp_path / "nocol.csv", tmp_path / "m.csv", progress=False, salt="x")


def test_cli_folder_salt_file_fractions_and_old_split_option(export, tmp_path, capsys, monkeypatch):
    images, reports, _ = export
    salt_file = tmp_path / "private" / "salt"
    args = ["manifest", "folder", "--images", str(images), "--reports", str(reports)]
    out = tmp_path / "m.csv"
    assert main([*args, "--out", str(out), "--label-reports", "--split-fractions", "0.6,0.2,0.2",
                 "--seed", "2", "--salt-file", str(salt_file)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"created {salt_file}" in printed and salt_file.is_file()
    first = pd.read_csv(out, dtype=str)
    assert main([*args, "--out", str(out), "--label-reports", "--split-fractions", "0.6,0.2,0.2",
                 "--seed", "2", "--salt-file", str(salt_file)]) == 0  # fmt: skip
    assert "created" not in capsys.readouterr().out
    assert pd.read_csv(out, dtype=str)[["subject_id", "split"]].equals(first[["subject_id", "split"]])
    # --salt TEXT equals a salt file holding TEXT
    assert main([*args, "--out", str(tmp_path / "t.csv"), "--salt", salt_file.read_text().strip()]) == 0
    assert pd.read_csv(tmp_path / "t.csv", dtype=str)["subject_id"].equals(first["subject_id"])
    # the old fixed split still works; the default salt file honours RADMI_SALT_FILE
    monkeypatch.setenv("RADMI_SALT_FILE", str(tmp_path / "env.salt"))
    assert main([*args, "--out", str(tmp_path / "old.csv"), "--split", "test"]) == 0
    assert (pd.read_csv(tmp_path / "old.csv")["split"] == "test").all() and (tmp_path / "env.salt").is_file()
    assert main([*args, "--out", str(out), "--split", "test", "--split-fractions", "0.8,0.1,0.1"]) == 1
    assert main([*args, "--out", str(out), "--split-fractions", "0.8,0.1"]) == 1
    assert "fractions" in capsys.readouterr().err
