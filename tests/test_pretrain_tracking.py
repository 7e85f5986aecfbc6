"""Opt-in MLflow tracking of pretraining, through MONAI's bundle tracking (``--tracking mlflow``).

Both entry points run the recipe with MONAI's stock MLflow settings (a SQLite store in ``RUN_DIR/mlruns.db``);
the logged values are checked against the same run's TensorBoard events.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.utils import path_to_sqlite_uri
from pretrain_data import TINY_OVERRIDES, prepare_tiny, set_args

from radmi.bundle.paths import bundle_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return prepare_tiny(tmp_path_factory.mktemp("tiny"))


def _tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _mlflow_run(run_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=path_to_sqlite_uri(str(run_dir / "mlruns.db")))
    experiment = client.get_experiment_by_name("monai_experiment")
    assert experiment is not None, "no MLflow experiment was recorded"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def _history(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def _assert_same_series(
    recorded: list[tuple[int, float]], expected: list[tuple[int, float]], key: str
) -> None:
    assert [step for step, _ in recorded] == [step for step, _ in expected], key
    assert [value for _, value in recorded] == pytest.approx([value for _, value in expected], rel=1e-6), key


@pytest.mark.parametrize("entry_point", ["radmi pretrain", "monai.bundle run"])
def test_tracking_mlflow_records_the_losses_and_held_out_metrics(tiny, tmp_path, capsys, entry_point):
    out = tmp_path / "run"
    # 16 training pairs in batches of 4 -> 4 iterations an epoch; 2 epochs, every iteration logged
    overrides = dict(TINY_OVERRIDES, text_model=str(tiny["bert"]), checkpoint_every=100, log_every=1)
    if entry_point == "radmi pretrain":
        from radmi.cli import main

        argv = ["pretrain", "--data", str(tiny["cache"]), "--out", str(out), "--epochs", "2"]
        assert main(argv + ["--tracking", "mlflow"] + set_args(overrides)) == 0
        assert (
            f"mlflow ui --backend-store-uri {path_to_sqlite_uri(str(out / 'mlruns.db'))}"
            in capsys.readouterr().out
        )
    else:
        from monai.bundle import run

        run(
            config_file=str(bundle_config("radmi_cxr_pretrain")),
            dataset_dir=str(tiny["cache"]),
            output_dir=str(out),
            tracking="mlflow",
            save_execute_config=str(out / "config.json"),
            **dict(overrides, epochs=2),
        )

    client, run_record = _mlflow_run(out)
    board = _tensorboard_scalars(out)
    train_loss = _history(client, run_record, "train_loss")
    assert [step for step, _ in train_loss] == list(range(1, 9))
    _assert_same_series(train_loss, board["train_loss"], "train_loss")
    for key in ("val_mi_nats", "recall_at_1", "recall_at_5", "recall_at_10"):
        history = _history(client, run_record, key)
        assert [step for step, _ in history] == [1, 2], key
        _assert_same_series(history, board[key], key)
    recalls = [
        value for key in ("recall_at_1", "recall_at_5") for _, value in _history(client, run_record, key)
    ]
    assert all(0.0 <= value <= 1.0 for value in recalls)
    # the learning rate of each parameter group (text, image, critic) is recorded with the loss
    text_lr = _history(client, run_record, "lr_group_0")
    assert len(text_lr) == 8 and max(value for _, value in text_lr) <= 2e-5
    # the executed recipe is kept as an artifact, so the run can be repeated
    artifacts = [entry.path for entry in client.list_artifacts(run_record.info.run_id)]
    assert "config.json" in artifacts, artifacts
    local = client.download_artifacts(run_record.info.run_id, "config.json", str(tmp_path / "artifact"))
    recorded = json.loads(Path(local).read_text())
    assert recorded["output_dir"] == str(out) and recorded["log_every"] == 1
