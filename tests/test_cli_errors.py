"""Every command fails in one line (``radmi <command>: error: <file>: <reason>``, exit 1) on a typical wrong
input; ``--debug`` shows the traceback; runs are quiet below ``-v``; the silent wrong results a new user hit
(an empty train split, a cache of another image size, a run of the wrong kind) are errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from pretrain_data import TINY_OVERRIDES, prepare_tiny, set_args, write_tiny_manifest

from radmi.cli import main
from radmi.errors import RadmiError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return prepare_tiny(tmp_path_factory.mktemp("tiny"))


def _fake_run(folder: Path, kind: str) -> Path:
    """The files that make a folder look like a finished run of ``kind`` (contents irrelevant here)."""
    (folder / "models").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if kind == "pretrain":
        (folder / "models" / "image_encoder.pt").write_bytes(b"")
        (folder / "models" / "text_encoder").mkdir()
    else:
        (folder / "models" / "model.pt").write_bytes(b"")
    return folder


def _wrong_inputs(tmp: Path) -> dict[str, list[str]]:
    missing = str(tmp / "missing")
    a_file = tmp / "a_file.txt"
    a_file.write_text("not a folder")
    report = tmp / "report.txt"
    report.write_text("FINDINGS: Clear lungs.\n")
    probe = _fake_run(tmp / "probe_run", "finetune")
    pretrain = _fake_run(tmp / "pretrain_run", "pretrain")
    return {
        "demo": ["demo", "--quick", "--out", str(a_file)],
        "demo-data": ["demo-data", "--out", "/proc/radmi-cannot-write-here", "--studies", "2"],
        "manifest": ["manifest", "check", missing + ".csv"],
        "label": ["label", missing + ".csv", "--out", str(tmp / "labels.csv")],
        "prepare": ["prepare", missing + ".csv", "--out", str(tmp / "cache")],
        "pretrain": ["pretrain", "--data", missing, "--out", str(tmp / "run")],
        "finetune": ["finetune", "--data", missing, "--out", str(tmp / "run")],
        "evaluate": ["evaluate", str(pretrain), "--data", missing],
        "evaluate-grounding": ["evaluate-grounding", str(probe), "--data", missing],
        "benchmark": ["benchmark", "--data", str(a_file), "--out", str(tmp / "bench"), "--preset", "smoke"],
        "explain": ["explain", str(a_file), "--report", str(report), "--run", str(probe), "--out", str(tmp)],
        "bundle": ["bundle", "verify", missing + ".zip"],
        "predict": ["predict", "--bundle", missing, "--input", missing, "--out", str(tmp / "p.csv")],
        "zero-shot": ["zero-shot", missing, "--data", missing, "--out", str(tmp / "zs")],
        "retrieve": ["retrieve", str(probe), "--data", missing],
    }


COMMANDS = [
    "demo", "demo-data", "manifest", "label", "prepare", "pretrain", "finetune", "evaluate", "evaluate-grounding",
    "benchmark", "explain", "bundle", "predict", "zero-shot", "retrieve",
]  # fmt: skip


def test_every_command_is_covered() -> None:
    from radmi.cli import COMMANDS as ALL

    assert set(COMMANDS) == set(ALL)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_input_is_one_line_and_exit_1(command: str, tmp_path, capsys) -> None:
    argv = _wrong_inputs(tmp_path)[command]
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"radmi {command}: error: ") and "Traceback" not in err[0]


def test_a_run_of_the_wrong_kind_says_what_it_is(tmp_path, capsys) -> None:
    inputs = _wrong_inputs(tmp_path)
    main(inputs["evaluate"])
    assert "is a `radmi pretrain` run, not a `radmi finetune` run" in capsys.readouterr().err
    main(inputs["explain"])
    assert "is a `radmi finetune` run, not a `radmi pretrain` run" in capsys.readouterr().err


def test_debug_raises_with_the_traceback(tmp_path) -> None:
    with pytest.raises(RadmiError, match="manifest file not found"):
        main(["--debug", "manifest", "check", str(tmp_path / "missing.csv")])


def test_an_os_error_on_a_file_is_one_line(tmp_path, capsys) -> None:
    assert main(["demo-data", "--out", "/proc/radmi-cannot-write-here", "--studies", "2"]) == 1
    assert "/proc/radmi-cannot-write-here" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch) -> None:
    import radmi.commands.manifest as command

    def broken(args):
        raise ZeroDivisionError("a bug, not a user error")

    monkeypatch.setattr(command, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["manifest", "check", "x.csv"])


# ---- silent wrong results turned into errors --------------------------------------------------------------
def test_an_empty_train_split_is_an_error(tmp_path, tiny) -> None:
    from radmi.data.cache import prepare_cache

    manifest = write_tiny_manifest(tmp_path / "data", n_train=6, n_validate=2)
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table["split"] = ""  # what a folder manifest without split options writes
    table.to_csv(manifest, index=False)
    cache = tmp_path / "cache"
    prepare_cache(manifest, cache, size=64, max_length=32, workers=1, progress=False)
    overrides = {**TINY_OVERRIDES, "text_model": str(tiny["bert"])}
    with pytest.raises(RadmiError, match="the train split has no rows; assign splits"):
        main(["--debug", "pretrain", "--data", str(cache), "--out", str(tmp_path / "run"), *set_args(overrides)])
    assert not (tmp_path / "run" / "models").exists()
    with pytest.raises(RadmiError, match="no rows in split 'train'"):
        main(["--debug", "finetune", "--data", str(cache), "--out", str(tmp_path / "ft"), "--set", "image_size=64"])


def test_fewer_rows_than_one_batch_is_an_error(tmp_path, tiny) -> None:
    overrides = {**TINY_OVERRIDES, "text_model": str(tiny["bert"]), "batch_size": 64}
    with pytest.raises(RadmiError, match="16 rows, fewer than one batch of 64"):
        main(["--debug", "pretrain", "--data", str(tiny["cache"]), "--out", str(tmp_path / "run"),
              *set_args(overrides)])  # fmt: skip


def test_a_cache_of_another_image_size_is_an_error(tmp_path, tiny) -> None:
    # the tiny cache holds 64 px images; the findings recipe's default image_size is larger
    with pytest.raises(RadmiError, match="the cache holds 64 px images but the recipe's image_size is"):
        main(["--debug", "finetune", "--data", str(tiny["cache"]), "--out", str(tmp_path / "ft")])
    overrides = {**TINY_OVERRIDES, "text_model": str(tiny["bert"]), "image_size": 96, "crop_size": 80}
    with pytest.raises(RadmiError, match="the cache holds 64 px images but the recipe's image_size is 96"):
        main(["--debug", "pretrain", "--data", str(tiny["cache"]), "--out", str(tmp_path / "run"),
              *set_args(overrides)])  # fmt: skip


# ---- quiet by default -------------------------------------------------------------------------------------
def _radmi(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "radmi", *args], capture_output=True, text=True, env=env)


def _log_lines(text: str) -> list[str]:
    """Lines in a logging format (``... INFO ...`` / ``- INFO -``) or transformers' load report."""
    return [line for line in text.splitlines() if " INFO " in line or "- INFO -" in line or "LOAD REPORT" in line]


