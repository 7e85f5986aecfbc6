"""``radmi demo``: the whole story offline on the CPU, one command.

1. generate synthetic demo data (``radmi demo-data``);
2. build the manifest and prepare the cache (``radmi manifest mimic-cxr``, ``radmi prepare``);
3. pretrain the image encoder with local MI (``radmi pretrain``);
4. linear probe at 10% of the labels, from the pretrained encoder and from random init (``radmi finetune``);
5. evaluate both on the test split (``radmi evaluate``);
6. export the pretrained probe as a findings bundle (``radmi bundle export``);
7. classify the test DICOMs through the exported bundle (``radmi predict``);
8. draw the per-sentence heat maps of one test image (``radmi explain``).

Every step is the CLI command a user would type, run in this process through :func:`radmi.cli.main`, so the
demo has no recipe of its own: only the sizes below, passed as the commands' options and ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radmi.errors import RadmiError, TrainingError


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is. ``full`` aims at <= 15 minutes on 2 CPU cores, ``quick`` at <= 3 minutes."""

    studies: int
    stored_size: int  # rows of the generated DICOMs, px
    image_size: int  # side of the cached/trained images, px
    crop_size: int  # pretraining random crop, px
    pretrain_epochs: int
    probe_epochs: int
    batch_size: int
    embed_dim: int
    max_length: int
    bootstrap: int
    extra_pretrain: tuple[str, ...] = field(default=())


