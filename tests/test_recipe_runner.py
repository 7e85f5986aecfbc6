"""``radmi.bundle.run``: the one recipe runner (overrides, deprecated keys, exported config, radmi errors), the
layering it allows (no ``eval`` -> ``commands`` imports), and the small glue fixes of issue 12."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from radmi.bundle.run import (
    RENAMED_KEYS,
    parse_override,
    parse_overrides,
    recipe_config,
    rename_deprecated_keys,
    run_recipe,
)
from radmi.errors import BundleError, ModelLoadError, TrainingError

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# ---- overrides ------------------------------------------------------------------------------------------
def test_parse_override_reads_json_or_keeps_a_string():
    assert parse_override("lr_image=1e-4") == ("lr_image", 0.0001)
    assert parse_override(' encoder={"backbone": "resnet18"}') == ("encoder", {"backbone": "resnet18"})
    assert parse_override("backbone=resnet18") == ("backbone", "resnet18")
    assert parse_overrides(["a=1", "a=2", "b=true"]) == {"a": 2, "b": True}
    with pytest.raises(TrainingError, match="KEY=VALUE"):
        parse_override("no_equals_sign")


def test_old_keys_are_renamed_with_a_warning_and_the_later_value_wins():
    config = {"epochs": 30, "val_every": 1}
    with pytest.warns(FutureWarning, match="'max_epochs' is deprecated; use 'epochs'"):
        renamed = rename_deprecated_keys({"epochs": 3, "seed": 1, "max_epochs": 5}, config)
    assert renamed == {"seed": 1, "epochs": 5}
    with pytest.warns(FutureWarning, match="val_interval"):
        assert rename_deprecated_keys({"val_interval": 2}, config) == {"val_every": 2}
    # a recipe that still has the old key (or lacks the new one) keeps it untouched
    assert rename_deprecated_keys({"max_epochs": 5}, {"max_epochs": 1, "epochs": 1}) == {"max_epochs": 5}
    assert rename_deprecated_keys({"max_epochs": 5}, {}) == {"max_epochs": 5}


@pytest.mark.parametrize("bundle", ["radmi_cxr_pretrain", "radmi_cxr_findings"])
def test_both_recipes_use_the_same_epoch_and_validation_keys(bundle):
    config = json.loads(recipe_config(bundle).read_text())
    for old, new in RENAMED_KEYS.items():
        assert new in config and old not in config, (bundle, old, new)


# ---- finding the recipe and running it -------------------------------------------------------------------
def test_recipe_config_accepts_a_name_a_folder_or_a_file(tmp_path):
    by_name = recipe_config("radmi_cxr_findings", "evaluate.json")
    assert by_name.name == "evaluate.json" and by_name.is_file()
    assert recipe_config(by_name.parents[1], "evaluate.json") == by_name
    assert recipe_config(by_name) == by_name
    with pytest.raises(BundleError, match="no such shipped bundle"):
        recipe_config("no_such_bundle")
    with pytest.raises(BundleError, match="configs/train.json"):
        recipe_config(tmp_path)


def test_bundle_dir_needs_the_metadata_not_just_a_folder(tmp_path, monkeypatch):
    from radmi.bundle import paths

    monkeypatch.setattr(paths, "BUNDLES_ROOT", tmp_path)
    (tmp_path / "half_made").mkdir()
    with pytest.raises(BundleError, match="configs/metadata.json"):
        paths.bundle_dir("half_made")
    (tmp_path / "half_made" / "configs").mkdir()
    (tmp_path / "half_made" / "configs" / "metadata.json").write_text("{}")
    assert paths.bundle_dir("half_made") == tmp_path / "half_made"


def _write_recipe(folder: Path) -> Path:
    """A minimal bundle config: ``run`` writes ``epochs`` and ``tag`` to ``result.json`` in ``output_dir``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "imports": ["$import json", "$import pathlib"],
        "output_dir": str(folder / "out"),
        "epochs": 1,
        "tag": "recipe",
        "initialize": [],
        "run": [
            "$pathlib.Path(@output_dir).mkdir(parents=True, exist_ok=True)",
            "$pathlib.Path(@output_dir, 'result.json').write_text(json.dumps({'epochs': @epochs, 'tag': @tag}))",
        ],
        "finalize": [],
    }
    path = folder / "run.json"
    path.write_text(json.dumps(config))
    return path


