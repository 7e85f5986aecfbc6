"""Manifest building (official CSVs, tree walk, .dcm.gz, JPG, frontal-only, hospital folder), reading and checking."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import PATIENT_ID, known_pixels, sr_dataset, write_dicom, xray_dataset
from mimic_factory import REPORT, make_mimic_tree

from radmi.cli import main
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import (
    MANIFEST_COLUMNS,
    build_folder_manifest,
    build_mimic_manifest,
    check_manifest,
    read_manifest,
    write_manifest,
)
from radmi.errors import ManifestError


def reference(rows: list[dict], blank_views=False, blank_splits=False, blank_labels=False) -> pd.DataFrame:
    frame = pd.DataFrame(rows).loc[:, list(MANIFEST_COLUMNS)]
    if blank_views:
        frame["view"] = ""
    if blank_splits:
        frame["split"] = ""
    if blank_labels:
        frame[[*CHEXPERT_LABELS, "edema_severity"]] = np.nan
    return frame


def assert_manifest_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True).astype({c: object for c in MANIFEST_COLUMNS[:7]}),
        expected.reset_index(drop=True).astype({c: object for c in MANIFEST_COLUMNS[:7]}),
        check_dtype=False,
    )


@pytest.fixture(scope="module")
def dcm_tree(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("mimic")
    return root, make_mimic_tree(root)


def test_from_official_csvs(dcm_tree):
    root, rows = dcm_tree
    assert_manifest_equal(build_mimic_manifest(root, progress=False), reference(rows))


def test_frontal_only_from_metadata(dcm_tree):
    root, rows = dcm_tree
    manifest = build_mimic_manifest(root, frontal_only=True, progress=False)
    assert_manifest_equal(manifest, reference([r for r in rows if r["view"] in ("PA", "AP")]))
    assert len(manifest) == 4


def test_write_then_read_round_trip_with_relative_paths(dcm_tree, tmp_path):
    root, rows = dcm_tree
    inside = write_manifest(build_mimic_manifest(root, progress=False), root / "manifests" / "m.csv")
    raw = pd.read_csv(inside, dtype=str, keep_default_na=False)
    assert list(raw.columns) == list(MANIFEST_COLUMNS)
    assert raw["image_path"].str.startswith("../files/p1").all()
    assert raw["edema_severity"].tolist() == ["2", "2", "", "0", "0", ""]
    assert_manifest_equal(read_manifest(inside), reference(rows))
    # a manifest outside the tree still points at it, and survives moving root+manifest together
    outside = write_manifest(read_manifest(inside), tmp_path / "elsewhere" / "m.csv")
    assert_manifest_equal(read_manifest(outside), reference(rows))


def test_tree_walk_without_csvs(tmp_path):
    rows = make_mimic_tree(tmp_path, csvs=())
    (tmp_path / "files" / "notes.txt").write_text("not an image")
    manifest = build_mimic_manifest(tmp_path, progress=False)
    expected = reference(
        sorted(rows, key=lambda r: r["image_path"]), blank_views=True, blank_splits=True, blank_labels=True
    )
    assert_manifest_equal(manifest, expected)
    # frontal-only without a metadata CSV reads ViewPosition from the DICOM headers
    frontal = build_mimic_manifest(tmp_path, frontal_only=True, progress=False)
    assert sorted(frontal["dicom_id"]) == sorted(r["dicom_id"] for r in rows if r["view"] in ("PA", "AP"))
    assert set(frontal["view"]) == {"PA", "AP"}


def test_dcm_gz_from_csvs_and_tree(tmp_path):
    rows = make_mimic_tree(tmp_path, suffix=".dcm.gz")
    manifest = build_mimic_manifest(tmp_path, progress=False)
    assert manifest["image_path"].str.endswith(".dcm.gz").all()
    assert_manifest_equal(manifest, reference(rows))
    for name in ("cxr-record-list.csv.gz", "mimic-cxr-2.0.0-metadata.csv.gz"):
        (tmp_path / name).unlink()
    walked = build_mimic_manifest(tmp_path, progress=False)
    assert sorted(walked["image_path"]) == sorted(r["image_path"] for r in rows)


def test_jpg_variant_from_metadata_only(tmp_path):
    rows = make_mimic_tree(tmp_path, suffix=".jpg", csvs=("metadata", "split", "chexpert"))
    manifest = build_mimic_manifest(tmp_path, frontal_only=True, progress=False)
    expected = reference([r for r in rows if r["view"] in ("PA", "AP")])
    expected["edema_severity"] = np.nan
    assert_manifest_equal(manifest, expected)
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(ManifestError, match="frontal-only needs"):
        build_mimic_manifest(tmp_path, frontal_only=True, progress=False)


def test_bad_official_csvs(tmp_path):
    make_mimic_tree(tmp_path, csvs=("record", "chexpert"))
    chexpert = pd.read_csv(
        tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", dtype={"subject_id": str, "study_id": str}
    )
    pd.concat([chexpert, chexpert.iloc[[0]]]).to_csv(
        tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False
    )
    with pytest.raises(ManifestError, match=r"chexpert.csv.gz \(row 3\): duplicate subject_id/study_id"):
        build_mimic_manifest(tmp_path, progress=False)
    chexpert.drop(columns="Edema").to_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['Edema'\]"):
        build_mimic_manifest(tmp_path, progress=False)
    with pytest.raises(ManifestError, match="not a folder"):
        build_mimic_manifest(tmp_path / "absent", progress=False)


def test_folder_export(tmp_path):
    export = tmp_path / "export"
    studies = []
    for index, (view, nested) in enumerate([("PA", "a"), ("LATERAL", "a"), ("AP", "b/c")]):
        ds = xray_dataset(known_pixels(4, 4), view_position=view)
        if index == 1:  # two images of one study
            ds.StudyInstanceUID = studies[0]
        studies.append(ds.StudyInstanceUID)
        (export / nested).mkdir(parents=True, exist_ok=True)
        write_dicom(export / nested / f"img{index}.dcm", ds)
    (export / "b" / "readme.txt").write_text("not DICOM")
    reports = pd.DataFrame(
        {"study_id": [studies[0], studies[2]], "report": [REPORT, "IMPRESSION: Clear lungs."]}
    )
    reports.to_csv(tmp_path / "reports.csv", index=False)

    out = tmp_path / "out" / "hospital.csv"
    manifest = build_folder_manifest(export, tmp_path / "reports.csv", out, split="test", progress=False)
    assert manifest["view"].tolist() == ["PA", "LATERAL", "AP"]
    assert manifest["study_id"].tolist() == (
        ["50000000", "50000000", "50000001"]
        if studies[0] < studies[2]
        else ["50000001", "50000001", "50000000"]
    )
    assert manifest["subject_id"].nunique() == 1  # one PatientID
    read = read_manifest(out)
    assert Path(read.loc[0, "report_path"]).read_text() == REPORT
    assert Path(read.loc[2, "report_path"]).read_text() == "IMPRESSION: Clear lungs."
    assert (read["split"] == "test").all() and read[list(CHEXPERT_LABELS)].isna().all().all()
    mapping = pd.read_csv(out.parent / "hospital_studies.csv", dtype=str)
    assert (
        dict(zip(mapping["StudyInstanceUID"], mapping["study_id"], strict=True))[studies[2]]
        == manifest.loc[2, "study_id"]
    )
    for written in out.parent.rglob("*"):  # no patient identifier leaves the export
        assert written.is_dir() or PATIENT_ID not in written.read_text()
    assert check_manifest(out, progress=False).ok

    # a study without a report: raise by default, skip on request
    pd.DataFrame({"study_id": [studies[0]], "report": [REPORT]}).to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(ManifestError, match="no report for this study"):
        build_folder_manifest(export, tmp_path / "partial.csv", out, progress=False)
    assert (
        len(build_folder_manifest(export, tmp_path / "partial.csv", out, on_error="skip", progress=False))
        == 2
    )


@pytest.fixture
def broken_manifest(dcm_tree, tmp_path) -> Path:
    """A copy of the tree's manifest with one problem per row from row 1 on (row 0 and 5 are fine)."""
    root, _ = dcm_tree
    tree = tmp_path / "tree"
    shutil.copytree(root / "files", tree / "files")
    manifest = build_mimic_manifest(root, progress=False)
    manifest["image_path"] = manifest["image_path"].str.replace(str(root), str(tree), regex=False)
    manifest["report_path"] = manifest["report_path"].str.replace(str(root), str(tree), regex=False)
    Path(manifest.loc[1, "image_path"]).unlink()  # row 1: image missing
    Path(manifest.loc[2, "image_path"]).write_bytes(b"not a dicom at all" * 20)  # row 2: not DICOM
    write_dicom(Path(manifest.loc[3, "image_path"]), sr_dataset())  # row 3: no pixels (SR)
    Path(manifest.loc[4, "report_path"]).write_text("  \n")  # rows 3 and 4 share this (empty) report
    manifest.loc[4, "Edema"] = 2.0  # row 4: bad label
    path = write_manifest(manifest, tmp_path / "m.csv", dataset_roots=[tree])  # the data now lies in tree
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw.loc[5, "split"] = "training"  # row 5: bad split
    raw.to_csv(path, index=False)
    return path


