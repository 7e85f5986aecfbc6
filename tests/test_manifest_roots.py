"""Dataset roots by default (issue 17): every manifest path must resolve inside the roots its builder recorded
(``M.roots.json`` beside ``M.csv``), else the manifest's own folder, unless ``--root`` or
``--allow-outside-root`` says otherwise; and the MIMIC-CXR, CheXpert and Open-i builders list dangling links,
link loops and special files as bad inputs with their reason, never opening them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from chexpert_factory import write_chexpert
from dicom_factory import known_pixels, write_dicom, xray_dataset
from mimic_factory import make_mimic_tree
from openi_factory import image_ids, write_openi

from radmi.cli import main
from radmi.data.cache import prepare_cache
from radmi.data.manifest import (
    build_chexpert_manifest,
    build_folder_manifest,
    build_mimic_manifest,
    build_openi_manifest,
    check_manifest,
    dataset_roots,
    read_manifest,
    roots_file,
    write_manifest,
)
from radmi.data.manifest_schema import link_or_special_problems
from radmi.errors import ManifestError

POSIX_FIFO = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")


def _prepare(manifest, out, **kwargs):
    return prepare_cache(manifest, out, size=32, max_length=32, workers=1, progress=False, **kwargs)


def _hostile_copy(manifest: Path, out: Path, rows: dict[tuple[int, str], str]) -> Path:
    """A hand-written copy of ``manifest`` (no roots file) at ``out`` with some path cells replaced."""
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    for (row, column), value in rows.items():
        frame.loc[row, column] = value
    frame.to_csv(out, index=False)
    return out


def _outside(problems: pd.DataFrame) -> list[tuple[int, str]]:
    rows = problems[problems["problem"].astype(str).str.startswith("outside the dataset root")]
    return sorted(zip(rows["row"], rows["column"], strict=True))


def _in_time(function, seconds: float = 60.0):
    """``function()``'s result, failing (instead of hanging) if it blocks, e.g. on opening a FIFO."""
    result: dict = {}

    def target():
        try:
            result["value"] = function()
        except BaseException as err:  # handed to the test thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: a FIFO was opened"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Path:
    """A MIMIC-CXR tree with its manifest and roots file inside it: ``<tree>/manifest.csv``."""
    root = tmp_path_factory.mktemp("mimic")
    make_mimic_tree(root)
    return write_manifest(build_mimic_manifest(root, progress=False), root / "manifest.csv")


# ------------------------------------------------------------------------------------------- the default
def test_a_hand_written_manifest_is_confined_to_its_folder_by_default(mimic, tmp_path, capsys):
    """No --root: a report_path=/etc/passwd row (or ../ out of the folder) is refused by prepare, listed by check."""
    hostile = _hostile_copy(
        mimic,
        mimic.parent / "hostile.csv",
        {(1, "report_path"): "/etc/passwd", (2, "image_path"): "../elsewhere/x.dcm"},
    )
    assert not roots_file(hostile).exists() and dataset_roots(hostile) == [mimic.parent]
    out = tmp_path / "cache"
    with pytest.raises(ManifestError) as caught:
        _prepare(hostile, out)
    message = str(caught.value)
    assert caught.value.row == 1 and str(hostile) in message and "column 'report_path'" in message
    assert "/etc/passwd is outside the dataset root" in message and str(mimic.parent) in message
    assert (
        "the manifest's folder, as no hostile.roots.json is beside it" in message
        and "(1 more row(s))" in message
    )
    assert "--root DIR" in message and "--allow-outside-root" in message
    assert not out.exists()  # refused before anything is decoded

    args = ["prepare", str(hostile), "--out", str(out), "--no-progress", "--workers", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("radmi prepare: error: ") and "outside the dataset root" in err[0]
    )
    assert not out.exists()

    result = check_manifest(hostile, progress=False)  # never opens them: both rows listed
    assert _outside(result.problems) == [(1, "report_path"), (2, "image_path")]
    assert result.roots == [mimic.parent] and "manifest's folder" in result.roots_origin
    assert "/etc/passwd" in result.problems["path"].tolist()
    assert main(["manifest", "check", str(hostile)]) == 1
    printed = capsys.readouterr().out
    assert f"dataset root: {mimic.parent} (the manifest's folder" in printed