def test_run_recipe_applies_overrides_and_exports_the_executed_config(tmp_path):
    recipe = _write_recipe(tmp_path / "bundle")
    out = tmp_path / "run"
    with pytest.warns(FutureWarning, match="max_epochs"):
        run_recipe(recipe, overrides={"output_dir": str(out), "max_epochs": 7, "tag": "cli"}, out=out)
    assert json.loads((out / "result.json").read_text()) == {"epochs": 7, "tag": "cli"}
    executed = json.loads((out / "config.json").read_text())
    assert executed["epochs"] == 7 and executed["tag"] == "cli" and "max_epochs" not in executed
    # radmi wrote it, so its later commands may evaluate it (radmi.trust)
    from radmi.trust import is_trusted

    assert is_trusted(out / "config.json") and is_trusted(out)
    # no out: nothing is exported
    other = tmp_path / "other"
    run_recipe(recipe, overrides={"output_dir": str(other)})
    assert (other / "result.json").is_file() and not (other / "config.json").exists()


def test_a_wrapped_radmi_error_is_raised_as_itself(tmp_path):
    """MONAI wraps errors of config expressions in RuntimeError; the runner re-raises the radmi error."""
    recipe = _write_recipe(tmp_path / "bundle")
    config = json.loads(recipe.read_text())
    config["imports"] += ["$import radmi", "$import radmi.engines.classify"]
    config["run"] = ["$radmi.engines.classify.build_classifier(init=@output_dir + '/missing.pt')"]
    recipe.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="missing.pt"):
        run_recipe(recipe)


def test_finetune_errors_are_one_line_radmi_messages(tmp_path, capsys):
    """``radmi finetune`` with a bad --init: radmi's one-line message and exit 1, not a MONAI traceback."""
    from radmi.cli import main

    missing = tmp_path / "no_such_run"
    status = main(["finetune", "--data", str(tmp_path), "--init", str(missing), "--out", str(tmp_path / "o")])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("radmi finetune: error:") and str(missing) in err and "\n" not in err


# ---- layering and small fixes ----------------------------------------------------------------------------
def test_eval_does_not_import_commands_and_commands_do_not_import_each_other():
    for path in sorted((ROOT / "radmi" / "eval").glob("*.py")):
        assert not any(name.startswith("radmi.commands") for name in _imports(path)), path
    for path in sorted((ROOT / "radmi" / "commands").glob("*.py")):
        assert not any(name.startswith("radmi.commands") for name in _imports(path)), path


def test_demo_backbone_is_a_real_backbone_that_fits_the_model_zoo_limit():
    import torch

    from radmi.commands.demo import DEMO_BACKBONE, FULL
    from radmi.models.image import BACKBONES, ImageEncoder

    assert DEMO_BACKBONE in BACKBONES
    encoder = ImageEncoder(backbone=DEMO_BACKBONE, embed_dim=FULL.embed_dim, local_stride=16)
    half_bytes = sum(p.numel() for p in encoder.parameters()) * torch.finfo(torch.float16).bits // 8
    assert half_bytes < 25e6


def test_classify_keeps_the_moved_loss_and_metric_importable():
    from radmi.engines import classify, classify_metrics
    from radmi.losses import classification

    assert classify.FindingLoss is classification.FindingLoss
    assert classify.MacroAUROC is classify_metrics.MacroAUROC
    assert classify.validation_score is classify_metrics.validation_score
    config = json.loads(recipe_config("radmi_cxr_findings").read_text())
    assert config["loss"]["_target_"] == "radmi.losses.classification.FindingLoss"
