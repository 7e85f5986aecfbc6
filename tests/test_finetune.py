"""A tiny classification run through the findings bundle recipe; linear mode keeps the encoder bit-identical."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import MANIFEST_COLUMNS

TINY = {
    "image_size": 32,
    "batch_size": 8,
    "epochs": 2,
    "encoder": {"backbone": "resnet18", "embed_dim": 16, "local_stride": 16},
}


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> str:
    """24 PNG radiographs of 12 patients; Cardiomegaly = a bright disc, other labels random."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        positive = i % 2
        pixels = rng.integers(0, 60, size=(40, 36)).astype(np.uint8)
        if positive:
            yy, xx = np.mgrid[:40, :36]
            pixels[(yy - 22) ** 2 + (xx - 18) ** 2 < 80] = 220
        Image.fromarray(pixels).save(root / f"img{i}.png")
        (root / f"rep{i}.txt").write_text("FINDINGS: text.\n")
        row = {
            "subject_id": f"1{i // 2:07d}",
            "study_id": f"5{i:07d}",
            "dicom_id": f"d{i}",
            "image_path": f"img{i}.png",
            "report_path": f"rep{i}.txt",
            "view": "PA",
            "split": ["train", "train", "validate", "test"][(i // 2) % 4],
            "edema_severity": "",
        }
        for name in CHEXPERT_LABELS:
            row[name] = rng.choice(["1.0", "0.0", "-1.0", ""])
        row["Cardiomegaly"] = "1.0" if positive else "0.0"
        rows.append(row)
    path = root / "manifest.csv"
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(path, index=False)
    return str(path)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_linear_mode_keeps_encoder_bit_identical(tiny_manifest, tmp_path):
    from radmi.bundle.run import run_recipe
    from radmi.models.heads import load_finding_classifier
    from radmi.models.image import ImageEncoder

    pretrained = ImageEncoder(**TINY["encoder"])
    pretrained.save(tmp_path / "pretrain" / "models")
    before = _state(pretrained)
    out = tmp_path / "run"
    overrides = {"dataset_dir": tiny_manifest, "output_dir": str(out), "init": str(tmp_path / "pretrain")}
    workflow = run_recipe(
        "radmi_cxr_findings", "train.json", {**overrides, "mode": "linear", **TINY}, out=out
    )
    network = workflow.parser.get_parsed_content("network")
    after = _state(network.image_encoder)
    assert set(after) == set(before)
    # weights AND batch-norm running statistics (buffers) untouched by training
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert any("running_mean" in key for key in before)
    # the head did train, and the best model was written with its kwargs
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "model.json").is_file()
    assert json.loads((out / "models" / "model.json").read_text())["freeze_encoder"] is True
    reloaded = load_finding_classifier(out)
    assert torch.equal(
        reloaded.image_encoder.state_dict()["local_projection.weight"], before["local_projection.weight"]
    )
    # the optimizer holds exactly the findings head (weight and bias)
    optimizer = workflow.parser.get_parsed_content("optimizer")
    head = {id(p) for p in network.findings_head.parameters()}
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == head
    assert (out / "config.json").is_file() and any((out / "tensorboard").iterdir())

    # evaluation of the same run through the command line
    from radmi.cli import main

    assert main(["evaluate", str(out), "--data", tiny_manifest, "--split", "test", "--bootstrap", "50"]) == 0
    result = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert result["n_samples"] == 6 and result["n_patients"] == 3
    assert result["auroc"]["Cardiomegaly"]["status"] == "ok"
    assert result["run"]["split"] == "test"
    assert (out / "eval" / "test" / "roc.png").stat().st_size > 0
    table = pd.read_csv(out / "eval" / "test" / "metrics.csv")
    assert set(table["name"]) >= {"macro", "Cardiomegaly"}


@pytest.mark.slow
def test_finetune_mode_trains_encoder(tiny_manifest, tmp_path):
    """Fine-tuning must change the encoder's weights (every parameter tensor), not only the heads'."""
    from radmi.commands.finetune import run_recipe
    from radmi.models.image import ImageEncoder

    pretrained = ImageEncoder(**TINY["encoder"])
    pretrained.save(tmp_path / "pretrain" / "models")
    before = {name: p.detach().clone() for name, p in pretrained.named_parameters()}
    out = tmp_path / "run"
    workflow = run_recipe(
        "train.json",
        out=out,
        dataset_dir=tiny_manifest,
        output_dir=str(out),
        init=str(tmp_path / "pretrain"),
        mode="finetune",
        seed=1,
        **{**TINY, "epochs": 1},
    )
    network = workflow.parser.get_parsed_content("network")
    assert all(p.requires_grad for p in network.parameters())
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 1
    after = dict(network.image_encoder.named_parameters())
    assert set(after) == set(before)
    unchanged = [name for name in before if torch.equal(before[name], after[name].detach().cpu())]
    assert not unchanged, (
        f"fine-tuning left {len(unchanged)} encoder parameters unchanged, e.g. {unchanged[:3]}"
    )
