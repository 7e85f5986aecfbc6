"""`radmi explain`: the PNG grid has the expected size, and a (tiny, untrained) run gives one map per sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from radmi.eval.explain import Box, draw_explanation, figure_size


def test_draw_writes_png_of_expected_size(tmp_path):
    image = np.linspace(0, 1, 80 * 60, dtype=np.float32).reshape(80, 60)
    maps = np.random.default_rng(0).normal(size=(3, 5, 4))
    sentences = ["The heart is mildly enlarged.", "Small right pleural effusion " * 4, "No pneumothorax."]
    path = draw_explanation(
        image, maps, sentences, tmp_path / "x.png", boxes=[Box(5, 40, 25, 70, "Effusion", 1)]
    )
    with Image.open(path) as png:
        assert png.size == figure_size(3) == (4 * 320, 400)
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas
    # 5 sentences wrap to a second row of panels
    assert figure_size(5) == (4 * 320, 2 * 400)
    with pytest.raises(ValueError):
        draw_explanation(image, maps[:2], sentences, tmp_path / "y.png")


@pytest.fixture(scope="module")
def tiny_local_run(tmp_path_factory):
    """A pretraining run directory with untrained parts, as `radmi pretrain` lays it out."""
    from radmi.bundle.paths import bundle_config
    from radmi.losses.objectives import PretrainObjective
    from radmi.models.hub import OFFLINE_DEFAULT, load_tokenizer
    from radmi.models.image import ImageEncoder
    from radmi.models.text import TextEncoder

    run = tmp_path_factory.mktemp("pretrain_run")
    models = run / "models"
    torch.manual_seed(0)
    ImageEncoder(backbone="resnet18", embed_dim=384, local_stride=16).save(models)
    text_dir = TextEncoder(OFFLINE_DEFAULT, max_sentences=4).save_pretrained(models / "text_encoder")
    load_tokenizer(OFFLINE_DEFAULT).save_pretrained(text_dir)
    objective = PretrainObjective(kind="local", embed_dim=384)
    torch.save(objective.state_dict(), models / "critic.pt")
    config = json.loads(bundle_config("radmi_cxr_pretrain").read_text())
    config.update(
        objective="local", embed_dim=384, image_size=64, max_length=48, max_sentences=4, critic="dot"
    )
    (run / "config.json").write_text(json.dumps(config))
    return run, objective


def test_explain_end_to_end(tiny_local_run, tmp_path):
    from radmi.cli import main
    from radmi.eval.explain import PretrainedRun

    run_dir, _ = tiny_local_run
    pixels = (np.random.default_rng(1).random((90, 70)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "abc.png")
    report = tmp_path / "r.txt"
    report.write_text(
        "FINDINGS: The heart is enlarged. There is a small left effusion.\n\nIMPRESSION: Cardiomegaly.\n"
    )
    boxes = tmp_path / "finding-locations.csv.gz"
    import pandas as pd

    pd.DataFrame(
        [
            {
                "dicom_id": "abc",
                "study_id": "5",
                "label": "Cardiomegaly",
                "side": "",
                "zone": "",
                "x0": 10,
                "y0": 20,
                "x1": 50,
                "y1": 70,
                "sentence_index": 0,
            }
        ]
    ).to_csv(boxes, index=False)
    assert (
        main(
            [
                "explain",
                str(tmp_path / "abc.png"),
                "--report",
                str(report),
                "--run",
                str(run_dir),
                "--out",
                str(tmp_path / "out"),
                "--boxes",
                str(boxes),
            ]
        )
        == 0
    )
    with Image.open(tmp_path / "out" / "abc_explain.png") as png:
        assert png.size == figure_size(3)

    run = PretrainedRun(run_dir)
    image = torch.rand(1, 64, 64)
    maps = run.sentence_maps(image, ["The heart is enlarged.", "Small left effusion.", "Cardiomegaly."])
    assert maps.shape == (3, 4, 4)  # 3 sentences, 64 / 16 regions a side
    # equals the critic applied by hand: the dot critic on the region and sentence features
    tokens = run.tokenize(["The heart is enlarged.", "Small left effusion.", "Cardiomegaly."])
    with torch.no_grad():
        text = run.text_encoder(tokens["input_ids"], tokens["attention_mask"], tokens["sentence_ids"])
        _, local = run.image_encoder(image[None])
        expected = run.objective.loss.critic.paired(
            local.flatten(2).transpose(1, 2), text["sentences"][:, :3]
        )
    np.testing.assert_allclose(maps, expected[0].T.reshape(3, 4, 4).numpy(), rtol=1e-5, atol=1e-6)


def test_evaluate_grounding_end_to_end(tiny_local_run, tmp_path):
    import pandas as pd

    from radmi.cli import main
    from radmi.data.demo.generate import generate

    run_dir, _ = tiny_local_run
    data = tmp_path / "demo"
    generate(data, studies=12, seed=0, size=96, compress="none", progress=False)
    out = tmp_path / "grounding"
    assert main(["evaluate-grounding", str(run_dir), "--data", str(data), "--split", "train",
                 "--bootstrap", "50", "--out", str(out)]) == 0  # fmt: skip
    pairs = pd.read_csv(out / "pairs.csv")
    counts = json.loads((out / "counts.json").read_text())
    locations = pd.read_csv(data / "finding-locations.csv.gz", dtype={"dicom_id": str})
    assert (
        counts["boxes"] + counts["skipped_sentence_truncated"]
        == locations["dicom_id"].isin(pairs["dicom_id"]).sum()
    )
    assert len(pairs) > 0 and set(pairs["pointing"]) <= {0.0, 1.0}
    for column in ("iou", "uniform_pointing", "uniform_iou", "centre_iou"):
        assert pairs[column].between(0, 1).all()
    summary = pd.read_csv(out / "summary.csv")
    overall = summary[(summary["label"] == "overall") & (summary["score"] == "pointing")].iloc[0]
    assert overall["mean"] == pytest.approx(pairs["pointing"].mean())
    assert "overall" in (out / "report.md").read_text()
