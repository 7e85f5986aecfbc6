"""Exporting a classification run as a MONAI bundle, verifying it, and MONAI's own bundle tools on it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from radmi.bundle.export import export_run, write_zip
from radmi.bundle.verify import (
    check_net_in_out,
    check_torchscript,
    load_network,
    parse_sha256,
    unpacked_bundle,
    verify_bundle,
)
from radmi.cli import main as radmi_main
from radmi.data.labels import CHEXPERT_LABELS
from radmi.errors import BundleError
from tests._bundle_fixtures import TINY_ENCODER, TINY_SIZE, make_tiny_run

NAME = "radmi_cxr_findings"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    model = make_tiny_run(root / "run")
    result = export_run(root / "run", root / "out", name=NAME, version="1.2.3", changelog="tiny test run")
    return model, result


def test_export_writes_folder_zip_and_hash(exported):
    model, result = exported
    assert result.bundle_dir.name == NAME
    for name in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "docs/README.md",
        "LICENSE",
    ):
        assert (result.bundle_dir / name).is_file(), name
    assert result.zip_path.name == f"{NAME}_v1.2.3.zip"
    digest = hashlib.sha256(result.zip_path.read_bytes()).hexdigest()
    assert result.sha256 == digest
    assert result.sha256_path.read_text() == f"{digest}  {result.zip_path.name}\n"
    with zipfile.ZipFile(result.zip_path) as archive:
        names = archive.namelist()
    # the layout monai.bundle download unpacks: everything under one folder named after the bundle
    assert all(n.startswith(f"{NAME}/") for n in names)
    assert f"{NAME}/models/model.pt" in names


def test_export_records_the_run_in_configs(exported):
    model, result = exported
    metadata = json.loads((result.bundle_dir / "configs" / "metadata.json").read_text())
    assert metadata["version"] == "1.2.3"
    assert metadata["changelog"]["1.2.3"] == "tiny test run"
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [TINY_SIZE, TINY_SIZE]
    assert metadata["required_packages_version"]["radmi"]
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert [channel_def[str(i)] for i in range(14)] == list(CHEXPERT_LABELS)
    inference = json.loads((result.bundle_dir / "configs" / "inference.json").read_text())
    assert inference["image_size"] == TINY_SIZE
    assert inference["network_def"]["_target_"] == "radmi.models.heads.FindingClassifier"
    assert inference["network_def"]["image_encoder"] == TINY_ENCODER
    shipped = torch.load(result.bundle_dir / "models" / "model.pt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(shipped[key], value), key


def test_zip_is_reproducible(exported, tmp_path):
    _, result = exported
    write_zip(result.bundle_dir, tmp_path / "again.zip")
    assert hashlib.sha256((tmp_path / "again.zip").read_bytes()).hexdigest() == result.sha256


def test_verify_accepts_matching_hash_and_refuses_a_mismatch(exported, tmp_path):
    _, result = exported
    report = verify_bundle(result.zip_path, sha256=result.sha256)
    assert report.sha256 == result.sha256
    assert report.checks[0] == "SHA256 matches"
    with pytest.raises(BundleError, match="SHA256 mismatch"):
        verify_bundle(result.zip_path, sha256="0" * 64)
    # a tampered copy is refused through the .sha256 file beside it
    tampered = tmp_path / result.zip_path.name
    tampered.write_bytes(result.zip_path.read_bytes() + b"\0")
    (tmp_path / result.sha256_path.name).write_text(result.sha256_path.read_text())
    with pytest.raises(BundleError, match="SHA256 mismatch"):
        verify_bundle(tampered)


def test_verify_command_exit_status(exported, capsys):
    _, result = exported
    assert radmi_main(["bundle", "verify", str(result.zip_path), "--sha256", "f" * 64]) == 1
    assert "SHA256 mismatch" in capsys.readouterr().err


def test_parse_sha256_accepts_bare_hash_and_sha256sum_lines():
    digest = "ab" * 32
    assert parse_sha256(digest) == digest
    assert parse_sha256(digest.upper() + "\n") == digest
    assert parse_sha256(f"{digest}  radmi_cxr_findings_v1.zip\n") == digest  # what `bundle export` writes
    assert parse_sha256(f"{digest} *radmi_cxr_findings_v1.zip") == digest  # sha256sum --binary
    assert parse_sha256(f"SHA256 (radmi_cxr_findings_v1.zip) = {digest}") == digest  # BSD / shasum --tag
    other = "cd" * 32
    listing = f"{other}  other.zip\n{digest}  radmi_cxr_findings_v1.zip\n"
    assert parse_sha256(listing, "radmi_cxr_findings_v1.zip") == digest
    with pytest.raises(BundleError, match="none for"):
        parse_sha256(listing, "missing.zip")
    for bad in ("", "abc", "zz" * 32, f"{digest[:-1]}  name.zip"):
        with pytest.raises(BundleError, match="SHA256"):
            parse_sha256(bad)


def test_verify_command_takes_bare_hash_sha256_line_and_sha256_file(exported, tmp_path, capsys):
    _, result = exported
    # a copy without the .sha256 beside it, so only the given hash is compared
    zip_copy = tmp_path / result.zip_path.name
    zip_copy.write_bytes(result.zip_path.read_bytes())
    line = result.sha256_path.read_text()
    assert line == f"{result.sha256}  {result.zip_path.name}\n"
    for extra in (
        ["--sha256", result.sha256],
        ["--sha256", line],  # "$(cat ZIP.sha256)", as the README words it
        ["--sha256", line.strip()],
        ["--sha256-file", str(result.sha256_path)],
    ):
        assert radmi_main(["bundle", "verify", str(zip_copy), *extra]) == 0, extra
        out = capsys.readouterr().out
        assert "ok  SHA256 matches" in out and f"sha256: {result.sha256}" in out, extra


def test_verify_command_wrong_hash_is_one_line(exported, tmp_path, capsys):
    _, result = exported
    wrong = tmp_path / "wrong.sha256"
    wrong.write_text(f"{'0' * 64}  {result.zip_path.name}\n")
    for extra in (["--sha256", f"{'0' * 64}  {result.zip_path.name}"], ["--sha256-file", str(wrong)]):
        assert radmi_main(["bundle", "verify", str(result.zip_path), *extra]) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and "SHA256 mismatch" in lines[0] and "Traceback" not in captured.err, lines
        assert "ok  " not in captured.out  # nothing was checked after the mismatch
    assert radmi_main(["bundle", "verify", str(result.zip_path), "--sha256", "not-a-hash"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not a SHA256" in lines[0], lines
    # --sha256 and --sha256-file together: argparse refuses (exit status 2)
    with pytest.raises(SystemExit) as exit_info:
        radmi_main(["bundle", "verify", str(result.zip_path), "--sha256", result.sha256,
                    "--sha256-file", str(result.sha256_path)])  # fmt: skip
    assert exit_info.value.code == 2
    # a folder has no hash
    with pytest.raises(BundleError, match="not to an unpacked folder"):
        verify_bundle(result.bundle_dir, sha256_file=result.sha256_path)


def test_unpacked_bundle_checks_the_hash_first_and_cleans_up(exported, tmp_path):
    _, result = exported
    with unpacked_bundle(result.zip_path, f"{result.sha256}  {result.zip_path.name}") as unpacked:
        root = unpacked.root
        assert unpacked.sha256_checked and unpacked.sha256 == result.sha256
        assert root.name == NAME and (root / "configs" / "inference.json").is_file()
    assert not root.exists()
    with pytest.raises(BundleError, match="SHA256 mismatch"), unpacked_bundle(result.zip_path, "1" * 64):
        pytest.fail("unpacked despite a wrong hash")
    # zip-slip: a member that would land outside the temporary folder is refused
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escaped.txt", "x")
    with pytest.raises(BundleError, match="escapes the extraction folder"), unpacked_bundle(evil):
        pytest.fail("unpacked a zip-slip archive")
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    with pytest.raises(BundleError, match="not a zip file"), unpacked_bundle(not_zip):
        pass


def test_torchscript_export_matches_the_run(exported, tmp_path):
    model, result = exported
    metadata = json.loads((result.bundle_dir / "configs" / "metadata.json").read_text())
    ts_path = check_torchscript(result.bundle_dir, metadata, keep=True)
    try:
        scripted = torch.jit.load(str(ts_path))
        x = torch.rand(2, 1, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=1e-5)
        # MONAI stores the metadata inside the TorchScript file
        extra = {"metadata.json": ""}
        torch.jit.load(str(ts_path), _extra_files=extra)
        assert json.loads(extra["metadata.json"])["version"] == "1.2.3"
    finally:
        ts_path.unlink()


def test_monai_verify_net_in_out_cli(exported):
    _, result = exported
    cmd = [
        sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def",
        "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=result.bundle_dir, capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data shape of network is verified with no error" in done.stdout + done.stderr


def test_net_in_out_mismatch_is_a_bundle_error(exported, tmp_path):
    _, result = exported
    broken = tmp_path / NAME
    broken.mkdir()
    for sub in ("configs", "models"):
        (broken / sub).mkdir()
    (broken / "configs" / "inference.json").write_text(
        (result.bundle_dir / "configs" / "inference.json").read_text()
    )
    metadata = json.loads((result.bundle_dir / "configs" / "metadata.json").read_text())
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = 13
    (broken / "configs" / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="output channel number"):
        check_net_in_out(broken)


def test_export_refuses_weights_that_do_not_fit(tmp_path):
    make_tiny_run(tmp_path / "run")
    model_json = tmp_path / "run" / "models" / "model.json"
    config = json.loads(model_json.read_text())
    config["image_encoder"]["embed_dim"] = 32  # the weights were saved with 16
    model_json.write_text(json.dumps(config))
    with pytest.raises(BundleError, match="does not fit network_def"):
        export_run(tmp_path / "run", tmp_path / "out", name=NAME)
    assert not (tmp_path / "out" / NAME).exists()
    assert not list((tmp_path / "out").glob("*.zip"))


def test_half_weights_halve_the_file_and_keep_the_outputs(tmp_path):
    model = make_tiny_run(tmp_path / "run")
    result = export_run(tmp_path / "run", tmp_path / "out", name=NAME, half_weights=True)
    weights = result.bundle_dir / "models" / "model.pt"
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    full_size = (tmp_path / "run" / "models" / "model.pt").stat().st_size
    assert weights.stat().st_size < 0.55 * full_size
    metadata = json.loads((result.bundle_dir / "configs" / "metadata.json").read_text())
    assert metadata["weights_dtype"] == "float16"
    loaded = load_network(result.bundle_dir)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(2, 1, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(loaded(x)), torch.sigmoid(model(x)), atol=5e-3, rtol=0)


def test_shipped_findings_bundle_verifies():
    from radmi.bundle.paths import bundle_dir

    shipped = bundle_dir(NAME)
    assert (shipped / "models" / "model.pt").stat().st_size <= 25 * 1024 * 1024
    report = verify_bundle(shipped)
    assert len(report.checks) == 6  # files, metadata, weights-only load, network, in/out, TorchScript


def test_shipped_pretrain_encoder_is_a_finetune_init():
    """``radmi finetune --init bundles/radmi_cxr_pretrain/models`` builds on the shipped float16 encoder weights."""
    from radmi.bundle.paths import bundle_dir
    from radmi.engines.classify import build_classifier

    models = bundle_dir("radmi_cxr_pretrain") / "models"
    assert (models / "image_encoder.pt").stat().st_size <= 25 * 1024 * 1024
    classifier = build_classifier(init=str(models), mode="linear")
    shipped = torch.load(models / "image_encoder.pt", weights_only=True)
    loaded = classifier.image_encoder.state_dict()
    assert set(loaded) == set(shipped)
    for key, value in shipped.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key
    assert all(p.dtype == torch.float32 for p in classifier.parameters())
