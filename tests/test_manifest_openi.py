"""``radmi manifest openi`` / ``build_openi_manifest`` on an Open-i stand-in in the release's XML schema, bad
inputs included, and the end-to-end path manifest -> prepare -> pretrain."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from openi_factory import image_ids, write_openi, xml_report
from pretrain_data import TINY_OVERRIDES, set_args, write_tiny_bert

from radmi.data.manifest import MANIFEST_COLUMNS, build_openi_manifest, read_manifest
from radmi.data.manifest_chexpert import hash_fraction
from radmi.data.manifest_openi import openi_report_text, read_openi_report, view_from_caption
from radmi.data.reports import parse_report, report_sentences
from radmi.errors import ManifestError

FINDINGS = "There is a nodule in the right upper lung. No pneumothorax."


@pytest.fixture
def openi(tmp_path):
    xml_dir, png_dir = write_openi(tmp_path / "openi", reports=12, size=32)
    return xml_dir, png_dir


def _add_report(xml_dir, png_dir, number, sections, n_images=1, write_images=True, caption="PA chest"):
    ids = image_ids(number)[:n_images]
    if write_images:
        for image_id in ids:
            (png_dir / f"{image_id}.png").write_bytes((png_dir / f"{image_ids(1)[0]}.png").read_bytes())
    images = [(image_id, caption) for image_id in ids]
    (xml_dir / f"{number}.xml").write_text(xml_report(number, sections, images, ["normal"]), encoding="utf-8")
    return ids


def test_rows_ids_views_mesh_splits_and_report_files(openi, tmp_path):
    xml_dir, png_dir = openi
    out = tmp_path / "manifests" / "openi.csv"
    manifest = build_openi_manifest(xml_dir, png_dir, out, progress=False)

    # report n has a frontal image and, when n is even, a lateral one: 12 + 6 images, one row each
    assert len(manifest) == 18 and manifest["dicom_id"].is_unique
    first = manifest.iloc[0]
    assert (first["subject_id"], first["study_id"], first["dicom_id"]) == (
        "10000001",
        "50000001",
        "CXR1_1_IM-0001-1001",
    )
    assert (manifest["study_id"] == (manifest["subject_id"].astype(int) + 40_000_000).astype(str)).all()
    # captions: "PA chest" -> PA, "Lateral chest x-XXXX" -> LATERAL, "Xray Chest PA and Lateral" -> unknown
    views = dict(zip(manifest["dicom_id"], manifest["view"], strict=True))
    assert views["CXR1_1_IM-0001-1001"] == "PA" and views["CXR2_1_IM-0002-2001"] == "LATERAL"
    assert views["CXR3_1_IM-0003-1001"] == "" and views["CXR6_1_IM-0006-2001"] == ""
    # labels blank: Open-i has none; MeSH major terms kept as the extra column, in the written CSV too
    assert manifest[list(MANIFEST_COLUMNS[7:])].isna().all().all()
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(written.columns) == [*MANIFEST_COLUMNS, "mesh_major"]
    assert written.loc[written["study_id"] == "50000004", "mesh_major"].iloc[0] == (
        "Nodule/lung/right/upper;Cardiomegaly/mild"
    )
    # paths relative to the manifest in the file, absolute again through read_manifest (which drops mesh_major)
    assert written["report_path"].iloc[0] == "openi_reports/s50000001.txt"
    back = read_manifest(out)
    assert list(back.columns) == list(MANIFEST_COLUMNS) and back["image_path"].iloc[0] == str(
        png_dir / "CXR1_1_IM-0001-1001.png"
    )

    # the report file is in radmi's layout: parse_report finds the four sections
    text = (tmp_path / "manifests" / "openi_reports" / "s50000001.txt").read_text()
    sections = parse_report(text)
    assert sections["findings"].startswith("There is a nodule in the") and sections["comparison"] == "None."
    assert (
        sections["impression"].startswith("Nodule in the")
        and sections["indication"] == "XXXX-year-old with cough"
    )
    assert report_sentences(text)[-1].startswith("Nodule in the")

    # split: a hash of the report number, per report (each report is its own subject)
    draw = hash_fraction([str(n) for n in range(1, 13)], "radmi-openi-split")
    expected = np.where(draw < 0.05, "test", np.where(draw < 0.10, "validate", "train"))
    by_study = manifest.drop_duplicates("study_id").set_index("study_id")["split"]
    assert by_study.tolist() == expected.tolist()
    assert manifest.groupby("subject_id")["split"].nunique().max() == 1

    studies = pd.read_csv(tmp_path / "manifests" / "openi_studies.csv")
    assert studies.loc[0].tolist() == [50000001, 10000001, "1.xml", "CXR1", 1]
    assert pd.read_csv(tmp_path / "manifests" / "openi_skipped.csv").empty


def test_split_of_a_report_does_not_change_when_reports_are_added(tmp_path):
    xml_dir, png_dir = write_openi(tmp_path / "a", reports=30, size=16)
    fewer = build_openi_manifest(xml_dir, png_dir, tmp_path / "all.csv", val_fraction=0.3, progress=False)
    for number in range(21, 31):
        (xml_dir / f"{number}.xml").unlink()
    more = build_openi_manifest(xml_dir, png_dir, tmp_path / "some.csv", val_fraction=0.3, progress=False)
    merged = more.merge(fewer, on="dicom_id", suffixes=("", "_all"))
    assert len(merged) == len(more) and (merged["split"] == merged["split_all"]).all()
    assert set(fewer["split"]) == {"train", "validate", "test"}


@pytest.mark.parametrize(
    ("caption", "view"),
    [
        ("PA chest", "PA"),
        ("Chest PA", "PA"),
        ("Xray Chest PA and Lateral", ""),
        ("Lateral chest x-XXXX", "LATERAL"),
        ("chest lat", "LATERAL"),
        ("AP portable chest", "AP"),
        ("Frontal chest x-XXXX", ""),
        ("", ""),
        ("Palpable mass", ""),  # "pa" inside a word is not PA
    ],
)
def test_view_comes_from_the_caption_when_it_names_one_view(caption, view):
    assert view_from_caption(caption) == view


def test_reader_keeps_sections_images_mesh_and_collapses_whitespace(tmp_path):
    path = tmp_path / "7.xml"
    sections = {"FINDINGS": "Heart   normal.\n  Lungs clear.", "IMPRESSION": "", "INDICATION": "Cough"}
    path.write_text(xml_report(7, sections, [("CXR7_1_IM-0007-1001", "PA")], ["normal", "Lung/base"]))
    report = read_openi_report(path)
    assert (report.number, report.uid) == (7, "CXR7")
    assert report.sections == {"FINDINGS": "Heart normal. Lungs clear.", "INDICATION": "Cough"}
    assert report.images == [("CXR7_1_IM-0007-1001", "PA")] and report.mesh_major == ["normal", "Lung/base"]
    assert openi_report_text(report.sections) == "INDICATION: Cough\n\nFINDINGS: Heart normal. Lungs clear.\n"


def test_bad_inputs_raise_by_default_and_are_counted_and_named_in_skip_mode(openi, tmp_path, caplog):
    xml_dir, png_dir = openi
    # 13: no findings and no impression (always skipped, counted); 14: no image listed (always skipped)
    _add_report(xml_dir, png_dir, 13, {"INDICATION": "Chest pain", "FINDINGS": "", "IMPRESSION": ""})
    _add_report(xml_dir, png_dir, 14, {"FINDINGS": FINDINGS}, n_images=0)
    # 15: two images, the lateral's file is missing; 16: malformed XML (cut short)
    ids = _add_report(xml_dir, png_dir, 15, {"FINDINGS": FINDINGS}, n_images=2)
    (png_dir / f"{ids[1]}.png").unlink()
    (xml_dir / "16.xml").write_text(xml_report(16, {"FINDINGS": FINDINGS}, [])[:300], encoding="utf-8")

    # raise mode: the first bad item in file order (1.xml, 2.xml, ..., 16.xml) stops the build, named
    missing = png_dir / f"{ids[1]}.png"
    with pytest.raises(
        ManifestError, match=r"CXR15_1_IM-0015-2001\.png: image file not found \(listed by 15\.xml\)"
    ):
        build_openi_manifest(xml_dir, png_dir, tmp_path / "m.csv", progress=False)
    missing.write_bytes((png_dir / f"{ids[0]}.png").read_bytes())
    with pytest.raises(ManifestError, match=r"16\.xml: malformed XML"):
        build_openi_manifest(xml_dir, png_dir, tmp_path / "m.csv", progress=False)
    missing.unlink()

    skipped: list[dict] = []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        manifest = build_openi_manifest(
            xml_dir, png_dir, tmp_path / "m.csv", on_error="skip", skipped=skipped, progress=False
        )
    reasons = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in skipped}
    assert len(skipped) == 4
    assert reasons["13.xml"] == "no FINDINGS or IMPRESSION text"
    assert reasons["14.xml"] == "no image (parentImage) listed"
    assert reasons["CXR15_1_IM-0015-2001.png"] == "image file not found (listed by 15.xml)"
    assert reasons["16.xml"].startswith("malformed XML")
    # report 15 keeps its frontal image; 18 good images + 1
    assert len(manifest) == 19 and "CXR15_1_IM-0015-1001" in set(manifest["dicom_id"])
    assert "50000013" not in set(manifest["study_id"]) and "50000016" not in set(manifest["study_id"])
    assert pd.read_csv(tmp_path / "m_skipped.csv").shape == (4, 2)
    # one warning per skipped item; no report text in the log
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4
    assert "nodule" not in caplog.text and "Chest pain" not in caplog.text


def test_a_report_without_findings_or_impression_is_skipped_even_in_raise_mode(openi, tmp_path):
    xml_dir, png_dir = openi
    _add_report(xml_dir, png_dir, 13, {"COMPARISON": "None.", "INDICATION": "Chest pain"})
    skipped: list[dict] = []
    manifest = build_openi_manifest(xml_dir, png_dir, tmp_path / "m.csv", skipped=skipped, progress=False)
    assert len(manifest) == 18 and [item["reason"] for item in skipped] == ["no FINDINGS or IMPRESSION text"]


def test_duplicate_report_numbers_and_missing_folders_are_errors(openi, tmp_path):
    xml_dir, png_dir = openi
    (xml_dir / "copy_of_1.xml").write_text((xml_dir / "1.xml").read_text())
    with pytest.raises(ManifestError, match=r"copy_of_1\.xml: report number 1 also in 1\.xml"):
        build_openi_manifest(xml_dir, png_dir, tmp_path / "m.csv", progress=False)
    with pytest.raises(ManifestError, match="images folder not found"):
        build_openi_manifest(xml_dir, tmp_path / "nowhere", tmp_path / "m.csv", progress=False)


def test_cli_prints_counts_and_a_one_line_error(openi, tmp_path, capsys):
    from radmi.cli import main

    xml_dir, png_dir = openi
    _add_report(xml_dir, png_dir, 13, {"INDICATION": "Chest pain"})
    ids = _add_report(xml_dir, png_dir, 14, {"FINDINGS": FINDINGS})
    (png_dir / f"{ids[0]}.png").unlink()
    argv = [
        "manifest",
        "openi",
        "--reports",
        str(xml_dir),
        "--images",
        str(png_dir),
        "--out",
        str(tmp_path / "m.csv"),
    ]
    assert main(argv) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bar
    assert error == [
        f"radmi manifest: error: {png_dir / (ids[0] + '.png')}: image file not found (listed by 14.xml)"
    ]

    assert main([*argv, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "18 images" in printed
    assert (
        "skipped 3: 1 image file not found; 1 no FINDINGS or IMPRESSION text; 1 none of its images was kept"
        in printed
    )


def test_openi_manifest_prepare_and_pretrain_one_epoch(tmp_path, capsys):
    """The issue's end-to-end path on a generated stand-in: ``radmi manifest openi`` -> ``prepare`` ->
    ``pretrain --epochs 1`` (tiny images, 1-layer BERT, resnet18 at 64 px; a few seconds on one core)."""
    from radmi.cli import main

    xml_dir, png_dir = write_openi(tmp_path / "openi", reports=24, size=64)
    bert = write_tiny_bert(tmp_path / "bert")
    manifest, cache, run = tmp_path / "openi.csv", tmp_path / "cache", tmp_path / "run"
    argv = ["manifest", "openi", "--reports", str(xml_dir), "--images", str(png_dir), "--out", str(manifest)]
    assert main([*argv, "--val-fraction", "0.3", "--test-fraction", "0.1"]) == 0
    prepare = ["prepare", str(manifest), "--out", str(cache), "--size", "64", "--max-length", "32"]
    assert main([*prepare, "--tokenizer", str(bert), "--workers", "1", "--no-progress"]) == 0
    info = json.loads((cache / "cache.json").read_text())
    assert info["counts"]["bad"] == 0 and info["counts"]["with_report"] == info["counts"]["kept"] == 36
    assert info["counts"]["kept_by_split"]["train"] > 0 and info["counts"]["kept_by_split"]["validate"] > 0

    overrides = dict(TINY_OVERRIDES, text_model=str(bert), checkpoint_every=100)
    assert (
        main(["pretrain", "--data", str(cache), "--out", str(run), "--epochs", "1", *set_args(overrides)])
        == 0
    )
    assert (run / "models" / "image_encoder.pt").is_file() and (run / "models" / "critic.pt").is_file()
    assert "pretrain: done" in capsys.readouterr().out
