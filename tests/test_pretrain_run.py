"""End-to-end pretraining through the bundle recipe, and the engine's building blocks on exact values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pretrain_data import TINY_OVERRIDES, prepare_tiny, set_args

from radmi.bundle.paths import bundle_config
from radmi.engines.checkpoint import RandomStates, latest_checkpoint
from radmi.engines.distributed import ResumableSampler
from radmi.engines.pretrain import amp_settings, build_optimizer
from radmi.engines.pretrain_metrics import retrieval_ranks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return prepare_tiny(tmp_path_factory.mktemp("tiny"))


def _finite_state(path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_monai_bundle_run_prepares_the_cache_and_exports_models(tiny, tmp_path):
    """``monai.bundle run`` on the recipe, unchanged, from a manifest: cache, checkpoints, models, TensorBoard."""
    from monai.bundle import run

    out = tmp_path / "run"
    overrides = dict(TINY_OVERRIDES, text_model=str(tiny["bert"]), epochs=1, checkpoint_every=2, log_every=1)
    run(
        config_file=str(bundle_config("radmi_cxr_pretrain")),
        dataset_dir=str(tiny["manifest"]),
        output_dir=str(out),
        **overrides,
    )

    assert (out / "cache" / "cache.json").is_file()
    # 16 training studies, batch 4 -> 4 iterations; checkpoints every 2 keep the last two
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        "checkpoint_iteration=2.pt",
        "checkpoint_iteration=4.pt",
    ]
    assert latest_checkpoint(out / "checkpoints").name == "checkpoint_iteration=4.pt"
    models = out / "models"
    assert json.loads((models / "image_encoder.json").read_text())["backbone"] == "resnet18"
    assert _finite_state(models / "image_encoder.pt") and _finite_state(models / "critic.pt")
    assert (models / "text_encoder" / "config.json").is_file() and (
        models / "text_encoder" / "tokenizer.json"
    ).is_file()
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    # with log_every=1 the training loss and MI reach TensorBoard each iteration, the held-out MI each epoch
    assert {"train_loss", "train_mi_nats"} <= set(scalars), scalars

    from radmi.models.image import load_image_encoder

    encoder = load_image_encoder(out)
    checkpoint = torch.load(
        out / "checkpoints" / "checkpoint_iteration=4.pt", map_location="cpu", weights_only=True
    )
    exported = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}
    assert all(torch.equal(exported[k], checkpoint["network"][k]) for k in exported)


def test_radmi_pretrain_runs_the_same_recipe_with_tvdim(tiny, tmp_path, capsys):
    from radmi.cli import main

    out = tmp_path / "run"
    overrides = dict(TINY_OVERRIDES, text_model=str(tiny["bert"]), checkpoint_every=100)
    argv = [
        "pretrain",
        "--data",
        str(tiny["cache"]),
        "--out",
        str(out),
        "--objective",
        "tvdim",
        "--epochs",
        "1",
    ]
    assert main(argv + set_args(overrides)) == 0

    printed = capsys.readouterr().out
    assert str(out / "checkpoints") in printed and str(out / "tensorboard") in printed
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "tvdim" and config["epochs"] == 1 and config["lr_text"] == 2e-05
    critic = torch.load(out / "models" / "critic.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("loss.intra_critic") for k in critic) or any(
        k.startswith("loss.inter_critic") for k in critic
    )
    assert not (out / "cache").exists()  # a cache given as --data is used in place


def test_retrieval_ranks_match_a_brute_force_count():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(10, 10, generator=generator)
    scores[3, 5] = scores[3, 3]  # a tie counts against the true report
    ranks = retrieval_ranks(
        lambda i, t: scores[i["rows"]][:, t["cols"]],
        {"rows": torch.arange(10)},
        {"cols": torch.arange(10)},
        chunk=3,
    )
    expected = [sum(scores[i, j] >= scores[i, i] for j in range(10)) - 1 for i in range(10)]
    assert ranks.tolist() == [int(e) for e in expected]
    assert ranks[3] >= 1


def test_resumable_sampler_skips_exactly_and_matches_distributed_sampler():
    from torch.utils.data.distributed import DistributedSampler

    data = list(range(23))
    sampler = ResumableSampler(data, num_replicas=2, rank=1, seed=7)
    reference = DistributedSampler(data, num_replicas=2, rank=1, seed=7, drop_last=True)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        reference.set_epoch(epoch)
        full = list(reference)
        assert list(sampler) == full
        sampler.skip(4)
        assert list(sampler) == full[4:]
        assert list(sampler) == full  # skipping is used once
    state = sampler.state_dict()
    other = ResumableSampler(data, num_replicas=2, rank=1, seed=0)
    other.load_state_dict(state)
    assert list(other) == list(sampler)


def test_random_states_round_trip_through_weights_only_load(tmp_path):
    import random

    states = RandomStates()
    torch.save(states.state_dict(), tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    states.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_optimizer_has_one_group_per_part_with_the_recipe_rates():
    from torch import nn

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder, self.text_encoder = nn.Linear(2, 2), nn.Linear(2, 2)

    network, objective = Network(), nn.Linear(2, 1)
    network.text_encoder.bias.requires_grad_(False)
    optimizer = build_optimizer(network, objective, lr_text=2e-5, lr_image=5e-4, lr_critic=1e-3)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert {name: g["lr"] for name, g in groups.items()} == {"text": 2e-5, "image": 5e-4, "critic": 1e-3}
    assert [p is network.text_encoder.weight for p in groups["text"]["params"]] == [True]
    assert len(groups["critic"]["params"]) == 2


def test_amp_is_off_on_the_cpu_and_validated():
    assert amp_settings("bf16", "cpu") == (False, {})
    assert amp_settings("none", "cpu") == (False, {})
    with pytest.raises(ValueError):
        amp_settings("fp8", "cpu")


def test_latest_checkpoint_ignores_partial_writes(tmp_path):
    for name in (
        "checkpoint_iteration=9.pt",
        "checkpoint_iteration=12.pt",
        "tmpabc123",
        "checkpoint_iteration=7.pt.part",
    ):
        (tmp_path / name).write_bytes(b"x")
    assert latest_checkpoint(tmp_path).name == "checkpoint_iteration=12.pt"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_progress_bar_shows_the_loss_of_each_iteration(tiny, tmp_path, capsys):
    """The bar reads the loss from MONAI's decollated trainer output and shows the MI estimate beside it."""
    import re

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from radmi.cli import main

    out = tmp_path / "run"
    overrides = dict(TINY_OVERRIDES, text_model=str(tiny["bert"]), checkpoint_every=100, log_every=1)
    overrides["progress_bar"] = True
    assert (
        main(
            ["pretrain", "--data", str(tiny["cache"]), "--out", str(out), "--epochs", "1"]
            + set_args(overrides)
        )
        == 0
    )

    shown = re.findall(r"loss=(-?[\d.e+-]+), mi=(-?[\d.e+-]+)", capsys.readouterr().err)
    assert shown, "no progress bar with loss and mi"
    last_loss = float(shown[-1][0])
    logged = EventAccumulator(str(out / "tensorboard")).Reload().Scalars("train_loss")
    assert last_loss == pytest.approx(logged[-1].value, rel=1e-2, abs=1e-3)
