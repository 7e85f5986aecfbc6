"""``radmi evaluate-grounding RUN_DIR --data DIR --split test``: pointing game and top-k IoU of a pretrained
run's sentence -> region maps against the demo data's ground-truth finding boxes, with chance levels, and the
sentence specificity of the maps (own sentence vs another finding's sentence on the same image). A global-MI run
is scored with its region-to-report map.

Writes ``RUN_DIR/grounding/<split>/pairs.csv`` (one row per box), ``summary.csv``, ``specificity.csv``,
``counts.json`` and ``report.md`` (both tables).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a `radmi pretrain` run directory")
    parser.add_argument(
        "--data", required=True, type=Path, help="a `radmi demo-data` folder (has finding-locations.csv.gz)"
    )
    parser.add_argument("--split", default="test", choices=("train", "validate", "test"))
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="pointing-game tolerance in input pixels (default: 15 px at 224 px, scaled to the input size)",
    )
    parser.add_argument(
        "--top-fraction", type=float, default=None, help="fraction of regions in the IoU mask (0.1)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for the CIs")
    parser.add_argument(
        "--specificity-min-boxes",
        type=int,
        default=None,
        help="per-finding rows of the specificity table need this many boxes (default 10; overall always shown)",
    )
    parser.add_argument("--max-images", type=int, default=None, help="score at most this many images")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN_DIR/grounding/SPLIT)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="evaluate the run's config.json even if radmi did not write it on this machine (MONAI configs are "
        "code; see docs/bundles.md)",
    )


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.runs import require_run

    run_dir = require_run(args.run_dir, "pretrain")  # before the slow imports: a wrong folder fails at once
    from radmi.eval import grounding
    from radmi.eval.explain import PretrainedRun

    pretrained = PretrainedRun(run_dir, device=args.device, trust=args.trust)
    pairs, counts = grounding.grounding_pairs(
        pretrained,
        args.data,
        args.split,
        tolerance=args.tolerance,
        fraction=grounding.DEFAULT_TOP_FRACTION if args.top_fraction is None else args.top_fraction,
        max_images=args.max_images,
    )
    summary = grounding.summarize_grounding(pairs, n_bootstrap=args.bootstrap)
    min_boxes = args.specificity_min_boxes
    specificity = grounding.summarize_specificity(
        pairs,
        n_bootstrap=args.bootstrap,
        min_boxes=grounding.MIN_SPECIFICITY_BOXES if min_boxes is None else min_boxes,
    )
    out = args.out or Path(args.run_dir) / "grounding" / args.split
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "pairs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    specificity.to_csv(out / "specificity.csv", index=False)
    title = f"Grounding of {pretrained.kind} MI run {Path(args.run_dir).name}, split {args.split}"
    note = {
        "sentence": "",
        "report": "\nGlobal MI has no sentence map: pointing and IoU score its region-to-report map (each region's "
        "local feature against the report's global vector, through the run's critic).\n",
        "none": "\nThis run has no region map: only the chance levels apply.\n",
    }[counts["map"]]
    text = grounding.grounding_markdown(summary, title) + note
    if counts["map"] == "sentence":
        text += "\n" + grounding.specificity_markdown(specificity)
    else:
        text += (
            "\nSentence specificity does not apply: the run has one map per image, not one per sentence.\n"
        )
    (out / "report.md").write_text(text)
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(text)
    if counts["map"] == "sentence":
        print(grounding.specificity_line(specificity))
    print(f"radmi evaluate-grounding: {counts['boxes']} boxes on {counts['images']} images; wrote {out}")
    return 0
