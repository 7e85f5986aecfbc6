"""The seed paper's comparison table, end to end: ``radmi benchmark --data DIR --out DIR [--quick] [--seeds N]``.

Steps (every training goes through the bundle recipes, with overrides only):

1. data: the demo dataset at ``--data`` (generated there with the preset's size when the folder is absent);
   one prepared cache (``OUT/cache``) serves every run;
2. pretraining (``radmi_cxr_pretrain``): global MI, local MI (max over regions), local MI (mean), TVDIM;
3. classification (``radmi_cxr_findings``): each init (plus random) x linear / fine-tune x label fractions x
   seeds, then evaluation on the test split (macro AUROC with patient-bootstrap CIs);
4. grounding on the test split for local MI (max, mean) and TVDIM, with the uniform/centre chance levels that
   stand in for global MI (no region map);
5. ``OUT/results.md``: both tables, the command, the data, the hardware and the wall time; ``OUT/results.json``.

Across seeds the table shows the mean macro AUROC and a 95% t-interval over seeds; with one seed it shows that
run's bootstrap CI.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Table rows: name -> pretraining overrides (None: random init, no pretraining).
INITS: dict[str, dict[str, Any] | None] = {
    "random": None,
    "global MI": {"objective": "global"},
    "local MI (max)": {"objective": "local", "aggregate": "max"},
    "local MI (mean)": {"objective": "local", "aggregate": "mean"},
    "TVDIM": {"objective": "tvdim"},
}
GROUNDED = ("local MI (max)", "local MI (mean)", "TVDIM")
MODES = ("linear", "finetune")
FRACTIONS = (0.01, 0.1, 1.0)


@dataclass
class Preset:
    """Sizes of one benchmark scale (CPU-friendly; the recipe defaults are for GPUs and MIMIC-CXR)."""

    studies: int
    image_size: int
    crop_size: int
    pretrain_epochs: int
    finetune_epochs: int
    seeds: int
    n_bootstrap: int
    backbone: str = "resnet18"
    embed_dim: int = 384
    batch_size: int = 32
    max_length: int = 64
    grounding_images: int | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)


PRESETS = {
    # a first result in <= 20 minutes on 2 CPU cores (measured 19.6 min on a shared machine: docs/results.md)
    "quick": Preset(studies=300, image_size=64, crop_size=56, pretrain_epochs=3, finetune_epochs=4, seeds=1,
                    n_bootstrap=200, grounding_images=40),
    # the smallest end-to-end pass, for tests of the runner itself (its figures mean nothing)
    "smoke": Preset(studies=40, image_size=32, crop_size=28, pretrain_epochs=1, finetune_epochs=1, seeds=1,
                    n_bootstrap=20, batch_size=8, max_length=48, grounding_images=4),
    "full": Preset(studies=2000, image_size=128, crop_size=112, pretrain_epochs=15, finetune_epochs=20, seeds=3,
                   n_bootstrap=1000),
}  # fmt: skip


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def prepare_data(data: Path, out: Path, preset: Preset, seed: int = 0) -> Path:
    """Generate the demo data if needed, build its manifest and one cache; returns the cache folder."""
    from radmi.data.cache import prepare_cache
    from radmi.data.demo.generate import generate
    from radmi.data.manifest import build_mimic_manifest, write_manifest

    if not data.exists() or not any(data.iterdir()):
        logger.info("generating %d demo studies in %s", preset.studies, data)
        generate(data, studies=preset.studies, seed=seed, size=max(96, 2 * preset.image_size), progress=True)
    manifest = out / "manifest.csv"
    if not manifest.is_file():
        write_manifest(build_mimic_manifest(data), manifest)
    cache = out / "cache"
    prepare_cache(manifest, cache, size=preset.image_size, max_length=preset.max_length, workers=1)
    return cache


def pretrain(name: str, overrides: dict[str, Any], cache: Path, out: Path, preset: Preset, seed: int) -> Path:
    """Run the pretraining recipe for one init; returns its run directory (reused when already complete)."""
    from monai.bundle import ConfigWorkflow

    from radmi.bundle.paths import bundle_config

    run_dir = out / "pretrain" / _slug(name)
    if (run_dir / "models" / "critic.pt").is_file():
        return run_dir
    config = bundle_config("radmi_cxr_pretrain")
    settings = {
        "dataset_dir": str(cache), "output_dir": str(run_dir), "seed": seed, "epochs": preset.pretrain_epochs,
        "backbone": preset.backbone, "embed_dim": preset.embed_dim, "image_size": preset.image_size,
        "crop_size": preset.crop_size, "batch_size": preset.batch_size, "val_batch_size": preset.batch_size,
        "max_length": preset.max_length, "num_workers": 0, "prepare_workers": 1, "amp": "none",
        "channels_last": False, "progress_bar": False, "warmup_iterations": 10, **preset.pretrain, **overrides,
    }  # fmt: skip
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    workflow = ConfigWorkflow(
        config_file=str(config), meta_file=str(config.with_name("metadata.json")), logging_file=False,
        workflow_type="train", **settings,
    )  # fmt: skip
    workflow.initialize()
    run_dir.mkdir(parents=True, exist_ok=True)
    workflow.parser.export_config_file(workflow.parser.get(), str(run_dir / "config.json"), indent=2)
    workflow.run()
    workflow.finalize()
    return run_dir


def classify(
    init: str, mode: str, fraction: float, seed: int, cache: Path, run_dir: Path, preset: Preset
) -> dict:
    """Train (findings recipe) and evaluate on the test split; returns the ``metrics.json`` content."""
    from radmi.commands.finetune import run_recipe

    metrics = run_dir / "eval" / "test" / "metrics.json"
    if not metrics.is_file():
        common = {"dataset_dir": str(cache), "image_size": preset.image_size}
        run_recipe(
            "train.json", out=run_dir, output_dir=str(run_dir), init=init, mode=mode, label_fraction=fraction,
            seed=seed, max_epochs=preset.finetune_epochs, batch_size=preset.batch_size, patience=3,
            encoder={"backbone": preset.backbone, "embed_dim": preset.embed_dim, "local_stride": 16}, **common,
        )  # fmt: skip
        run_recipe(
            "evaluate.json",
            run_dir=str(run_dir),
            split="test",
            n_bootstrap=preset.n_bootstrap,
            seed=seed,
            **common,
        )
    return json.loads(metrics.read_text())


def _mean_ci(values: list[float], single_ci: tuple[float | None, float | None]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        low, high = single_ci
        return f"{values[0]:.3f}" + ("" if low is None else f" ({low:.3f}-{high:.3f})")
    from scipy import stats

    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return f"{mean:.3f} ± {half:.3f}"


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores visible, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )


def results_markdown(table: pd.DataFrame, grounding: pd.DataFrame, facts: dict[str, Any]) -> str:
    """``results.md``: the AUROC table (init x mode x fraction), the grounding table, how it was made."""
    fractions = sorted(table["fraction"].unique())
    header = " | ".join(f"{mode} {f:.0%}" for mode in MODES for f in fractions)
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{facts['command']}`",
        "",
        f"Data: {facts['data']}",
        "",
        f"Hardware: {facts['hardware']}. Wall time: {facts['wall_minutes']:.1f} minutes.",
        "",
        "## Finding classification: test macro AUROC",
        "",
        f"Mean over {facts['seeds']} seed(s); "
        + (
            "± is the 95% t-interval over seeds."
            if facts["seeds"] > 1
            else "in brackets the patient-bootstrap 95% CI."
        )
        + " Columns: linear probe (frozen encoder) or fine-tuning, at a fraction of the training patients' labels.",
        "",
        f"| image encoder init | {header} |",
        "|---|" + "---|" * (len(MODES) * len(fractions)),
    ]
    for init in INITS:
        cells = []
        for mode in MODES:
            for f in fractions:
                part = table[(table["init"] == init) & (table["mode"] == mode) & (table["fraction"] == f)]
                values = [v for v in part["macro_auroc"] if v is not None and not np.isnan(v)]
                ci = (part["ci_low"].iloc[0], part["ci_high"].iloc[0]) if len(part) == 1 else (None, None)
                cells.append(_mean_ci(values, ci))
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Grounding on the test split (sentence -> region maps vs ground-truth boxes)",
        "",
        "Pointing game (argmax region within the box, tolerance 15 px at a 224 px input, scaled to the input size) and IoU of the top-10% regions with the "
        "box; 95% CIs from the patient bootstrap. Global MI has no region map: its row is the chance level.",
        "",
        "| model | boxes | pointing | top-10% IoU |",
        "|---|---:|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['boxes']} | {r['pointing']} | {r['iou']} |"
        for r in grounding.to_dict("records")
    ]
    return "\n".join(lines) + "\n"


def _grounding_cell(summary: pd.DataFrame, score: str) -> str:
    row = summary[(summary["label"] == "overall") & (summary["score"] == score)].iloc[0]
    if np.isnan(row["mean"]):
        return "-"
    return f"{row['mean']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f})"


def run_benchmark(
    data: Path, out: Path, preset: str = "full", seeds: int | None = None, argv: list[str] | None = None
) -> Path:
    """Run everything (see the module docstring); returns ``OUT/results.md``. Finished steps are reused."""
    from radmi.eval.explain import PretrainedRun
    from radmi.eval.grounding import grounding_pairs, summarize_grounding

    start = time.perf_counter()
    preset_name = preset
    preset = PRESETS[preset_name]
    n_seeds = preset.seeds if seeds is None else seeds
    out.mkdir(parents=True, exist_ok=True)
    cache = prepare_data(data, out, preset)
    inits = {"random": "random"}
    for name, overrides in INITS.items():
        if overrides is not None:
            inits[name] = str(pretrain(name, overrides, cache, out, preset, seed=0))
    rows = []
    for name, init in inits.items():
        for mode in MODES:
            for fraction in FRACTIONS:
                for seed in range(n_seeds):
                    run_dir = out / "classify" / _slug(name) / f"{mode}_{fraction:g}_seed{seed}"
                    metrics = classify(init, mode, fraction, seed, cache, run_dir, preset)
                    macro = metrics["macro_auroc"]
                    rows.append({"init": name, "mode": mode, "fraction": fraction, "seed": seed,
                                 "macro_auroc": macro["value"], "ci_low": macro["ci_low"], "ci_high": macro["ci_high"]})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(out / "classification.csv", index=False)
    grounding_rows = []
    chance = None
    for name in GROUNDED:
        run = PretrainedRun(inits[name])
        pairs, counts = grounding_pairs(run, data, "test", max_images=preset.grounding_images)
        summary = summarize_grounding(pairs, n_bootstrap=preset.n_bootstrap)
        summary.to_csv(out / f"grounding_{_slug(name)}.csv", index=False)
        grounding_rows.append({"model": name, "boxes": counts["boxes"], "pointing": _grounding_cell(summary, "pointing"), "iou": _grounding_cell(summary, "iou")})  # fmt: skip
        chance = summary
    if chance is not None:
        for baseline in ("uniform", "centre"):
            grounding_rows.append({"model": f"global MI: chance ({baseline} map)", "boxes": grounding_rows[0]["boxes"],
                                   "pointing": _grounding_cell(chance, f"{baseline}_pointing"),
                                   "iou": _grounding_cell(chance, f"{baseline}_iou")})  # fmt: skip
    facts = {
        "command": "radmi benchmark " + " ".join(shlex.quote(a) for a in (argv or sys.argv[2:])),
        "data": f"synthetic demo data at {data} ({preset.studies} studies requested; images prepared at "
        f"{preset.image_size} px), test split; encoder {preset.backbone}, E = {preset.embed_dim}",
        "hardware": hardware(),
        "seeds": n_seeds,
        "preset": preset_name,
        "wall_minutes": (time.perf_counter() - start) / 60,
    }
    text = results_markdown(table, pd.DataFrame(grounding_rows), facts)
    path = out / "results.md"
    path.write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {"facts": facts, "classification": rows, "grounding": grounding_rows}, indent=2, default=str
        )
    )
    return path
