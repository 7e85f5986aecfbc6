"""``radmi demo --quick`` end to end. Marked slow although it took 41 s here: CI already runs
``radmi demo --quick`` as its own step before the tests, so the default suite need not run it twice."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from radmi.bundle.verify import read_sha256_file
from radmi.cli import main as radmi_main
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import read_manifest


@pytest.mark.slow
def test_quick_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert radmi_main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| local MI (pretrained) |" in printed and "| random init |" in printed

    summary = json.loads((out / "demo_summary.json").read_text())
    assert len(summary["steps"]) == 11
    for label in ("local MI (pretrained)", "random init"):
        metrics = pd.read_csv(
            out
            / "runs"
            / ("probe_local_mi_10pct" if "local" in label else "probe_random_10pct")
            / "eval"
            / "test"
            / "metrics.csv"
        )
        macro = metrics[(metrics["name"] == "macro") & (metrics["metric"] == "auroc")]["value"].iloc[0]
        assert summary["macro_auroc"][label].startswith(f"{macro:.3f}")

    # the bundle zip matches its published hash, and predict covered every test image of the manifest
    bundle = out / "bundle"
    zip_path = bundle / "radmi_cxr_findings_v0.1.0.zip"
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == read_sha256_file(f"{zip_path}.sha256")
    predictions = pd.read_csv(out / "predictions.csv")
    manifest = read_manifest(out / "manifest.csv")
    assert sorted(predictions["dicom_id"]) == sorted(manifest[manifest["split"] == "test"]["dicom_id"])
    assert (predictions["status"] == "ok").all()
    probabilities = predictions[list(CHEXPERT_LABELS)].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()

    pictures = list((out / "explain").glob("*_explain.png"))
    assert len(pictures) == 1 and pictures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