def test_allow_outside_root_lets_outside_rows_through(mimic, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = elsewhere / "report.txt"
    report.write_text("FINDINGS: The heart size is normal.\n")
    hostile = _hostile_copy(mimic, mimic.parent / "outside.csv", {(0, "report_path"): str(report)})
    with pytest.raises(ManifestError, match="outside the dataset root"):
        _prepare(hostile, tmp_path / "refused")
    summary = _prepare(hostile, tmp_path / "cache", allow_outside_root=True)
    assert summary.complete and summary.bad == 0
    result = check_manifest(hostile, progress=False, allow_outside_root=True)
    assert result.ok and result.roots == []
    assert main(["manifest", "check", str(hostile), "--allow-outside-root"]) == 0
    # --root naming a folder that holds both also lets it through; --root and --allow-outside-root exclude each other
    assert _outside(check_manifest(hostile, progress=False, root=mimic.parent.parent).problems) == []
    with pytest.raises(SystemExit):
        main(["manifest", "check", str(hostile), "--root", str(mimic.parent), "--allow-outside-root"])


def test_root_replaces_the_recorded_roots(mimic, tmp_path):
    """--root DIR wins over M.roots.json: a manifest from someone else is confined to the folder you name."""
    assert roots_file(mimic).is_file()
    other = tmp_path / "other"
    other.mkdir()
    result = check_manifest(mimic, progress=False, root=other)
    assert len(_outside(result.problems)) == 2 * 6 and result.roots_origin == "given with --root"
    assert check_manifest(mimic, progress=False, root=mimic.parent).ok


# ------------------------------------------------------------------------------------------- recorded roots
def test_mimic_jpg_with_a_separate_reports_root_records_both_roots(tmp_path, capsys):
    """MIMIC-CXR-JPG: images in one tree, reports in another, the manifest in a third folder."""
    images = tmp_path / "mimic-cxr-jpg"
    make_mimic_tree(images, suffix=".jpg", csvs=("metadata", "split"))
    reports = tmp_path / "mimic-cxr"
    for report in images.rglob("s*.txt"):
        target = reports / report.relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(report, target)
    out = tmp_path / "manifests" / "far" / "away" / "mimic.csv"
    args = ["manifest", "mimic-cxr", str(images), "--reports-root", str(reports), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert dataset_roots(out) == [images, reports]
    written = json.loads(roots_file(out).read_text())["dataset_roots"]
    assert written == [str(images), str(reports)]  # data far from the manifest: absolute, like its paths
    result = check_manifest(out, progress=False)
    assert result.ok and result.roots_origin == "recorded in mimic.roots.json"
    assert _prepare(out, tmp_path / "cache").kept == 6

    # a row pointing into a third folder is outside both roots
    third = tmp_path / "third"
    third.mkdir()
    (third / "secret.txt").write_text("FINDINGS: not part of the dataset.\n")
    frame = read_manifest(out)
    frame.loc[3, "report_path"] = str(third / "secret.txt")
    hostile = write_manifest(frame, out.with_name("hostile.csv"))  # keeps the two roots it read
    assert dataset_roots(hostile) == [images, reports]
    with pytest.raises(ManifestError) as caught:
        _prepare(hostile, tmp_path / "refused")
    message = str(caught.value)
    assert caught.value.row == 3 and f"outside the dataset roots {images}, {reports}" in message
    assert "recorded in hostile.roots.json" in message
    assert _outside(check_manifest(hostile, progress=False).problems) == [(3, "report_path")]


def test_openi_records_the_images_folder_and_the_written_reports(tmp_path):
    xml_dir, png_dir = write_openi(tmp_path / "openi", reports=6, size=32)
    out = tmp_path / "work" / "openi.csv"
    build_openi_manifest(xml_dir, png_dir, out, progress=False)
    reports = out.parent / "openi_reports"
    assert dataset_roots(out) == [png_dir, reports]
    assert json.loads(roots_file(out).read_text())["dataset_roots"] == [
        "../openi/NLMCXR_png",
        "openi_reports",
    ]
    assert check_manifest(out, progress=False).ok
    hostile = _hostile_copy(out, out, {(0, "image_path"): str(xml_dir / "1.xml")})  # the roots file stays
    with pytest.raises(ManifestError, match="outside the dataset roots"):
        _prepare(hostile, tmp_path / "cache")
    assert _outside(check_manifest(hostile, progress=False).problems) == [(0, "image_path")]


def test_chexpert_and_folder_builders_record_their_roots(tmp_path, capsys):
    dataset = write_chexpert(tmp_path / "chexpert", train_patients=3, valid_patients=1, studies=1)
    out = tmp_path / "chexpert.csv"
    assert main(["manifest", "chexpert", str(dataset), "--out", str(out)]) == 0
    assert json.loads(roots_file(out).read_text())["dataset_roots"] == ["chexpert/CheXpert-v1.0-small"]
    assert dataset_roots(out) == [dataset] and check_manifest(out, progress=False).ok

    export = tmp_path / "export"
    ds = xray_dataset(known_pixels(8, 8), view_position="PA")
    (export / "a").mkdir(parents=True)
    write_dicom(export / "a" / "img.dcm", ds)
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"study_id": [ds.StudyInstanceUID], "report": ["FINDINGS: Clear lungs."]}).to_csv(
        reports, index=False
    )
    out = tmp_path / "out" / "hospital.csv"
    build_folder_manifest(export, reports, out, salt="test", progress=False)
    assert json.loads(roots_file(out).read_text())["dataset_roots"] == ["../export", "hospital_reports"]
    assert dataset_roots(out) == [export, out.parent / "hospital_reports"]
    assert check_manifest(out, progress=False).ok