# 12 pretraining epochs (180 iterations): with 5, the encoder had barely left chance (held-out MI 0.11 nats)
# and its 10% linear probe scored no better than random init (macro AUROC 0.523 vs 0.533)
FULL = DemoSize(
    studies=600, stored_size=256, image_size=128, crop_size=112, pretrain_epochs=12, probe_epochs=15,
    batch_size=32, embed_dim=128, max_length=96, bootstrap=200,
)  # fmt: skip
QUICK = DemoSize(
    studies=80, stored_size=160, image_size=64, crop_size=56, pretrain_epochs=1, probe_epochs=2,
    batch_size=16, embed_dim=64, max_length=64, bootstrap=20,
)  # fmt: skip
#: Image backbone of the demo: the smallest :data:`radmi.models.image.BACKBONES` entry, so that the exported
#: bundle stays under the model-zoo limit of 25 MB (ResNet-18: 45 MB in float32, 22 MB as the float16 weights
#: the demo exports with ``--half-weights``); tests/test_recipe_runner.py checks both.
DEMO_BACKBONE = "resnet18"
BUNDLE_NAME = "radmi_cxr_findings"
DEMO_CHANGELOG = (
    "radmi demo: ResNet encoder pretrained with local image-text MI, linear probe on 10% of the labels, "
    "synthetic demo data; weights stored in float16"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("radmi-demo"), help="output folder (default: ./radmi-demo)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke-test size: a few minutes, numbers meaningless"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every training step")
    parser.add_argument("--workers", type=int, default=2, help="processes for data generation and caching")
    parser.add_argument("--overwrite", action="store_true", help="delete --out first if it exists")


class DemoRunner:
    """Runs the steps in order, times them, and stops with a clear message when one fails."""

    def __init__(self, out: Path, total_steps: int) -> None:
        self.out = out
        self.total = total_steps
        self.timings: list[tuple[str, float]] = []

    def step(self, title: str, argv: list[str]) -> None:
        from radmi.cli import main as radmi_main

        number = len(self.timings) + 1
        print(f"\n[{number}/{self.total}] {title}\n    $ radmi {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        status = radmi_main(argv)
        elapsed = time.perf_counter() - start
        if status != 0:
            raise TrainingError(
                f"demo step {number} ({title}) failed with exit status {status}; see the messages above"
            )
        self.timings.append((title, elapsed))
        print(f"    done in {elapsed:.0f} s", flush=True)


def _macro_auroc(run_dir: Path) -> str:
    table = pd.read_csv(run_dir / "eval" / "test" / "metrics.csv")
    row = table[(table["task"] == "findings") & (table["name"] == "macro") & (table["metric"] == "auroc")]
    if row.empty:
        return "n/a (no finding with both classes in the test split)"
    row = row.iloc[0]
    if pd.isna(row.get("ci_low")):
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} (95% CI {row['ci_low']:.3f}-{row['ci_high']:.3f})"


def _first_test_study(manifest: Path) -> tuple[Path, Path]:
    from radmi.data.manifest import read_manifest

    table = read_manifest(manifest)
    test = table[table["split"] == "test"]
    row = (test if not test.empty else table).iloc[0]
    return Path(row["image_path"]), Path(row["report_path"])


def _test_manifest(manifest: Path, out: Path) -> Path:
    """The test rows of the manifest, written beside it (paths made absolute), as the input of ``predict``."""
    from radmi.data.manifest import read_manifest

    table = read_manifest(manifest)
    table[table["split"] == "test"].to_csv(out, index=False)
    return out


def run_demo(out: Path, size: DemoSize, seed: int = 0, workers: int = 2) -> dict:
    """Run the eight steps into ``out``; returns the summary also printed at the end."""
    out = out.resolve()
    data, manifest, cache = out / "data", out / "manifest.csv", out / "cache"
    runs, bundle_out = out / "runs", out / "bundle"
    pretrain_run = runs / "pretrain_local_mi"
    probes = {
        "local MI (pretrained)": runs / "probe_local_mi_10pct",
        "random init": runs / "probe_random_10pct",
    }
    runner = DemoRunner(out, total_steps=11)
    started = time.perf_counter()

    runner.step(
        "generate synthetic demo data",
        ["demo-data", "--out", str(data), "--studies", str(size.studies), "--seed", str(seed),
         "--size", str(size.stored_size), "--views", "frontal", "--workers", str(workers)],
    )  # fmt: skip
    runner.step(
        "build the manifest", ["manifest", "mimic-cxr", str(data), "--out", str(manifest), "--frontal-only"]
    )
    runner.step(
        "prepare the cache (decode, resize, tokenize once)",
        ["prepare", str(manifest), "--out", str(cache), "--size", str(size.image_size), "--workers", str(workers),
         "--max-length", str(size.max_length)],
    )  # fmt: skip
    model_sets = ["--set", f"backbone={DEMO_BACKBONE}", "--set", f"embed_dim={size.embed_dim}"]
    runner.step(
        "pretrain the image encoder with local MI",
        ["pretrain", "--data", str(cache), "--objective", "local", "--out", str(pretrain_run),
         "--epochs", str(size.pretrain_epochs), "--amp", "none", *model_sets,
         "--set", f"image_size={size.image_size}", "--set", f"crop_size={size.crop_size}",
         "--set", f"max_length={size.max_length}", "--set", f"batch_size={size.batch_size}",
         "--set", f"val_batch_size={size.batch_size}", "--set", "num_workers=0", "--set", "channels_last=false",
         "--set", f"seed={seed}", "--set", "warmup_iterations=10", "--set", "checkpoint_every=1000",
         *size.extra_pretrain],
    )  # fmt: skip
    for label, init in (("local MI (pretrained)", str(pretrain_run)), ("random init", "random")):
        runner.step(
            f"linear probe on 10% of the labels, {label}",
            ["finetune", "--data", str(cache), "--init", init, "--mode", "linear", "--label-fraction", "0.1",
             "--seed", str(seed), "--epochs", str(size.probe_epochs), "--out", str(probes[label]),
             "--set", f"image_size={size.image_size}", "--set", f"batch_size={size.batch_size}", *model_sets],
        )  # fmt: skip
    for label, run_dir in probes.items():
        runner.step(
            f"evaluate the {label} probe on the test split",
            [
                "evaluate",
                str(run_dir),
                "--data",
                str(cache),
                "--split",
                "test",
                "--bootstrap",
                str(size.bootstrap),
            ],
        )
    runner.step(
        "export the pretrained probe as a MONAI findings bundle",
        ["bundle", "export", str(probes["local MI (pretrained)"]), "--name", BUNDLE_NAME, "--version", "0.1.0",
         "--out", str(bundle_out), "--overwrite", "--half-weights", "--changelog", DEMO_CHANGELOG],
    )  # fmt: skip
    predictions = out / "predictions.csv"
    runner.step(
        "classify the test DICOMs through the exported bundle",
        ["predict", "--bundle", str(bundle_out / BUNDLE_NAME), "--input",
         str(_test_manifest(manifest, out / "test_manifest.csv")), "--out", str(predictions), "--device", "cpu",
         "--batch-size", str(size.batch_size)],
    )  # fmt: skip
    image, report = _first_test_study(manifest)
    runner.step(
        "draw per-sentence heat maps for one test image",
        ["explain", str(image), "--report", str(report), "--run", str(pretrain_run), "--out", str(out / "explain"),
         "--boxes", str(data / "finding-locations.csv.gz")],
    )  # fmt: skip

    summary = {
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "macro_auroc": {label: _macro_auroc(run_dir) for label, run_dir in probes.items()},
        "steps": {title: round(seconds, 1) for title, seconds in runner.timings},
        "where": {
            "demo data": str(data),
            "manifest": str(manifest),
            "cache": str(cache),
            "pretraining run (TensorBoard in tensorboard/)": str(pretrain_run),
            **{f"probe, {label}": str(run_dir) for label, run_dir in probes.items()},
            "evaluation reports": str(probes["local MI (pretrained)"] / "eval" / "test" / "report.md"),
            "bundle folder": str(bundle_out / BUNDLE_NAME),
            "bundle zip + sha256": str(bundle_out / f"{BUNDLE_NAME}_v0.1.0.zip"),
            "predictions": str(predictions),
            "explain picture": str(next((out / "explain").glob("*.png"), out / "explain")),
        },
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict, quick: bool) -> None:
    print("\n" + "=" * 78)
    print(f"radmi demo finished in {summary['minutes']} min")
    print("\nLinear probe, 10% of the training labels, test split (synthetic demo data):\n")
    print("| image encoder init | macro AUROC over the 14 findings |")
    print("|---|---|")
    for label, value in summary["macro_auroc"].items():
        print(f"| {label} | {value} |")
    if quick:
        print("\n(--quick is a smoke test: too little data and training for these numbers to mean anything.)")
    print("\nWhere everything is:")
    width = max(len(k) for k in summary["where"])
    for label, path in summary["where"].items():
        print(f"  {label.ljust(width)}  {path}")
    print("\nNext: docs/bundles.md (use the bundle), docs/training.md and docs/evaluation.md (real data).")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise RadmiError(
                "the output folder is not empty; pass --overwrite or choose another --out", path=out
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # the demo is sized for the CPU: keep it there even when a GPU is present, so timings match the docs
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    size = QUICK if args.quick else FULL
    summary = run_demo(out, size, seed=args.seed, workers=args.workers)
    print_summary(summary, quick=args.quick)
    return 0