def test_check_finds_every_broken_row(broken_manifest):
    result = check_manifest(broken_manifest, progress=False)
    found = set(zip(result.problems["row"], result.problems["column"], strict=True))
    assert found == {
        (1, "image_path"),
        (2, "image_path"),
        (3, "image_path"),
        (3, "report_path"),
        (4, "report_path"),
        (4, "Edema"),
        (5, "split"),
    }
    problems = result.problems.set_index(["row", "column"])["problem"]
    assert problems[1, "image_path"] == "image file not found"
    assert "not a DICOM file" in problems[2, "image_path"]
    assert "no PixelData" in problems[3, "image_path"]
    assert problems[4, "report_path"] == "report file is empty"
    assert not result.ok and result.n_bad_rows == 5 and result.n_rows == 6
    assert result.summary()["count"].sum() == 7


def test_read_manifest_names_file_and_row(broken_manifest, tmp_path):
    with pytest.raises(
        ManifestError, match=r"m.csv \(row 4\): column 'Edema': not 1, 0, -1 or blank \(1 more"
    ):
        read_manifest(broken_manifest)
    raw = pd.read_csv(broken_manifest, dtype=str, keep_default_na=False).drop(columns="view")
    raw.to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(ManifestError, match=r"nocol.csv: column 'view': missing column"):
        read_manifest(tmp_path / "nocol.csv")
    with pytest.raises(ManifestError, match="manifest file not found"):
        read_manifest(tmp_path / "absent.csv")