def test_moving_the_manifest_and_its_tree_together_keeps_working(tmp_path):
    """Relative roots (like the relative paths) travel with the tree, including a manifest deep inside the root."""
    first = tmp_path / "first"
    make_mimic_tree(first / "data")
    table = build_mimic_manifest(first / "data", progress=False)
    beside = write_manifest(table, first / "mimic.csv")
    deep = write_manifest(table, first / "data/files/p10/p10000001/m.csv")  # 3 folders below the root
    assert json.loads(roots_file(beside).read_text())["dataset_roots"] == ["data"]
    assert json.loads(roots_file(deep).read_text())["dataset_roots"] == ["../../.."]
    assert pd.read_csv(deep)["image_path"].str.startswith("../../p1").all()  # the paths are relative too
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    for manifest in (moved / "mimic.csv", moved / "data/files/p10/p10000001/m.csv"):
        assert dataset_roots(manifest) == [moved / "data"]
        assert check_manifest(manifest, progress=False).ok
    assert _prepare(moved / "mimic.csv", tmp_path / "cache").kept == 6


def test_write_manifest_without_roots_removes_a_stale_roots_file(mimic, tmp_path):
    copy = write_manifest(read_manifest(mimic), tmp_path / "copy.csv")  # read_manifest keeps the roots
    assert dataset_roots(copy) == [mimic.parent]
    plain = read_manifest(copy)
    plain.attrs.clear()
    write_manifest(plain, copy)
    assert not roots_file(copy).exists() and dataset_roots(copy) == [tmp_path]


