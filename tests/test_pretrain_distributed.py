"""Two pretraining processes (torchrun, gloo on the CPU) train one DDP model and stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretrain_data import TINY_OVERRIDES, prepare_tiny


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(tmp_path):
    tiny = prepare_tiny(tmp_path / "tiny")
    out = tmp_path / "run"
    overrides = dict(
        TINY_OVERRIDES, text_model=str(tiny["bert"]), epochs=1, checkpoint_every=2, backend="gloo"
    )
    overrides.update(dataset_dir=str(tiny["cache"]), output_dir=str(out))
    out.mkdir()
    tests_dir = Path(__file__).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(tests_dir / "pretrain_ddp_worker.py"),
        json.dumps(overrides),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["ddp"] for r in ranks)
    # the global batch of 4 is split into 2 per process, and the processes see disjoint halves of the data
    assert ranks[0]["batch_size"] == 2
    assert not set(ranks[0]["samples"].tolist()) & set(ranks[1]["samples"].tolist())
    for part in ("network", "objective"):
        first, second = ranks[0][part], ranks[1][part]
        assert first.keys() == second.keys()
        different = [k for k in first if not torch.equal(first[k], second[k])]
        assert first and not different, f"{part} parameters differ between ranks: {different[:3]}"
    # training changed the weights, and only rank 0 wrote checkpoints (one file per interval)
    initial = torch.load(out / "checkpoints" / "checkpoint_iteration=2.pt", weights_only=True)["network"]
    assert any(not torch.equal(initial[k], ranks[0]["network"][k]) for k in initial)
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        "checkpoint_iteration=2.pt",
        "checkpoint_iteration=4.pt",
    ]
    assert (out / "models" / "image_encoder.pt").is_file()
