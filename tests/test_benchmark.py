"""``radmi benchmark``'s pieces: presets, row selection, result rows and tables, the CLI, the probe step."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from radmi.data.labels import CHEXPERT_LABELS
from radmi.eval import benchmark
from radmi.eval.benchmark import (
    DEFAULT_INITS,
    INITS,
    PRESETS,
    classification_row,
    pretrain_validation,
    results_markdown,
    select_inits,
)


def test_select_inits_accepts_names_and_slugs_in_table_order_of_request():
    assert select_inits(None) == list(DEFAULT_INITS)
    assert select_inits(None, default=PRESETS["standard"].inits) == ["random", "global MI", "local MI (max)"]
    assert select_inits("random,local_mi_max") == ["random", "local MI (max)"]
    assert select_inits(["TVDIM", "local MI (paper)", "tvdim"]) == ["TVDIM", "local MI (paper)"]
    with pytest.raises(ValueError, match="unknown init 'nope'"):
        select_inits("random,nope")
    with pytest.raises(ValueError, match="no init"):
        select_inits(" , ")


def test_paper_row_uses_real_recipe_keys_and_values():
    from radmi.bundle.paths import bundle_config
    from radmi.losses.critics import CRITICS
    from radmi.losses.estimators import ESTIMATORS
    from radmi.losses.local_mi import SENTENCE_MODES

    recipe = json.loads(bundle_config("radmi_cxr_pretrain").read_text())
    paper = INITS["local MI (paper)"]
    assert set(paper) <= set(recipe)
    assert {k: paper[k] for k in ("objective", "sentence_mode", "critic", "estimator")} == {
        "objective": "local", "sentence_mode": "sample", "critic": "concat_mlp", "estimator": "dv"}  # fmt: skip
    assert paper["critic"] in CRITICS and paper["estimator"] in ESTIMATORS
    assert paper["sentence_mode"] in SENTENCE_MODES
    # the critic the row asks for can be built at the presets' E, with the authors' shape (2/3, 1/3 of [v; s])
    from radmi.losses.objectives import PretrainObjective

    objective = PretrainObjective(paper["objective"], embed_dim=384, critic=paper["critic"],
                                  critic_kwargs=paper["critic_kwargs"], estimator=paper["estimator"],
                                  sentence_mode=paper["sentence_mode"])  # fmt: skip
    linears = [m for m in objective.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears][-2:] == [256, 1]


def test_standard_preset_gives_a_7x7_region_map_and_restricts_finetuning():
    from radmi.models.image import ImageEncoder

    standard = PRESETS["standard"]
    assert (standard.studies, standard.image_size, standard.crop_size, standard.seeds) == (2000, 128, 112, 3)
    assert standard.pretrain["local_stride"] == 16
    assert standard.mode_fractions("probe") == (0.01, 0.1, 1.0)
    assert standard.mode_fractions("finetune") == (0.1,)
    assert standard.mode_seeds("finetune", 3) == 1 and standard.mode_seeds("probe", 3) == 3
    assert standard.pretrain["val_every"] == standard.pretrain_epochs  # one validation, after the last epoch
    assert PRESETS["quick"].mode_fractions("finetune") == (0.01, 0.1, 1.0)
    encoder = ImageEncoder("resnet18", embed_dim=8, local_stride=standard.pretrain["local_stride"]).eval()
    with torch.no_grad():
        _, local = encoder(torch.zeros(1, 1, standard.crop_size, standard.crop_size))
    assert local.shape[-2:] == (7, 7)


def _metrics(macro: float, per_finding: dict[str, float | None], edema: float | None = None) -> dict:
    def est(value, status="ok"):
        return {
            "value": value,
            "ci_low": None if value is None else value - 0.05,
            "ci_high": None if value is None else value + 0.05,
            "status": status if value is None else "ok",
            "n_positive": 3,
            "n_negative": 5,
        }

    auroc = {
        n: est(per_finding.get(n), "not estimable (training rows: no positives)") for n in CHEXPERT_LABELS
    }
    out = {"macro_auroc": est(macro), "auroc": auroc, "edema": {}}
    if edema is not None:
        out["edema"] = {t: est(edema) for t in ("0v123", "01v23", "012v3")}
    return out


def test_classification_row_flattens_per_finding_and_edema():
    row = classification_row("random", "probe", 0.1, 2, _metrics(0.6, {"Cardiomegaly": 0.7}, edema=0.8))
    assert row["macro_auroc"] == 0.6 and row["ci_low"] == pytest.approx(0.55)
    assert row["auroc:Cardiomegaly"] == 0.7
    assert row["auroc:Cardiomegaly_ci_high"] == pytest.approx(0.75)
    assert row["auroc:Fracture"] is None
    assert row["auroc:Fracture_status"].startswith("not estimable")
    assert row["edema:01v23"] == 0.8


def test_results_markdown_tables():
    rows = []
    for seed, shift in enumerate((0.0, 0.02)):
        for frac in (0.01, 0.1, 1.0):
            rows.append(
                classification_row(
                    "random", "probe", frac, seed, _metrics(0.5 + shift, {"Cardiomegaly": 0.55 + shift}, 0.6)
                )
            )
            rows.append(classification_row("local MI (max)", "probe", frac, seed, _metrics(0.7 + shift, {"Cardiomegaly": 0.8 + shift}, 0.75)))  # fmt: skip
        rows.append(classification_row("local MI (max)", "finetune", 0.1, seed, _metrics(0.65 + shift, {"Cardiomegaly": 0.6})))  # fmt: skip
    facts = {"command": "radmi benchmark x", "data": "d", "hardware": "h", "wall_minutes": 1.0, "seeds": 2,
             "n_validation": 200}  # fmt: skip
    grounding = pd.DataFrame([{"model": "local MI (max)", "boxes": 3, "pointing": "0.5", "iou": "0.1"}])
    pretraining = {"local MI (max)": {"epoch": 6, "val_mi_nats": 0.9, "recall_at_1": 0.02, "recall_at_5": 0.1,
                                      "recall_at_10": 0.2}}  # fmt: skip
    text = results_markdown(pd.DataFrame(rows), grounding, facts, pretraining)
    macro_header = (
        "| image encoder init | linear probe 1% | linear probe 10% | linear probe 100% | finetune 10% |"
    )
    assert macro_header in text
    assert (
        "| random | 0.510 ± 0.127 | 0.510 ± 0.127 | 0.510 ± 0.127 | - |" in text
    )  # mean ± t(0.975, 1) * sd / sqrt 2
    assert "### linear probe, 10% of the labels" in text and "### finetune, 10% of the labels" in text
    assert "not estimable (training rows: no positives)" in text  # a status, never a number
    assert "## Pulmonary edema severity" in text and "linear probe 1%: 0v123" in text
    assert "finetune 10%: 0v123" not in text  # the fine-tune rows have no edema model
    assert "| local MI (max) | 6 | 0.900 | 0.020 | 0.100 | 0.200 | 0.025 | 4.0 |" in text
    one_seed = results_markdown(
        pd.DataFrame([r for r in rows if r["seed"] == 0]), grounding, {**facts, "seeds": 1}
    )
    assert "| random | 0.500 (0.450-0.550) |" in one_seed


def test_pretrain_validation_reads_the_last_validation(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "tensorboard"))
    for epoch, (mi, r5) in enumerate([(0.1, 0.03), (0.5, 0.09)], start=1):
        writer.add_scalar("val_mi_nats", mi, epoch)
        writer.add_scalar("recall_at_5", r5, epoch)
        writer.add_scalar("train_loss", -mi, epoch * 49)
    writer.close()
    values = pretrain_validation(tmp_path)
    assert values["epoch"] == 2
    assert values["val_mi_nats"] == pytest.approx(0.5)
    assert values["recall_at_5"] == pytest.approx(0.09)
    assert "train_loss" not in values
    assert pretrain_validation(tmp_path / "absent") == {}


def _cli(argv: list[str]) -> argparse.Namespace:
    from radmi.commands import benchmark as command

    parser = argparse.ArgumentParser()
    command.configure(parser)
    return parser.parse_args(argv)


def test_cli_presets_and_inits(monkeypatch, tmp_path, capsys):
    from radmi.commands import benchmark as command

    calls = []

    def fake(data, out, preset, seeds, argv, inits):
        calls.append((preset, seeds, inits))
        (tmp_path / "results.md").write_text("table\n")
        return tmp_path / "results.md"

    monkeypatch.setattr(benchmark, "run_benchmark", fake)
    base = ["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")]
    assert command.run(_cli([*base, "--quick"])) == 0
    assert command.run(_cli([*base, "--preset", "standard", "--inits", "random,local_mi_paper"])) == 0
    assert command.run(_cli(base)) == 0
    assert calls == [("quick", None, None), ("standard", None, "random,local_mi_paper"), ("full", None, None)]
    assert command.run(_cli([*base, "--quick", "--preset", "standard"])) == 2
    assert command.run(_cli([*base, "--preset", "huge"])) == 2
    assert command.run(_cli([*base, "--inits", "random,bogus"])) == 2
    assert len(calls) == 3
    assert "unknown init 'bogus'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> str:
    from radmi.data.manifest import MANIFEST_COLUMNS

    root = tmp_path_factory.mktemp("tiny_bench")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        positive = i % 2
        pixels = rng.integers(0, 60, size=(40, 36)).astype(np.uint8)
        if positive:
            pixels[10:30, 8:28] = 220
        Image.fromarray(pixels).save(root / f"img{i}.png")
        (root / f"rep{i}.txt").write_text("FINDINGS: text.\n")
        row = {"subject_id": f"1{i // 2:07d}", "study_id": f"5{i:07d}", "dicom_id": f"d{i}",
               "image_path": f"img{i}.png", "report_path": f"rep{i}.txt", "view": "PA",
               "split": ["train", "train", "validate", "test"][(i // 2) % 4], "edema_severity": str(i % 4)}  # fmt: skip
        for name in CHEXPERT_LABELS:
            row[name] = ""
        row["Cardiomegaly"] = "1.0" if positive else "0.0"
        rows.append(row)
    path = root / "manifest.csv"
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(path, index=False)
    return str(path)


def test_probe_step_writes_metrics_and_reuses_features(tiny_manifest, tmp_path):
    preset = PRESETS["smoke"]
    metrics = benchmark.probe("random", "random", 1.0, 0, tiny_manifest, tmp_path, preset)
    run = tmp_path / "classify" / "random" / "probe_1_seed0" / "eval" / "test"
    assert (run / "metrics.json").is_file() and (run / "report.md").is_file()
    assert sorted(p.name for p in (tmp_path / "features" / "random").iterdir()) == [
        "features_test.npz", "features_train.npz", "features_validate.npz"]  # fmt: skip
    card = metrics["auroc"]["Cardiomegaly"]
    assert card["status"] == "ok" and 0.0 <= card["value"] <= 1.0
    # blank findings are negatives under the default blank policy: no positives, so not estimable in training
    assert metrics["auroc"]["Fracture"]["status"].startswith("not estimable")
    assert set(metrics["edema"]) == {"0v123", "01v23", "012v3"}
    assert metrics["run"]["findings"]["Cardiomegaly"]["C"] in metrics["run"]["c_grid"]
    row = classification_row("random", "probe", 1.0, 0, metrics)
    assert row["auroc:Cardiomegaly"] == card["value"]


def test_edema_statuses_are_tabled_and_chance_recall_is_capped():
    metrics = _metrics(0.6, {"Cardiomegaly": 0.7})
    metrics["edema"] = {t: {"value": None, "ci_low": None, "ci_high": None, "status": "no positives"}
                        for t in ("0v123", "01v23", "012v3")}  # fmt: skip
    rows = [classification_row("random", "probe", 0.1, 0, metrics)]
    facts = {"command": "c", "data": "d", "hardware": "h", "wall_minutes": 0.1, "seeds": 1, "n_validation": 4}
    pretraining = {"local MI (max)": {"epoch": 1, "recall_at_5": 1.0}}
    text = results_markdown(pd.DataFrame(rows), pd.DataFrame(columns=["model", "boxes", "pointing", "iou"]),
                            facts, pretraining)  # fmt: skip
    assert "| random | no positives | no positives | no positives |" in text
    assert "| local MI (max) | 1 | - | - | 1.000 | - | 1.000 | 1.0 |" in text  # 5 of 4 reports: chance is 1


def test_every_preset_default_row_exists_and_ablations_change_one_setting_of_local_mi():
    from radmi.bundle.paths import bundle_config

    recipe = json.loads(bundle_config("radmi_cxr_pretrain").read_text())
    for preset in PRESETS.values():
        assert set(preset.inits) <= set(INITS)
    for name, overrides in INITS.items():
        assert overrides is None or set(overrides) <= set(recipe), name
    base = INITS["local MI (max)"]
    expected = {
        "local MI (isolated; no text mask)": {"mask_identical_text": False},
        "local MI (report context; text mask)": {"sentence_context": "report"},
        "local MI (4 x 4 regions)": {"local_stride": 32},
        "local MI (max; 6 epochs)": {"epochs": 6, "val_every": 6},
    }
    for name, change in expected.items():
        assert INITS[name] == {**base, **change}, name
        # each changed key moves the recipe off its default (so the row is a real ablation)
        assert all(recipe[key] != value for key, value in change.items()), name