# ------------------------------------------------------------------------------------------- broken roots files
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ('["data"]', "expected"),
        ('{"dataset_roots": "data"}', "expected"),
        ('{"dataset_roots": []}', "expected"),
        ('{"dataset_roots": [1]}', "expected"),
        ('{"roots": ["data"]}', "expected"),
        ('{"dataset_roots": ["/"]}', "filesystem root"),
    ],
)
def test_a_broken_roots_file_is_one_clear_error(mimic, tmp_path, capsys, content, reason):
    manifest = write_manifest(read_manifest(mimic), tmp_path / "m.csv", relative=False)
    sidecar = roots_file(manifest)
    sidecar.write_text(content)
    for call in (
        lambda: check_manifest(manifest, progress=False),
        lambda: _prepare(manifest, tmp_path / "c"),
    ):
        with pytest.raises(ManifestError, match=reason) as caught:
            call()
        assert caught.value.path == str(sidecar) and "--root DIR" in str(caught.value)
    assert main(["manifest", "check", str(manifest)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(sidecar) in err[0]
    # --root and --allow-outside-root do not read it
    assert check_manifest(manifest, progress=False, root=mimic.parent).ok
    assert check_manifest(manifest, progress=False, allow_outside_root=True).ok


@POSIX_FIFO
def test_a_roots_file_that_is_a_fifo_is_never_opened(mimic, tmp_path):
    manifest = write_manifest(read_manifest(mimic), tmp_path / "m.csv", relative=False)
    roots_file(manifest).unlink()
    os.mkfifo(roots_file(manifest))
    with pytest.raises(ManifestError, match="not a regular file: a FIFO"):
        _in_time(lambda: check_manifest(manifest, progress=False))


# ------------------------------------------------------------------------------------------- links and special files
def test_link_or_special_problems_follows_good_links_and_ignores_missing_files(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "link.txt").symlink_to(tmp_path / "file.txt")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    paths = [str(tmp_path / name) for name in ("file.txt", "link.txt", "missing.txt", "dangling.txt")]
    assert link_or_special_problems(["", *paths])[:4] == ["", "", "", ""]
    assert link_or_special_problems(paths)[3].startswith("dangling symbolic link")


def _plant_bad_files(paths: list[Path]) -> None:
    """paths[0] becomes a FIFO, paths[1] a dangling link, paths[2] a link loop."""
    for path in paths:
        path.unlink()
    os.mkfifo(paths[0])
    paths[1].symlink_to(paths[1].parent / "nowhere.bin")
    paths[2].symlink_to(paths[2])


@POSIX_FIFO
@pytest.mark.parametrize("csvs", [("record", "metadata", "split"), ()], ids=["from CSVs", "tree walk"])
def test_mimic_builder_lists_fifos_dangling_links_and_loops(tmp_path, caplog, capsys, csvs):
    root = tmp_path / "mimic"
    rows = make_mimic_tree(root, csvs=csvs)
    # row 0's image: FIFO; row 2's image: dangling link; row 5's report (its study alone): link loop
    _plant_bad_files([Path(rows[0]["image_path"]), Path(rows[2]["image_path"]), Path(rows[5]["report_path"])])

    with pytest.raises(ManifestError, match="not a regular file: a FIFO|dangling symbolic link|link loop"):
        _in_time(lambda: build_mimic_manifest(root, progress=False))
    skipped: list[dict] = []
    with caplog.at_level(logging.WARNING, logger="radmi.data.manifest_mimic"):
        manifest = _in_time(
            lambda: build_mimic_manifest(root, progress=False, on_error="skip", skipped=skipped)
        )
    assert sorted(manifest["dicom_id"]) == sorted(rows[i]["dicom_id"] for i in (1, 3, 4))
    reasons = {Path(item["file"]).name: item["reason"] for item in skipped}
    assert reasons[Path(rows[0]["image_path"]).name] == "not a regular file: a FIFO (named pipe)"
    assert reasons[Path(rows[2]["image_path"]).name].startswith("dangling symbolic link")
    assert reasons[Path(rows[5]["report_path"]).name].startswith("symbolic link loop")
    assert len(skipped) == 3 and "not a regular file: a FIFO" in caplog.text

    out = tmp_path / "m.csv"
    assert main(["manifest", "mimic-cxr", str(root), "--out", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "listing images" not in line]
    assert len(err) == 1 and err[0].startswith("radmi manifest: error: ") and "(named pipe)" in err[0]
    assert _in_time(lambda: main(["manifest", "mimic-cxr", str(root), "--out", str(out), "--skip-bad"])) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "skipped 3: " in printed
    assert "1 dangling symbolic link" in printed and "1 not a regular file" in printed
    assert "1 symbolic link loop" in printed
    assert not any(row["subject_id"] in printed for row in rows)  # counts only: no ids, no report text
    assert "FINDINGS" not in printed and "effusion" not in printed.lower()
    assert len(read_manifest(out)) == 3


@POSIX_FIFO
def test_chexpert_builder_lists_fifos_dangling_links_and_loops(tmp_path, caplog, capsys):
    dataset = write_chexpert(tmp_path / "chexpert", train_patients=4, valid_patients=1, studies=1)
    images = sorted((dataset / "train").rglob("*.jpg"))
    _plant_bad_files(images[:3])

    with pytest.raises(ManifestError, match=r"train.csv \(row \d+\): .*\(CSV line \d+\)"):
        _in_time(lambda: build_chexpert_manifest(dataset))
    skipped: list[dict] = []
    manifest = _in_time(lambda: build_chexpert_manifest(dataset, on_error="skip", skipped=skipped))
    reasons = sorted(item["reason"] for item in skipped)
    assert len(reasons) == 3 and not set(manifest["image_path"]) & {str(p) for p in images[:3]}
    assert reasons[0].startswith("dangling symbolic link") and reasons[0].endswith(str(images[1]))
    assert reasons[1] == f"not a regular file: a FIFO (named pipe): {images[0]}"
    assert reasons[2] == f"symbolic link loop (the link resolves to itself): {images[2]}"

    out = tmp_path / "chexpert.csv"
    assert (
        _in_time(lambda: main(["manifest", "chexpert", str(dataset), "--out", str(out), "--skip-bad"])) == 0
    )
    printed = capsys.readouterr().out
    assert "skipped 3: 1 dangling symbolic link; 1 not a regular file; 1 symbolic link loop" in printed
    assert "patient0" not in printed


@POSIX_FIFO
def test_openi_builder_lists_special_images_and_reports(tmp_path):
    xml_dir, png_dir = write_openi(tmp_path / "openi", reports=6, size=32)
    _plant_bad_files(
        [png_dir / f"{image_ids(1)[0]}.png", png_dir / f"{image_ids(3)[0]}.png", xml_dir / "5.xml"]
    )
    os.mkfifo(xml_dir / "7.xml")  # a FIFO named like a report

    with pytest.raises(ManifestError, match="not a regular file: a FIFO|dangling|loop"):
        _in_time(lambda: build_openi_manifest(xml_dir, png_dir, tmp_path / "m.csv", progress=False))
    skipped: list[dict] = []
    manifest = _in_time(
        lambda: build_openi_manifest(
            xml_dir, png_dir, tmp_path / "m.csv", on_error="skip", skipped=skipped, progress=False
        )
    )
    reasons = {Path(item["file"]).name: item["reason"] for item in skipped}
    assert reasons[f"{image_ids(1)[0]}.png"] == "not a regular file: a FIFO (named pipe) (listed by 1.xml)"
    assert reasons[f"{image_ids(3)[0]}.png"].startswith("dangling symbolic link")
    assert reasons["5.xml"].startswith("symbolic link loop")
    assert reasons["7.xml"] == "not a regular file: a FIFO (named pipe)"
    assert not {"CXR1", "CXR3", "CXR5"} & {dicom_id.split("_")[0] for dicom_id in manifest["dicom_id"]}


# ------------------------------------------------------------------ commands that read a manifest uncached
def test_reading_a_manifest_without_a_cache_applies_the_same_rule(mimic):
    """finetune/evaluate/retrieve/label on a manifest read its rows through ``open_source``: same containment."""
    from radmi.data.source import manifest_table

    assert len(manifest_table(mimic)) > 0  # inside its recorded roots
    hostile = _hostile_copy(mimic, mimic.parent / "hostile_uncached.csv", {(0, "report_path"): "/etc/passwd"})
    with pytest.raises(ManifestError) as caught:
        manifest_table(hostile)
    message = str(caught.value)
    assert caught.value.row == 0 and str(hostile) in message and "/etc/passwd is outside the dataset root" in message
    assert "radmi prepare --root DIR" in message and "--allow-outside-root" in message
    assert "roots file" in message


def test_predict_label_and_the_dataset_refuse_a_manifest_row_outside_its_roots(mimic):
    from radmi.bundle.inference import list_inputs
    from radmi.commands.label import read_reports
    from radmi.data.dataset import ManifestDataset

    hostile = _hostile_copy(mimic, mimic.parent / "hostile_readers.csv", {(0, "report_path"): "/etc/passwd"})
    for read in (list_inputs, read_reports, ManifestDataset):
        with pytest.raises(ManifestError, match="/etc/passwd is outside the dataset root"):
            read(hostile)


def test_a_manifest_reached_through_a_linked_folder_is_inside_its_folder(mimic, tmp_path):
    """/data linked to /mnt/data: rows written through the link name stay inside the manifest's folder."""
    link = tmp_path / "linked"
    link.symlink_to(mimic.parent, target_is_directory=True)
    frame = pd.read_csv(mimic, dtype=str, keep_default_na=False)
    for column in ("image_path", "report_path"):  # absolute, through the link
        frame[column] = [str(link / value) if value else value for value in frame[column]]
    hand = link / "through_link.csv"
    frame.to_csv(hand, index=False)
    assert not roots_file(hand).exists()
    result = check_manifest(hand, progress=False)
    assert _outside(result.problems) == []
    from radmi.data.manifest_schema import read_manifest_within_roots

    assert len(read_manifest_within_roots(hand)) == len(frame)
    assert _prepare(hand, tmp_path / "cache").complete


@pytest.mark.parametrize(
    ("content", "reason"),
    [('{"dataset_roots": ' + "[" * 100_000 + "]" * 100_000 + "}", "not JSON"), (None, "filesystem root")],
)
def test_a_deeply_nested_or_root_linked_roots_file_is_a_clear_error(mimic, tmp_path, content, reason):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(mimic.read_bytes())
    if content is None:  # a root that is a link to /
        (tmp_path / "rootlink").symlink_to("/", target_is_directory=True)
        content = '{"dataset_roots": ["rootlink"]}'
    roots_file(manifest).write_text(content)
    with pytest.raises(ManifestError, match=reason) as caught:
        dataset_roots(manifest)
    assert caught.value.path == str(roots_file(manifest))
