"""``radmi manifest chexpert`` / ``build_chexpert_manifest`` on a CheXpert-v1.0-small stand-in in the release's
layout, bad rows included; a manifest without reports through prepare -> finetune -> evaluate, and the refusal
to pretrain on it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from chexpert_factory import CHEXPERT_CSV_LABELS, FOLDER, append_rows, write_chexpert

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import MANIFEST_COLUMNS, build_chexpert_manifest, read_manifest, write_manifest
from radmi.data.manifest_chexpert import hash_fraction
from radmi.errors import CacheError, ManifestError


@pytest.fixture
def chexpert(tmp_path):
    return write_chexpert(tmp_path / "data")


def test_ids_views_labels_and_splits_come_from_the_official_csvs(chexpert):
    manifest = build_chexpert_manifest(chexpert)
    train = pd.read_csv(chexpert / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(chexpert / "valid.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == len(train) + len(valid) and list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert manifest["dicom_id"].is_unique and (manifest["report_path"] == "").all()

    first = manifest.iloc[0]
    assert (first["subject_id"], first["study_id"], first["dicom_id"]) == (
        "00001",
        "00001001",
        "patient00001_study1_view1_frontal",
    )
    assert first["image_path"] == str(chexpert / "train" / "patient00001" / "study1" / "view1_frontal.jpg")
    # study ids: patient * 1000 + study, unique across patients (CheXpert numbers studies per patient)
    assert manifest.groupby("study_id")["subject_id"].nunique().max() == 1
    # views: Lateral -> LATERAL, Frontal -> the AP/PA column
    source = pd.concat([train, valid], ignore_index=True)
    expected_view = np.where(source["Frontal/Lateral"] == "Lateral", "LATERAL", source["AP/PA"])
    assert manifest["view"].tolist() == expected_view.tolist()
    # labels by name, whatever the CSV's column order (CheXpert puts Lung Opacity before Lung Lesion)
    for label in ("Lung Opacity", "Lung Lesion", "Cardiomegaly"):
        values = pd.to_numeric(source[label]).to_numpy()
        assert np.array_equal(manifest[label].to_numpy(), values, equal_nan=True), label
    assert set(CHEXPERT_CSV_LABELS) == set(CHEXPERT_LABELS)

    # splits: valid.csv -> test; train patients hashed into validate (5%) or train, whole patients
    assert set(manifest.loc[manifest["image_path"].str.contains("/valid/"), "split"]) == {"test"}
    in_train = manifest[manifest["image_path"].str.contains("/train/")]
    draw = dict(
        zip(
            in_train["subject_id"],
            hash_fraction(in_train["subject_id"], "radmi-chexpert-validate"),
            strict=True,
        )
    )
    expected = ["validate" if draw[s] < 0.05 else "train" for s in in_train["subject_id"]]
    assert in_train["split"].tolist() == expected
    assert manifest.groupby("subject_id")["split"].nunique().max() == 1


def test_validation_fraction_is_deterministic_and_patient_level(chexpert):
    one = build_chexpert_manifest(chexpert, val_fraction=0.3)
    two = build_chexpert_manifest(chexpert, val_fraction=0.3)
    assert one.equals(two)
    validate = one[one["split"] == "validate"]
    assert 0 < validate["subject_id"].nunique() < 12
    assert set(one.loc[one["split"] == "train", "subject_id"]).isdisjoint(validate["subject_id"])
    assert set(build_chexpert_manifest(chexpert, val_fraction=0.0)["split"]) == {"train", "test"}


def test_frontal_only_and_a_renamed_dataset_folder(chexpert, tmp_path):
    frontal = build_chexpert_manifest(chexpert, frontal_only=True)
    assert len(frontal) and set(frontal["view"]) <= {"AP", "PA"}
    assert frontal["dicom_id"].str.endswith("_frontal").all()
    # the CSVs say CheXpert-v1.0-small/...; a moved or renamed folder still works
    moved = chexpert.rename(tmp_path / "chexpert-small-copy")
    manifest = build_chexpert_manifest(moved)
    assert manifest["image_path"].str.startswith(str(moved) + "/").all()


def test_test_csv_is_read_where_present(chexpert):
    row = {"Path": f"{FOLDER}/valid/patient64541/study1/view1_frontal.jpg"}
    test_csv = pd.read_csv(chexpert / "valid.csv", dtype=str, keep_default_na=False).iloc[:1]
    (chexpert / "test" / "patient64741" / "study1").mkdir(parents=True)
    (chexpert / "test" / "patient64741" / "study1" / "view1_frontal.jpg").write_bytes(
        (chexpert / row["Path"].split("/", 1)[1]).read_bytes()
    )
    test_csv.assign(Path="test/patient64741/study1/view1_frontal.jpg").to_csv(
        chexpert / "test.csv", index=False
    )
    manifest = build_chexpert_manifest(chexpert)
    assert manifest.loc[manifest["subject_id"] == "64741", "split"].tolist() == ["test"]


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (
            {"Path": f"{FOLDER}/train/patient00001/study1/view1_frontal.jpg", "Edema": "2.0"},
            "column 'Edema': unknown label value '2.0'",
        ),
        (
            {"Path": f"{FOLDER}/train/patient00099/study1/view1_frontal.jpg", "Edema": "yes"},
            "column 'Edema': unknown label value 'yes'",
        ),
        (
            {"Path": f"{FOLDER}/train/patient00099/study1/view1_frontal.jpg", "Frontal/Lateral": "Frontal"},
            "image file not found",
        ),
        (
            {"Path": f"{FOLDER}/train/p99/view1.jpg"},
            "is not <folder>/train|valid|test/patientN/studyN/<image>.jpg",
        ),
        ({"Path": f"{FOLDER}/train/patient00001/study1/view1_frontal.jpg"}, "is listed twice"),
    ],
)
def test_bad_rows_name_the_csv_and_row_and_are_counted_in_skip_mode(chexpert, bad_row, message, caplog):
    rows = len(pd.read_csv(chexpert / "train.csv"))
    append_rows(chexpert, "train.csv", [bad_row])
    with pytest.raises(ManifestError, match=rf"train\.csv \(row {rows}\): .*{message.replace('|', '.')}"):
        build_chexpert_manifest(chexpert)
    with pytest.raises(ManifestError, match=rf"CSV line {rows + 2}"):  # the line a spreadsheet shows
        build_chexpert_manifest(chexpert)

    skipped: list[dict] = []
    with caplog.at_level(logging.WARNING):
        manifest = build_chexpert_manifest(chexpert, on_error="skip", skipped=skipped)
    assert [(item["row"], item["file"].endswith("train.csv")) for item in skipped] == [(rows, True)]
    assert message in skipped[0]["reason"]
    assert len(manifest) == len(build_chexpert_manifest(write_chexpert(chexpert.parent.parent / "clean")))
    assert f"row {rows}" in caplog.text


def test_several_bad_rows_are_all_counted(chexpert):
    good = len(build_chexpert_manifest(chexpert))
    append_rows(
        chexpert,
        "valid.csv",
        [
            {"Path": f"{FOLDER}/valid/patient70000/study1/view1_frontal.jpg"},  # missing image
            {"Path": f"{FOLDER}/valid/patient64541/study1/view1_frontal.jpg", "Cardiomegaly": "-2"},
        ],
    )
    append_rows(
        chexpert,
        "train.csv",
        [{"Path": f"{FOLDER}/train/patient00001/study1/view1_frontal.jpg", "Fracture": "u"}],
    )
    skipped: list[dict] = []
    manifest = build_chexpert_manifest(chexpert, on_error="skip", skipped=skipped)
    assert len(skipped) == 3 and len(manifest) == good
    assert sorted(item["file"].rsplit("/", 1)[-1] for item in skipped) == [
        "train.csv",
        "valid.csv",
        "valid.csv",
    ]


def test_missing_folder_csv_or_column(tmp_path, chexpert):
    with pytest.raises(ManifestError, match="CheXpert folder not found"):
        build_chexpert_manifest(tmp_path / "nowhere")
    with pytest.raises(ManifestError, match="no train.csv or valid.csv"):
        build_chexpert_manifest(tmp_path)
    pd.read_csv(chexpert / "train.csv").drop(columns="AP/PA").to_csv(chexpert / "train.csv", index=False)
    with pytest.raises(ManifestError, match=r"train\.csv: missing column\(s\) \['AP/PA'\]"):
        build_chexpert_manifest(chexpert)


def test_manifest_without_reports_validates_and_checks_clean(chexpert, tmp_path, capsys):
    from radmi.cli import main

    out = tmp_path / "chexpert.csv"
    assert main(["manifest", "chexpert", str(chexpert), "--out", str(out), "--val-fraction", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "validate" in printed and "test" in printed
    assert (pd.read_csv(out, dtype=str, keep_default_na=False)["report_path"] == "").all()
    assert (read_manifest(out)["report_path"] == "").all()  # empty stays empty, not the manifest's folder
    assert main(["manifest", "check", str(out)]) == 0

    append_rows(
        chexpert,
        "train.csv",
        [{"Path": f"{FOLDER}/train/patient00001/study1/view1_frontal.jpg", "Edema": "2"}],
    )
    assert main(["manifest", "chexpert", str(chexpert), "--out", str(out)]) == 1
    assert "train.csv (row" in capsys.readouterr().err
    assert main(["manifest", "chexpert", str(chexpert), "--out", str(out), "--skip-bad"]) == 0
    assert "skipped 1: 1 column 'Edema'" in capsys.readouterr().out


def test_prepare_keeps_rows_without_reports_and_pretraining_refuses_them(chexpert, tmp_path, capsys):
    from radmi.cli import main
    from radmi.data.cache import CachedDataset
    from radmi.data.source import require_reports, resolve_cache

    manifest = write_manifest(build_chexpert_manifest(chexpert, val_fraction=0.3), tmp_path / "chexpert.csv")
    cache = tmp_path / "cache"
    assert (
        main(
            ["prepare", str(manifest), "--out", str(cache), "--size", "32", "--workers", "1", "--no-progress"]
        )
        == 0
    )
    info = json.loads((cache / "cache.json").read_text())
    assert info["counts"]["bad"] == 0 and info["counts"]["kept"] == 38 and info["counts"]["with_report"] == 0
    sample = CachedDataset(cache, split="test")[0]
    assert sample["attention_mask"].sum() == 2 and (sample["sentence_ids"] == -1).all()  # [CLS] [SEP] only

    # pretraining: refused at once from the manifest (before any decoding) and from the cache, one line each
    for data, error in ((manifest, ManifestError), (cache, CacheError)):
        with pytest.raises(error, match=r"38 of 38 images have no report \(empty report_path\)"):
            require_reports(data)
        assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 1
        message = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert message == [
            f"radmi pretrain: error: {data}: 38 of 38 images have no report (empty report_path); pretraining "
            "needs an image-report pair for every image: use data without reports (e.g. CheXpert) with "
            "finetune/evaluate"
        ]
    assert not (tmp_path / "run" / "cache").exists()
    # a cache for classification only is allowed
    assert resolve_cache(manifest, tmp_path / "classify", image_size=32, reports_required=False).is_dir()


def test_chexpert_manifest_prepare_finetune_evaluate(chexpert, tmp_path, capsys):
    """The classification path on CheXpert: ``radmi manifest chexpert`` -> ``prepare`` -> ``finetune``
    (linear probe, tiny encoder, 32 px) -> ``evaluate`` on the test split (the official validation set)."""
    from radmi.cli import main

    manifest, cache, run = tmp_path / "chexpert.csv", tmp_path / "cache", tmp_path / "run"
    assert main(["manifest", "chexpert", str(chexpert), "--out", str(manifest), "--val-fraction", "0.3"]) == 0
    assert (
        main(
            ["prepare", str(manifest), "--out", str(cache), "--size", "32", "--workers", "1", "--no-progress"]
        )
        == 0
    )
    encoder = json.dumps({"backbone": "resnet18", "embed_dim": 16, "local_stride": 16})
    finetune = ["finetune", "--data", str(cache), "--out", str(run), "--init", "random", "--mode", "linear"]
    settings = ["--set", "image_size=32", "--set", "batch_size=8", "--set", f"encoder={encoder}"]
    assert main([*finetune, "--epochs", "2", *settings]) == 0
    assert (run / "models" / "model.pt").is_file()
    assert main(["evaluate", str(run), "--data", str(cache), "--split", "test", "--bootstrap", "20"]) == 0
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n_samples"] == 6 and metrics["n_patients"] == 4
    assert metrics["auroc"]["Cardiomegaly"]["status"] == "ok"

    # the benchmark's classification part (frozen-feature probe of a random encoder) on the same cache
    from radmi.eval.benchmark import PRESETS, probe

    probed = probe("random", "random", 1.0, 0, cache, tmp_path / "bench", PRESETS["smoke"])
    assert probed["auroc"]["Cardiomegaly"]["status"] == "ok" and probed["n_samples"] == 6
