"""``radmi predict``: every readable file gets the network's probabilities, a bad file is listed with its error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from radmi.bundle.inference import list_inputs
from radmi.cli import main as radmi_main
from radmi.data.labels import CHEXPERT_LABELS
from radmi.errors import BundleError
from radmi.transforms.dicom import LoadXRayDicom
from radmi.transforms.image import XRayResize
from tests._bundle_fixtures import TINY_SIZE, make_tiny_run, random_pixels, write_dicom


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A findings bundle folder made from the shipped template and a tiny run (no export checks: speed)."""
    root = tmp_path_factory.mktemp("predict")
    model = make_tiny_run(root / "run")
    from radmi.bundle.export import _stage
    from radmi.bundle.paths import bundle_dir

    staged = root / "radmi_cxr_findings"
    staged.mkdir()
    _stage(bundle_dir("radmi_cxr_findings"), staged, root / "run", "0.0.1", "test", TINY_SIZE)
    from radmi.trust import record_trusted

    record_trusted(staged)  # as `radmi bundle export` does for the bundles it writes
    return model, staged


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "dicoms"
    write_dicom(folder / "a.dcm", random_pixels(1))
    write_dicom(folder / "nested" / "b.dcm", random_pixels(2, rows=70, cols=100), photometric="MONOCHROME1")
    write_dicom(folder / "1.2.840.99", random_pixels(3))  # UID-like name, found by its DICM preamble
    (folder / "not_dicom.dcm").write_text("this is a text file")
    truncated = (folder / "a.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(truncated[: len(truncated) // 2])
    (folder / "notes.txt").write_text("ignored: neither a DICOM name nor a DICOM preamble")
    return folder


def expected_probabilities(model, path) -> torch.Tensor:
    """The reference: radmi's transforms and the run's network, applied directly to one file."""
    image = XRayResize(TINY_SIZE, mode="pad")(LoadXRayDicom()(path))
    with torch.no_grad():
        return torch.sigmoid(model(image.as_tensor()[None].float()))[0]


def test_list_inputs_finds_dicoms_by_name_and_preamble(inputs):
    names = [row["dicom_id"] for row in list_inputs(inputs)]
    assert sorted(names) == ["1.2.840", "a", "b", "not_dicom", "truncated"]
    with pytest.raises(BundleError, match="no such file or folder"):
        list_inputs(inputs.parent / "missing")
    (inputs.parent / "empty").mkdir()
    with pytest.raises(BundleError, match="no DICOM file"):
        list_inputs(inputs.parent / "empty")


def test_bad_files_are_listed_and_the_rest_predicted(bundle, inputs, tmp_path, capsys):
    model, bundle_dir = bundle
    out = tmp_path / "results.csv"
    status = radmi_main(
        ["predict", "--bundle", str(bundle_dir), "--input", str(inputs), "--out", str(out), "--batch-size", "2",
         "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert status == 0
    assert "predicted 3 of 5 images; 2 could not be read" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    # no input names a study (no manifest, no s<digits> folder), so there is no all-empty study_id column
    assert list(table.columns) == ["path", "dicom_id", "status", "error", *CHEXPERT_LABELS]
    rows = {row["dicom_id"]: row for row in table.to_dict("records")}
    assert rows["not_dicom"]["status"] == "error" and "DicomError" in rows["not_dicom"]["error"]
    assert rows["truncated"]["status"] == "error" and rows["truncated"]["error"]
    assert all(rows["truncated"][name] == "" for name in CHEXPERT_LABELS)
    for dicom_id in ("a", "b", "1.2.840"):
        row = rows[dicom_id]
        assert row["status"] == "ok" and row["error"] == ""
        got = torch.tensor([float(row[name]) for name in CHEXPERT_LABELS])
        # paths are written relative to the input folder (issue 17; --full-paths writes them absolute)
        assert not Path(row["path"]).is_absolute()
        torch.testing.assert_close(got, expected_probabilities(model, inputs / row["path"]), atol=2e-6, rtol=0)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["num_images"] == 5 and report["num_predicted"] == 3 and report["num_failed"] == 2
    by_id = {item["dicom_id"]: item for item in report["predictions"]}
    assert by_id["a"]["probabilities"]["Cardiomegaly"] == pytest.approx(
        float(rows["a"]["Cardiomegaly"]), abs=1e-6
    )
    assert "DicomError" in by_id["not_dicom"]["error"]


def test_a_batch_of_only_bad_files_does_not_stop_the_run(bundle, tmp_path):
    model, bundle_dir = bundle
    folder = tmp_path / "mixed"
    (folder).mkdir()
    (folder / "0_bad.dcm").write_text("x")
    (folder / "1_bad.dcm").write_text("y")
    write_dicom(folder / "2_good.dcm", random_pixels(5))
    out = tmp_path / "out.csv"
    from radmi.bundle.predict import predict

    summary = predict(bundle_dir, folder, out, device="cpu", batch_size=2, progress=False)
    assert (summary.num_images, summary.num_predicted, summary.num_failed) == (3, 1, 2)
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["status"]) == ["error", "error", "ok"]  # input order is kept


def test_single_file_input(bundle, tmp_path):
    model, bundle_dir = bundle
    dicom = write_dicom(tmp_path / "one.dcm", random_pixels(9))
    write_dicom(tmp_path / "other.dcm", random_pixels(10))  # beside it, not asked for
    from radmi.bundle.predict import predict

    summary = predict(bundle_dir, dicom, tmp_path / "one.csv", device="cpu", progress=False)
    assert (summary.num_images, summary.num_predicted) == (1, 1)


@pytest.fixture(scope="module")
def bundle_zip(bundle, tmp_path_factory):
    """The bundle folder zipped as a release (``<name>/...``) with its ``.sha256`` beside it."""
    from radmi.bundle.export import write_zip
    from radmi.data.cache_store import file_sha256

    _, bundle_dir = bundle
    release = tmp_path_factory.mktemp("release")
    zip_path = release / "radmi_cxr_findings_v0.0.1.zip"
    write_zip(bundle_dir, zip_path)
    digest = file_sha256(zip_path)
    (release / f"{zip_path.name}.sha256").write_text(f"{digest}  {zip_path.name}\n")
    from radmi.trust import record_trusted

    record_trusted(zip_path)  # as `radmi bundle export` does
    return zip_path, digest


def test_a_bundle_zip_as_bundle_is_unpacked_and_runs(bundle, bundle_zip, inputs, tmp_path, capsys):
    model, bundle_dir = bundle
    zip_path, digest = bundle_zip
    out = tmp_path / "from_zip.csv"
    status = radmi_main(
        ["predict", "--bundle", str(zip_path), "--input", str(inputs), "--out", str(out), "--batch-size", "2",
         "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert status == 0
    assert "predicted 3 of 5 images" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    row = table[table["dicom_id"] == "a"].iloc[0]
    got = torch.tensor([float(row[name]) for name in CHEXPERT_LABELS])
    torch.testing.assert_close(got, expected_probabilities(model, inputs / row["path"]), atol=2e-6, rtol=0)
    # the temporary folder is gone, nothing was written beside the zip
    assert sorted(p.name for p in zip_path.parent.iterdir()) == [zip_path.name, f"{zip_path.name}.sha256"]

    from radmi.bundle.predict import predict

    dicom = inputs / "a.dcm"
    summary = predict(zip_path, dicom, tmp_path / "one.csv", device="cpu", progress=False,
                      sha256=f"{digest}  {zip_path.name}")  # fmt: skip
    assert (summary.num_images, summary.num_predicted) == (1, 1)
    with pytest.raises(BundleError, match="SHA256 mismatch"):
        predict(zip_path, dicom, tmp_path / "two.csv", device="cpu", progress=False, sha256="0" * 64)
    with pytest.raises(BundleError, match="not to an unpacked folder"):
        predict(bundle_dir, dicom, tmp_path / "three.csv", device="cpu", progress=False, sha256=digest)
    assert not (tmp_path / "two.csv").exists() and not (tmp_path / "three.csv").exists()


def test_a_tampered_bundle_zip_is_refused_in_one_line(bundle_zip, inputs, tmp_path, capsys):
    zip_path, digest = bundle_zip
    tampered = tmp_path / zip_path.name
    tampered.write_bytes(zip_path.read_bytes() + b"\0")
    (tmp_path / f"{zip_path.name}.sha256").write_text(f"{digest}  {zip_path.name}\n")
    out = tmp_path / "results.csv"
    status = radmi_main(
        ["predict", "--bundle", str(tampered), "--input", str(inputs), "--out", str(out), "--device", "cpu",
         "--no-progress"]
    )  # fmt: skip
    assert status == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SHA256 mismatch" in lines[0], lines
    assert not out.exists()
    # a file that is not a zip, and a folder that is not a bundle, are named as such
    not_zip = tmp_path / "bundle.zip"
    not_zip.write_text("not a zip")
    assert radmi_main(["predict", "--bundle", str(not_zip), "--input", str(inputs), "--out", str(out)]) == 1
    assert "not a zip file" in capsys.readouterr().err
    assert radmi_main(["predict", "--bundle", str(tmp_path), "--input", str(inputs), "--out", str(out)]) == 1
    assert "not a findings bundle folder" in capsys.readouterr().err


def test_study_id_comes_from_a_mimic_style_study_folder(tmp_path):
    from radmi.bundle.inference import list_inputs, study_id_from_path

    assert study_id_from_path(tmp_path / "p10" / "p10000032" / "s50414267" / "x.dcm") == "50414267"
    assert study_id_from_path(tmp_path / "series1" / "x.dcm") == ""
    assert study_id_from_path(tmp_path / "s12ab" / "x.dcm") == ""
    study = tmp_path / "files" / "p10" / "p10000032" / "s50414267"
    study.mkdir(parents=True)
    (study / "img.dcm").write_bytes(b"")
    assert [row["study_id"] for row in list_inputs(tmp_path / "files")] == ["50414267"]


# ------------------------------------------------------------------------------------ hostile inputs (issue 17)
def test_links_loops_and_fifos_are_listed_as_bad_inputs_without_blocking(bundle, tmp_path):
    import os
    import signal

    model, bundle_dir = bundle
    folder = tmp_path / "odd"
    folder.mkdir()
    write_dicom(folder / "good.dcm", random_pixels(3))
    (folder / "linked.dcm").symlink_to(folder / "good.dcm")  # a link to a regular file is followed
    (folder / "loop.dcm").symlink_to(folder / "loop.dcm")
    (folder / "dangling").symlink_to(folder / "nowhere.dcm")
    os.mkfifo(folder / "pipe")  # no DICOM name: listed anyway, never opened
    rows = {row["dicom_id"]: row for row in list_inputs(folder)}
    assert set(rows) == {"good", "linked", "loop", "dangling", "pipe"}
    assert "link loop" in rows["loop"]["error"] and "dangling" in rows["dangling"]["error"]
    assert "FIFO" in rows["pipe"]["error"] and "error" not in rows["good"]
    from radmi.bundle.predict import predict

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("predict blocked")))
    signal.alarm(120)
    try:
        summary = predict(bundle_dir, folder, tmp_path / "odd.csv", device="cpu", progress=False)
    finally:
        signal.alarm(0)
    assert (summary.num_images, summary.num_predicted, summary.num_failed) == (5, 2, 3)
    table = pd.read_csv(tmp_path / "odd.csv", keep_default_na=False).set_index("dicom_id")
    assert table.loc["pipe", "status"] == "error" and "FIFO" in table.loc["pipe", "error"]
    assert table.loc["loop", "path"] == "loop.dcm"


def test_full_paths_option(bundle, inputs, tmp_path):
    model, bundle_dir = bundle
    out = tmp_path / "full.csv"
    assert radmi_main(
        ["predict", "--bundle", str(bundle_dir), "--input", str(inputs), "--out", str(out), "--device", "cpu",
         "--no-progress", "--full-paths"]
    ) == 0  # fmt: skip
    table = pd.read_csv(out, keep_default_na=False)
    assert all(Path(p).is_absolute() and Path(p).exists() for p in table["path"])
    assert all(not Path(row["path"]).is_absolute() for row in list_inputs(inputs))
    assert all(Path(row["path"]).is_absolute() for row in list_inputs(inputs, full_paths=True))


def test_non_finite_probabilities_are_an_error_row_and_the_json_is_valid(tmp_path):
    from types import SimpleNamespace

    from radmi.bundle.inference import ProbabilityWriter

    writer = ProbabilityWriter(tmp_path, ["A", "B"])
    batch = {"path": ["x.dcm", "y.dcm"], "dicom_id": ["x", "y"], "study_id": ["", ""], "index": [0, 1], "failed": []}
    engine = SimpleNamespace(
        state=SimpleNamespace(batch=batch, output={"pred": torch.tensor([[0.5, float("nan")], [0.1, 0.2]])})
    )
    writer.collect(engine)
    writer.write()

    def no_constants(name):
        raise AssertionError(f"bare {name} in the JSON")

    report = json.loads(writer.json_path.read_text(), parse_constant=no_constants)
    assert report["num_predicted"] == 1 and report["num_failed"] == 1
    first = report["predictions"][0]
    assert first["status"] == "error" and "non-finite" in first["error"] and "probabilities" not in first
    table = pd.read_csv(writer.csv_path, keep_default_na=False)
    assert list(table["status"]) == ["error", "ok"] and table.loc[0, "A"] == ""
