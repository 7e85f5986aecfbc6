"""MONAI configs are code: radmi evaluates a bundle's or run's configs only when it is trusted (radmi.trust).

Also: ``bundle verify`` reports a pickle payload in ``model.pt`` in one line, and a bundle zip that would unpack
to more than the limit is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest

from radmi.bundle.export import export_run, write_zip
from radmi.bundle.verify import unpacked_bundle, verify_bundle
from radmi.cli import main as radmi_main
from radmi.errors import BundleError
from radmi.trust import (
    config_files,
    is_literal,
    is_trusted,
    plain_objective_reason,
    record_trusted,
    trust_file,
)
from tests._bundle_fixtures import make_tiny_run

NAME = "radmi_cxr_findings"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    make_tiny_run(root / "run")
    return export_run(root / "run", root / "out", name=NAME, version="0.0.1")


def _untrusted_copy(exported, folder: Path, marker: Path | None = None) -> Path:
    """A copy of the exported bundle with a different changelog (so a new hash), optionally with an
    inference.json whose network_def runs code that creates ``marker`` (MONAI's ``_requires_``)."""
    copy = folder / NAME
    shutil.copytree(exported.bundle_dir, copy)
    meta = copy / "configs" / "metadata.json"
    metadata = json.loads(meta.read_text())
    # trust goes by content: each copy gets its own changelog, so no other test's trusted copy matches it
    metadata["changelog"]["0.0.1"] = f"downloaded from somewhere ({folder})"
    meta.write_text(json.dumps(metadata, indent=4))
    if marker is not None:
        inference = copy / "configs" / "inference.json"
        config = json.loads(inference.read_text())
        config["network_def"]["_requires_"] = f"$__import__('pathlib').Path({str(marker)!r}).touch()"
        inference.write_text(json.dumps(config, indent=4))
    return copy


def test_the_trust_file_is_the_tests_own():
    assert trust_file() == Path(os.environ["RADMI_TRUST_FILE"])
    assert "radmi-trust-" in str(trust_file())


def test_radmi_written_bundles_are_trusted_and_edits_untrust_them(exported, tmp_path):
    assert is_trusted(exported.bundle_dir) and is_trusted(exported.zip_path)
    assert {p.name for p in config_files(exported.bundle_dir)} >= {"inference.json", "metadata.json"}
    copy = _untrusted_copy(exported, tmp_path)
    assert not is_trusted(copy)
    record_trusted(copy)
    assert is_trusted(copy)
    (copy / "configs" / "inference.json").write_text((copy / "configs" / "inference.json").read_text() + " ")
    assert not is_trusted(copy)  # only the hash counts


def test_shipped_bundles_are_trusted():
    from radmi.bundle.paths import bundle_dir

    assert is_trusted(bundle_dir(NAME)) and is_trusted(bundle_dir("radmi_cxr_pretrain"))


def test_verify_refuses_an_untrusted_folder_without_running_its_code(exported, tmp_path, capsys):
    marker = tmp_path / "ran"
    copy = _untrusted_copy(exported, tmp_path, marker)
    with pytest.raises(BundleError, match="not trusted") as caught:
        verify_bundle(copy)
    assert str(copy) in str(caught.value) and "--trust" in str(caught.value)
    assert not marker.exists()
    # the CLI says it in one line, exit status 1
    assert radmi_main(["bundle", "verify", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (MONAI's own warnings may come before it)
    assert err.startswith("radmi ") and "not trusted" in err and "radmi bundle trust" in err
    assert not marker.exists()
    # --trust runs it: the config really was code
    report = verify_bundle(copy, trust=True)
    assert marker.exists() and len(report.checks) == 6


def test_bundle_trust_command_lists_a_folder(exported, tmp_path, capsys):
    copy = _untrusted_copy(exported, tmp_path)
    assert radmi_main(["bundle", "trust", str(copy)]) == 0
    assert "trust file:" in capsys.readouterr().out
    assert is_trusted(copy)
    assert radmi_main(["bundle", "verify", str(copy)]) == 0
    assert radmi_main(["bundle", "trust", str(tmp_path / "nothing")]) == 1


def test_a_zip_is_trusted_by_a_given_hash_not_by_the_file_beside_it(exported, tmp_path):
    copy = _untrusted_copy(exported, tmp_path / "src")
    zipped = tmp_path / "dl" / f"{NAME}.zip"
    zipped.parent.mkdir()
    write_zip(copy, zipped)
    from radmi.data.cache_store import file_sha256

    digest = file_sha256(zipped)
    (zipped.parent / (zipped.name + ".sha256")).write_text(f"{digest}  {zipped.name}\n")
    # the .sha256 beside the zip came with it: it proves the download is whole, not who made it
    with pytest.raises(BundleError, match="not trusted") as caught:
        verify_bundle(zipped)
    assert str(zipped) in str(caught.value) and "radmi-bundle-" not in str(caught.value)
    unpacked_copy = tmp_path / "unpacked"  # what monai.bundle download leaves beside the zip
    shutil.copytree(copy, unpacked_copy)
    assert not is_trusted(unpacked_copy)
    assert verify_bundle(zipped, sha256=digest).checks[0] == "SHA256 matches"
    # verified against a hash the user gave: the zip and the same configs in the unpacked folder are now trusted
    assert is_trusted(zipped) and is_trusted(unpacked_copy)
    with unpacked_bundle(zipped, digest) as unpacked:
        assert unpacked.trusted
    with unpacked_bundle(zipped) as unpacked:
        assert unpacked.sha256_checked and unpacked.trusted  # listed by the verify above
    assert verify_bundle(zipped).checks[1:] == verify_bundle(zipped, sha256=digest).checks[1:]


def test_predict_refuses_an_untrusted_bundle(exported, tmp_path, capsys):
    from _bundle_fixtures import random_pixels, write_dicom

    marker = tmp_path / "ran"
    copy = _untrusted_copy(exported, tmp_path, marker)
    write_dicom(tmp_path / "in" / "a.dcm", random_pixels(0))
    args = ["predict", "--bundle", str(copy), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "p.csv"),
            "--no-progress", "--device", "cpu"]  # fmt: skip
    assert radmi_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (MONAI's own warnings may come before it)
    assert err.startswith("radmi ") and "not trusted" in err and "--trust" in err
    assert not marker.exists() and not (tmp_path / "p.csv").exists()
    assert radmi_main([*args, "--trust"]) == 0
    assert marker.exists() and (tmp_path / "p.csv").is_file()


def test_verify_reports_a_pickle_payload_in_one_line(exported, tmp_path, capsys):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    copy = _untrusted_copy(exported, tmp_path)
    (copy / "models" / "model.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(BundleError, match="not a plain weights file"):
        verify_bundle(copy, trust=True)
    assert radmi_main(["bundle", "verify", str(copy), "--trust"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (MONAI's own warnings may come before it)
    assert err.startswith("radmi ") and "model.pt" in err and "weights-only" in err
    assert not marker.exists()


def test_a_zip_over_the_size_limit_is_not_unpacked(tmp_path, monkeypatch):
    import radmi.bundle.verify as verify

    monkeypatch.setattr(verify, "MAX_EXTRACT_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{NAME}/configs/metadata.json", "{}")
        archive.writestr(f"{NAME}/models/model.pt", b"\0" * (2 << 20))  # 2 MiB declared, a few KB stored
    assert bomb.stat().st_size < 64 * 1024
    unpack_to = tmp_path / "tmp"
    unpack_to.mkdir()
    with pytest.raises(BundleError, match="over the 1 MiB limit"), unpacked_bundle(bomb, dir=unpack_to):
        pass
    assert not any(unpack_to.rglob("*.pt"))


def test_literal_and_plain_objective_checks():
    assert is_literal({"a": [1, "x", {"b": 2.0}]}) and not is_literal("$1+1") and not is_literal(["@net"])
    assert not is_literal({"_target_": "os.system"})
    plain = {"_target_": "radmi.losses.objectives.PretrainObjective",
             "loss": {"_target_": "radmi.losses.local_mi.LocalMILoss", "estimator": "infonce"}}  # fmt: skip
    assert plain_objective_reason(plain) is None
    assert "not a class defined in" in plain_objective_reason({"_target_": "os.system", "command": "true"})
    # a prefix match is not enough: MONAI would follow attributes from radmi.losses.base into torch
    walk = {"_target_": "radmi.losses.base.torch.hub.load", "repo_or_dir": ".", "model": "x", "source": "local"}
    assert "not a class defined in" in plain_objective_reason(walk)
    assert "not a class defined in" in plain_objective_reason({**plain, "_target_": "radmi.losses.LocalMILoss"})
    assert "expression" in plain_objective_reason({**plain, "loss": "$print(1)"})
    assert "_requires_" in plain_objective_reason({**plain, "_requires_": "x"})
