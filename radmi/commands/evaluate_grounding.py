"""``radmi evaluate-grounding RUN_DIR --data DIR --split test``: pointing game and top-k IoU of a pretrained
run's sentence -> region maps against the demo data's ground-truth finding boxes, with chance levels.

Writes ``RUN_DIR/grounding/<split>/pairs.csv`` (one row per box), ``summary.csv`` and ``report.md``.
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
    parser.add_argument("--max-images", type=int, default=None, help="score at most this many images")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN_DIR/grounding/SPLIT)"
    )
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from radmi.eval import grounding
    from radmi.eval.explain import PretrainedRun

    pretrained = PretrainedRun(args.run_dir, device=args.device)
    pairs, counts = grounding.grounding_pairs(
        pretrained,
        args.data,
        args.split,
        tolerance=args.tolerance,
        fraction=grounding.DEFAULT_TOP_FRACTION if args.top_fraction is None else args.top_fraction,
        max_images=args.max_images,
    )
    summary = grounding.summarize_grounding(pairs, n_bootstrap=args.bootstrap)
    out = args.out or Path(args.run_dir) / "grounding" / args.split
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "pairs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    title = f"Grounding of {pretrained.kind} MI run {Path(args.run_dir).name}, split {args.split}"
    note = (
        "" if pretrained.has_region_maps else "\nGlobal MI has no region map: only the chance levels apply.\n"
    )
    (out / "report.md").write_text(grounding.grounding_markdown(summary, title) + note)
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print((out / "report.md").read_text())
    print(f"radmi evaluate-grounding: {counts['boxes']} boxes on {counts['images']} images; wrote {out}")
    return 0
