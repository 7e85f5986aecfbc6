"""``radmi predict``: classify DICOMs with a findings bundle, one row per file (probabilities or the error)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        required=True,
        help="findings bundle folder (e.g. from monai.bundle download) or the bundle zip, unpacked to a "
        "temporary folder after its SHA256 check",
    )
    sha = parser.add_mutually_exclusive_group()
    sha.add_argument(
        "--sha256",
        default=None,
        help="expected SHA256 of a bundle zip: the hash, or the line of its .sha256 file",
    )
    sha.add_argument(
        "--sha256-file",
        type=Path,
        default=None,
        help="the zip's .sha256 file (default: <zip>.sha256 when present)",
    )
    parser.add_argument(
        "--input", required=True, help="a folder of DICOMs, one DICOM file, or a radmi manifest CSV"
    )
    parser.add_argument(
        "--out", required=True, help="CSV to write (a JSON with the same stem goes beside it)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per forward pass (default: the bundle's)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="DataLoader worker processes (default: the bundle's)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the bundle's configs even if it is not trusted (no --sha256 given, not in the trust file); "
        "MONAI configs are code, see docs/bundles.md",
    )
    parser.add_argument(
        "--full-paths",
        action="store_true",
        help="write absolute input paths to the CSV/JSON (default: relative to the input folder)",
    )


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.predict import predict

    sha256 = args.sha256
    if args.sha256_file is not None:
        from radmi.bundle.verify import read_sha256_file

        sha256 = read_sha256_file(args.sha256_file, Path(args.bundle).name)
    summary = predict(
        args.bundle,
        args.input,
        args.out,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
        sha256=sha256,
        full_paths=args.full_paths,
        trust=args.trust,
    )
    print(
        f"predicted {summary.num_predicted} of {summary.num_images} images"
        + (
            f"; {summary.num_failed} could not be read (listed with their error)"
            if summary.num_failed
            else ""
        )
    )
    print(f"results: {summary.csv_path}")
    print(f"         {summary.json_path}")
    # the run succeeded if anything could be predicted; all files failing is an input problem worth an exit status
    return 0 if summary.num_predicted else 1
