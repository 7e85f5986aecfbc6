"""Throughput of ``radmi predict`` through a findings bundle: images/s at a batch size vs batch size 1.

Generates ``--images`` demo DICOMs (``radmi.data.demo.generate``, compressed mix as in real archives), then
runs the bundle's own inference config twice on them: once with batch size 1 (the baseline) and once with
``--batch-size``. Decoding, LUTs, resizing, the network and writing the CSV are all in the timed run.

    python benchmarks/bench_predict.py --bundle bundles/radmi_cxr_findings --images 64 --batch-size 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from radmi.bundle.predict import predict
from radmi.data.demo import generate


def timed_predict(bundle: Path, inputs: Path, out: Path, device: str, batch_size: int) -> float:
    start = time.perf_counter()
    summary = predict(bundle, inputs, out, device=device, batch_size=batch_size, progress=False)
    elapsed = time.perf_counter() - start
    if summary.num_failed:
        raise SystemExit(f"{summary.num_failed} images failed; see {summary.csv_path}")
    return summary.num_predicted / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/radmi_cxr_findings"))
    parser.add_argument("--images", type=int, default=64, help="demo DICOMs to classify")
    parser.add_argument("--stored-size", type=int, default=512, help="rows of the generated DICOMs, px")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(data, studies=args.images, seed=0, size=args.stored_size, compress="mixed", progress=False)
        inputs = data / "files"
        # warm-up: imports, config parsing and the first forward pass are not what is measured
        predict(args.bundle, inputs, Path(tmp) / "warm.csv", device=args.device, batch_size=4, progress=False)
        baseline = timed_predict(args.bundle, inputs, Path(tmp) / "b1.csv", args.device, 1)
        batched = timed_predict(args.bundle, inputs, Path(tmp) / "bn.csv", args.device, args.batch_size)
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, {args.images} DICOMs of {args.stored_size} rows"
    )
    print(f"batch size 1 (baseline): {baseline:.1f} images/s")
    print(f"batch size {args.batch_size}: {batched:.1f} images/s")
    print(f"ratio batch {args.batch_size} / batch 1: {batched / baseline:.2f}")


if __name__ == "__main__":
    main()
