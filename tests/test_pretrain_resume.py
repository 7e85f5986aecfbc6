"""Exact resume: a run SIGKILLed mid-epoch and resumed from its last checkpoint ends with bit-identical weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import torch
from pretrain_data import TINY_OVERRIDES, prepare_tiny, set_args

from radmi.cli import main
from radmi.engines.checkpoint import latest_checkpoint


def _weights(run_dir) -> dict[str, torch.Tensor]:
    """Every exported tensor of a finished run: image encoder, text encoder, critic."""
    from radmi.models.text import load_text_encoder

    models = run_dir / "models"
    state = {f"image.{k}": v for k, v in torch.load(models / "image_encoder.pt", weights_only=True).items()}
    state.update({f"critic.{k}": v for k, v in torch.load(models / "critic.pt", weights_only=True).items()})
    state.update({f"text.{k}": v for k, v in load_text_encoder(models / "text_encoder").state_dict().items()})
    return state


def test_sigkill_mid_epoch_then_resume_gives_the_same_final_weights(tmp_path):
    tiny = prepare_tiny(tmp_path / "tiny")
    # 16 training studies / batch 4 = 4 iterations per epoch; checkpoints every 3 iterations fall mid-epoch
    overrides = dict(
        TINY_OVERRIDES, text_model=str(tiny["bert"]), epochs=3, checkpoint_every=3, checkpoint_keep=5
    )
    common = ["pretrain", "--data", str(tiny["cache"]), "--objective", "local"] + set_args(overrides)

    reference = tmp_path / "uninterrupted"
    assert main(common + ["--out", str(reference)]) == 0

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-m", "radmi", *common, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while latest_checkpoint(killed / "checkpoints") is None and process.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no checkpoint in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    last = latest_checkpoint(killed / "checkpoints")
    iteration = int(re.search(r"=(\d+)\.pt$", last.name).group(1))
    assert iteration % 4 != 0 and iteration < 12  # killed mid-epoch, before the end
    assert not (killed / "models").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (killed / "checkpoints").glob("*.pt")}

    assert main(common + ["--out", str(killed), "--resume"]) == 0
    expected, resumed = _weights(reference), _weights(killed)
    assert expected.keys() == resumed.keys()
    different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # the resumed run really continued from the checkpoint: it rewrote none of the killed run's checkpoints
    after = {p.name: p.stat().st_mtime_ns for p in (killed / "checkpoints").glob("*.pt")}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert latest_checkpoint(killed / "checkpoints").name == "checkpoint_iteration=12.pt"
