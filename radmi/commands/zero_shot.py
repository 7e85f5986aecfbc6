"""``radmi zero-shot RUN_DIR --data DATA --split test --out DIR [--prompts FILE]``: finding classification from a
pretrained run with sentence prompts and no labels (:mod:`radmi.eval.zero_shot`).

Each image is scored against every prompt with the run's trained critic exactly as in pretraining (local MI: the
critic over every region with the objective's aggregate, max by default; global MI: pooled image vector against
the prompt's report vector); a finding's score is its best positive prompt minus its best negative prompt. Writes
``metrics.json``, ``metrics.csv``, ``report.md`` (per-finding AUROC with patient-bootstrap CIs), ``roc.png`` and
``scores.csv`` to ``--out`` (default ``RUN_DIR/zero-shot/SPLIT``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a `radmi pretrain` run directory")
    parser.add_argument(
        "--data", required=True, type=Path,
        help="a prepared cache, a manifest CSV, or a MIMIC-CXR-layout / demo-data folder (labels are read only to score)",
    )  # fmt: skip
    parser.add_argument("--split", default="test", choices=("train", "validate", "test"))
    parser.add_argument(
        "--prompts", type=Path, default=None,
        help='JSON {finding: {"positive": [...], "negative": [...]}} (default: radmi/eval/prompts.json)',
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/zero-shot/SPLIT)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for the CIs (patients resampled)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--trust", action="store_true", help="evaluate the run's config even if radmi did not write the run here"
    )


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.runs import require_run

    run_dir = require_run(args.run_dir, "pretrain")  # before the slow imports: a wrong folder fails at once
    from radmi.data.source import check_cache_image_size, open_source
    from radmi.eval.report import format_estimate
    from radmi.eval.zero_shot import evaluate_zero_shot, load_prompts, run_settings

    prompts = load_prompts(args.prompts)  # a bad prompts file or data source fails before the model loads
    source = open_source(args.data)
    if source.is_cache and "image_size" in (settings := run_settings(run_dir, trust=args.trust)):
        check_cache_image_size(source.path, int(settings["image_size"]))
    out = args.out or run_dir / "zero-shot" / args.split
    metrics, result = evaluate_zero_shot(
        run_dir, args.data, args.split, out, prompts=prompts, n_bootstrap=args.bootstrap, seed=args.seed,
        batch_size=args.batch_size, device=args.device, trust=args.trust,
    )  # fmt: skip
    print((out / "report.md").read_text())
    print(
        f"radmi zero-shot: {len(result.scores)} images, {len(prompts.sentences)} prompts for "
        f"{len(prompts.findings)} findings; macro AUROC {format_estimate(metrics.macro_auroc)}; wrote {out}"
    )
    return 0