def test_cli_build_and_check(dcm_tree, broken_manifest, tmp_path, capsys):
    root, rows = dcm_tree
    out = tmp_path / "cli.csv"
    assert main(["manifest", "mimic-cxr", str(root), "--out", str(out), "--frontal-only"]) == 0
    assert len(read_manifest(out)) == 4
    assert main(["manifest", "check", str(out)]) == 0
    problems = tmp_path / "problems.csv"
    assert main(["manifest", "check", str(broken_manifest), "--problems", str(problems)]) == 1
    assert len(pd.read_csv(problems)) == 7
    assert "5 with problems" in capsys.readouterr().out


def test_schema_json_matches_the_code():
    import json

    schema = json.loads((Path(__file__).parents[1] / "data_manifests" / "schema.json").read_text())
    assert schema["x-column-order"] == list(MANIFEST_COLUMNS) == schema["required"]
    assert schema["properties"]["split"]["enum"] == ["train", "validate", "test", ""]


def test_folder_export_unreadable_file_is_a_manifest_error(tmp_path):
    # the builder reads headers with radmi.transforms.dicom_decode.read_dicom_header and names the bad file
    export = tmp_path / "export"
    export.mkdir()
    ds = xray_dataset(known_pixels(4, 4), view_position="PA")
    write_dicom(export / "good.dcm.gz", ds, gzipped=True)
    (export / "broken.dcm").write_bytes(b"not DICOM at all" * 20)
    pd.DataFrame({"study_id": [ds.StudyInstanceUID], "report": [REPORT]}).to_csv(
        tmp_path / "r.csv", index=False
    )
    out = tmp_path / "out.csv"
    with pytest.raises(ManifestError, match=r"broken.dcm: not a readable DICOM file: not a DICOM file"):
        build_folder_manifest(export, tmp_path / "r.csv", out, progress=False)
    manifest = build_folder_manifest(export, tmp_path / "r.csv", out, on_error="skip", progress=False)
    assert manifest["view"].tolist() == ["PA"] and manifest["image_path"].str.endswith("good.dcm.gz").all()


def test_read_dicom_header_reads_named_tags_of_plain_and_gzipped_files(tmp_path):
    from radmi.errors import DicomError
    from radmi.transforms.dicom import read_dicom_header

    ds = xray_dataset(known_pixels(4, 4), view_position="AP")
    for name, gzipped in (("a.dcm", False), ("a.dcm.gz", True)):
        header = read_dicom_header(
            write_dicom(tmp_path / name, ds, gzipped=gzipped), ("ViewPosition", "Rows")
        )
        assert header.ViewPosition == "AP" and int(header.Rows) == 4 and "PixelData" not in header
    (tmp_path / "cut.dcm.gz").write_bytes((tmp_path / "a.dcm.gz").read_bytes()[:40])
    with pytest.raises(DicomError, match="cut.dcm.gz"):
        read_dicom_header(tmp_path / "cut.dcm.gz", ("ViewPosition",))


def test_folder_builder_lists_links_loops_and_fifos_with_a_reason(tmp_path, caplog):
    """Dangling links, link loops and FIFOs named like DICOMs are bad inputs with their reason, never opened."""
    import logging
    import os

    export = tmp_path / "export"
    ds = xray_dataset(known_pixels(4, 4), view_position="PA")
    export.mkdir()
    write_dicom(export / "good.dcm", ds)
    os.mkfifo(export / "fifo.dcm")
    (export / "loop.dcm").symlink_to(export / "loop.dcm")
    (export / "dangling.dcm").symlink_to(export / "nowhere.dcm")
    pd.DataFrame({"study_id": [ds.StudyInstanceUID], "report": [REPORT]}).to_csv(
        tmp_path / "r.csv", index=False
    )
    out = tmp_path / "out" / "m.csv"
    with pytest.raises(ManifestError, match="dangling symbolic link"):
        build_folder_manifest(export, tmp_path / "r.csv", out, progress=False)
    with caplog.at_level(logging.WARNING, logger="radmi.data.manifest_folder"):
        manifest = build_folder_manifest(export, tmp_path / "r.csv", out, on_error="skip", progress=False)
    assert len(manifest) == 1
    skipped = caplog.text
    assert "fifo.dcm: not a regular file: a FIFO" in skipped
    assert "loop.dcm: symbolic link loop" in skipped and "dangling.dcm: dangling symbolic link" in skipped