def test_runs_are_quiet_below_verbose(tmp_path, tiny) -> None:
    overrides = {**TINY_OVERRIDES, "text_model": str(tiny["bert"])}
    run = tmp_path / "run"
    quiet = _radmi(["pretrain", "--data", str(tiny["cache"]), "--out", str(run), "--epochs", "1", *set_args(overrides)])
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert _log_lines(quiet.stdout + quiet.stderr) == []
    assert "radmi pretrain: done" in quiet.stdout
    # the saved text encoder has no pooler (dropped on purpose): reloading it prints no load report
    image = next((tiny["manifest"].parent / "images").glob("*.png"))
    report = next((tiny["manifest"].parent / "reports").glob("*.txt"))
    explain = _radmi(["explain", str(image), "--report", str(report), "--run", str(run), "--out", str(tmp_path)])
    assert explain.returncode == 0, explain.stderr[-2000:]
    assert _log_lines(explain.stdout + explain.stderr) == []
    # -v brings the libraries' INFO logs back
    verbose = _radmi(["-v", "finetune", "--data", str(tiny["cache"]), "--init", str(run), "--mode", "linear",
                      "--epochs", "1", "--out", str(tmp_path / "probe"), "--set", "image_size=64"])  # fmt: skip
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert _log_lines(verbose.stdout + verbose.stderr)
    assert "radmi finetune: training at 64 x 64 px" in verbose.stdout  # the size it trains at, said once


# ---- threads and the text-model load report ---------------------------------------------------------------
def test_threads_default_to_the_usable_cores_with_sleeping_waits(monkeypatch) -> None:
    import radmi.threads as threads

    for name in ("RADMI_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads() == 3
        assert torch.get_num_threads() == 3 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["RADMI_THREADS"] == "3"
        monkeypatch.setenv("RADMI_THREADS", "2")
        assert threads.configure_threads() == 2 and torch.get_num_threads() == 2
        assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("RADMI_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice is kept
        assert threads.configure_threads() == 2 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    finally:
        torch.set_num_threads(before)


def test_text_model_load_report_lists_only_unexpected_differences(tmp_path, caplog, capfd) -> None:
    from transformers import BertConfig, BertModel

    from radmi.models.hub import load_text_model

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "no_pooler")
    with caplog.at_level("WARNING", logger="radmi"):
        load_text_model(tmp_path / "no_pooler")
    assert caplog.records == [] and "LOAD REPORT" not in capfd.readouterr().err
    # a checkpoint that lacks a whole layer is named in one radmi warning
    (tmp_path / "no_pooler" / "config.json").write_text(
        json.dumps({**json.loads((tmp_path / "no_pooler" / "config.json").read_text()), "num_hidden_layers": 2})
    )
    with caplog.at_level("WARNING", logger="radmi"):
        load_text_model(tmp_path / "no_pooler")
    assert len(caplog.records) == 1 and "missing weights (encoder.layer.1." in caplog.records[0].getMessage()
