"""``radmi demo-data``: write a synthetic MIMIC-CXR-layout dataset (DICOM + reports + labels + finding boxes)."""

from __future__ import annotations

import argparse

from radmi.data.demo.generate import COMPRESS, VIEWS, generate


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset root to create (must be empty or absent)")
    parser.add_argument(
        "--studies", type=int, required=True, help="number of studies (about 2.2 per subject)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    parser.add_argument("--size", type=int, default=512, help="stored image rows in pixels (default 512)")
    parser.add_argument("--views", choices=VIEWS, default="frontal", help="frontal only, or also laterals")
    parser.add_argument(
        "--compress",
        choices=COMPRESS,
        default="mixed",
        help="mixed: some RLE/JPEG-LS/JPEG 2000 lossless files",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    summary = generate(
        args.out, args.studies, seed=args.seed, size=args.size, views=args.views, compress=args.compress,
        workers=args.workers,
    )  # fmt: skip
    print(
        f"wrote {summary.studies} studies of {summary.subjects} subjects ({summary.images} images, "
        f"{summary.findings} finding boxes) to {summary.out}"
    )
    return 0
