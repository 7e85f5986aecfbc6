"""``radmi benchmark --data DIR --out DIR [--preset NAME | --quick] [--seeds N] [--inits A,B]``: pretrain every
init, fit frozen-feature linear probes and fine-tune classifiers at 1%/10%/100% of the labels, evaluate AUROC
(per finding, macro, edema severity) and grounding, write ``OUT/results.md`` (see ``radmi.eval.benchmark``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, type=Path, help="demo-data folder (generated here if absent)"
    )
    parser.add_argument("--out", required=True, type=Path, help="benchmark folder (runs, cache, results.md)")
    parser.add_argument(
        "--preset",
        default=None,
        help="size preset: quick (300 studies, 64 px, 1 seed, ~20 CPU min), standard (2,000 studies, 128 px, "
        "7 x 7 regions, 3 seeds, ~60 min on 2 idle cores), full (hours), smoke (tests); default full",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same as --preset quick (kept for existing scripts)"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="classification seeds (preset: 1 quick, 3 standard/full)"
    )
    parser.add_argument(
        "--inits",
        default=None,
        help="comma list of table rows to run (names or slugs, e.g. 'random,local_mi_max'); default: random, "
        "global MI, local MI (max), local MI (mean), local MI (paper), TVDIM (standard preset: the first "
        "three). Ablations, by name only: 'local MI (report context; no text mask)', 'local MI (isolated; no "
        "text mask)', 'local MI (report context; text mask)', 'local MI (4 x 4 regions)', 'local MI (max; 6 "
        "epochs)'. Rows already finished in --out are reused",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from radmi.eval.benchmark import PRESETS, run_benchmark, select_inits

    if args.quick and args.preset not in (None, "quick"):
        print(f"radmi benchmark: --quick and --preset {args.preset} disagree", file=sys.stderr)
        return 2
    preset = "quick" if args.quick else (args.preset or "full")
    if preset not in PRESETS:
        print(
            f"radmi benchmark: unknown preset {preset!r}; choose from {', '.join(PRESETS)}", file=sys.stderr
        )
        return 2
    try:
        select_inits(args.inits)
    except ValueError as err:
        print(f"radmi benchmark: {err}", file=sys.stderr)
        return 2
    path = run_benchmark(
        args.data, args.out, preset=preset, seeds=args.seeds, argv=sys.argv[2:], inits=args.inits
    )
    print(path.read_text())
    print(f"radmi benchmark: wrote {path}")
    return 0
