"""A NaN loss stops pretraining with a TrainingError naming the iteration, and no checkpoint holds NaN weights."""

from __future__ import annotations

import pytest
import torch
from pretrain_data import TINY_OVERRIDES, prepare_tiny

from radmi.bundle.paths import bundle_config
from radmi.errors import TrainingError


def test_nan_loss_stops_before_the_step_and_checkpoints_stay_finite(tmp_path):
    from monai.bundle import ConfigWorkflow

    tiny = prepare_tiny(tmp_path / "tiny")
    out = tmp_path / "run"
    overrides = dict(
        TINY_OVERRIDES, text_model=str(tiny["bert"]), epochs=1, checkpoint_every=1, checkpoint_keep=10
    )
    overrides["dataset_dir"], overrides["output_dir"] = str(tiny["cache"]), str(out)
    # the recipe's own batch preparation, except that the 3rd batch's images become NaN
    overrides["train#prepare_batch"] = {
        "_target_": "pretrain_data.PoisonedBatch",
        "nan_at": 3,
        "augment": "@train#augment",
        "channels_last": False,
    }
    config = bundle_config("radmi_cxr_pretrain")
    workflow = ConfigWorkflow(config_file=str(config), logging_file=False, workflow_type="train", **overrides)
    workflow.initialize()
    with pytest.raises(RuntimeError) as raised:  # MONAI's config runner wraps what the expression raised
        workflow.run()
    cause = raised.value.__cause__
    assert isinstance(cause, TrainingError)
    assert "the loss is nan at iteration 3 (epoch 1)" in str(cause)

    saved = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert saved == ["checkpoint_iteration=1.pt", "checkpoint_iteration=2.pt"]
    for name in saved:
        state = torch.load(out / "checkpoints" / name, map_location="cpu", weights_only=True)
        for part in ("network", "objective"):
            assert all(torch.isfinite(v).all() for v in state[part].values() if v.is_floating_point())
    network = workflow.parser.get_parsed_content("network")
    assert all(
        torch.isfinite(p).all() for p in network.parameters()
    )  # the NaN step never reached the weights
    assert not (out / "models").exists()
