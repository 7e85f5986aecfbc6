"""``radmi benchmark --data DIR --out DIR [--quick] [--seeds N]``: pretrain every init, train linear probes and
fine-tuned classifiers at 1%/10%/100% of the labels, evaluate AUROC and grounding, write ``OUT/results.md``
(see ``radmi.eval.benchmark``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, type=Path, help="demo-data folder (generated here if absent)"
    )
    parser.add_argument("--out", required=True, type=Path, help="benchmark folder (runs, cache, results.md)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small preset (300 demo studies, 64 px, 1 seed) aimed at a first result in ~20 CPU minutes",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="classification seeds (preset: 1 quick, 3 full)"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from radmi.eval.benchmark import run_benchmark

    path = run_benchmark(
        args.data, args.out, preset="quick" if args.quick else "full", seeds=args.seeds, argv=sys.argv[2:]
    )
    print(path.read_text())
    print(f"radmi benchmark: wrote {path}")
    return 0
