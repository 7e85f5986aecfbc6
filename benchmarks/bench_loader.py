"""Cached loader vs reading the DICOMs directly: image+token pairs per second at 224 px.

Both sides go through the same per-row pipeline (``radmi.data.pipeline.sample_transform``: DICOM decode with the
LUTs, aspect-preserving resize to ``--cache-size``, report parsing and tokenizing, labels) and the same batch
augmentation (``radmi.transforms.batch.RandBatchAugmentd``, ``--crop`` px). The direct side runs the pipeline per
sample every time (``ManifestDataset`` + DataLoader); the cached side runs it once (``prepare_cache``) and then
reads the memory map (``CachedDataset`` + ``collate_cached``), drawing random samples with replacement as a
shuffled training epoch does. For each side it reports:

- loader: batches delivered at ``--crop`` px (deterministic centre crop, what the loader alone costs);
- loader + CPU augmentation: the same plus random crop/affine/intensity on the CPU (on a GPU the
  augmentation runs on the device instead and costs next to nothing);

and the ratios cached / direct. Example (the figures in docs/performance.md)::

    python benchmarks/bench_loader.py --studies 64 --image-size 1024 --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from monai.data import list_data_collate  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from radmi.data.cache import CachedDataset, collate_cached, prepare_cache  # noqa: E402
from radmi.data.dataset import ManifestDataset  # noqa: E402
from radmi.data.manifest import build_mimic_manifest, write_manifest  # noqa: E402
from radmi.data.pipeline import sample_transform  # noqa: E402
from radmi.transforms.batch import RandBatchAugmentd  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", help="an existing manifest CSV (default: generate demo data)")
    parser.add_argument("--studies", type=int, default=64, help="demo studies to generate (one image each)")
    parser.add_argument(
        "--image-size", type=int, default=1024, help="stored rows of the generated DICOMs, px"
    )
    parser.add_argument("--cache-size", type=int, default=256, help="side of the cached images, px")
    parser.add_argument("--crop", type=int, default=224, help="side of the delivered images, px")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--samples", type=int, default=12800, help="samples drawn from the cache per measurement"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers for both sides (0: in-process)"
    )
    parser.add_argument("--prepare-workers", type=int, default=1, help="processes for prepare_cache")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for the batch step (crop and augmentation)"
    )
    parser.add_argument("--out", help="working folder (default: a temporary one, deleted)")
    return parser.parse_args()


def make_manifest(args: argparse.Namespace, work: Path) -> Path:
    if args.manifest:
        return Path(args.manifest)
    from radmi.data.demo.generate import generate

    began = time.perf_counter()
    generate(work / "demo", studies=args.studies, size=args.image_size, views="frontal", compress="mixed")
    print(
        f"generated {args.studies} demo studies at {args.image_size} px in {time.perf_counter() - began:.1f} s"
    )
    return write_manifest(build_mimic_manifest(work / "demo", progress=False), work / "manifest.csv")


def measure(loader: DataLoader, augment: RandBatchAugmentd | None) -> dict[str, float]:
    """Iterate ``loader`` once: samples, and wall and CPU seconds spent waiting for batches and augmenting.

    CPU seconds are this process's only (``time.process_time``): with ``--workers 0`` they are what the work
    costs on one dedicated core, whatever else the machine is running.
    """
    totals = {"samples": 0, "load_s": 0.0, "augment_s": 0.0, "load_cpu": 0.0, "augment_cpu": 0.0}
    tick, cpu_tick = time.perf_counter(), time.process_time()
    for batch in loader:
        got, cpu_got = time.perf_counter(), time.process_time()
        totals["load_s"] += got - tick
        totals["load_cpu"] += cpu_got - cpu_tick
        if augment is not None:
            out = augment(batch)
            out["image"].sum()  # force the work (a no-op on the CPU, a sync on a GPU)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        totals["augment_s"] += tick - got
        totals["augment_cpu"] += cpu_tick - cpu_got
        totals["samples"] += len(batch["image"])
    return totals


def rates(run: dict[str, float]) -> dict[str, float]:
    """pairs/s of the loader alone and of loader + augmentation, by wall clock and per CPU second."""
    n = run["samples"]
    return {
        "loader": n / run["load_s"],
        "full": n / (run["load_s"] + run["augment_s"]),
        "loader_cpu": n / run["load_cpu"],
        "full_cpu": n / (run["load_cpu"] + run["augment_cpu"]),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        manifest = make_manifest(args, work)
        train = RandBatchAugmentd(keys="image", crop_size=args.crop).set_random_state(0)
        centre = RandBatchAugmentd(keys="image", crop_size=args.crop, mode="eval")

        # direct: decode every DICOM and tokenize every report per sample, one pass over the manifest
        direct_set = ManifestDataset(manifest, sample_transform(image_size=args.cache_size), on_error="skip")
        direct_loader = DataLoader(
            direct_set, batch_size=args.batch_size, num_workers=args.workers, collate_fn=list_data_collate
        )
        direct = rates(measure(direct_loader, train))

        began = time.perf_counter()
        summary = prepare_cache(
            manifest, work / "cache", size=args.cache_size, workers=args.prepare_workers, progress=False
        )
        prepare_s = time.perf_counter() - began

        cached_set = CachedDataset(summary.cache_dir)

        def cached_loader() -> DataLoader:
            sampler = RandomSampler(cached_set, replacement=True, num_samples=args.samples)
            return DataLoader(
                cached_set,
                batch_size=args.batch_size,
                sampler=sampler,
                num_workers=args.workers,
                collate_fn=collate_cached,
            )

        centre_run = measure(cached_loader(), centre)
        train_run = measure(cached_loader(), train)
    # cached "loader" includes the centre crop (a view, next to free); the direct loader's figure has no crop
    centre_rates, train_rates = rates(centre_run), rates(train_run)
    cached = {
        "loader": centre_rates["full"],
        "loader_cpu": centre_rates["full_cpu"],
        "full": train_rates["full"],
        "full_cpu": train_rates["full_cpu"],
    }

    print(
        f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch threads {args.threads}, "
        f"DataLoader workers {args.workers}, batch {args.batch_size}, cache {args.cache_size} px -> {args.crop} px"
    )
    print(
        f"prepare_cache: {summary.kept} images in {prepare_s:.1f} s = {summary.kept / prepare_s:.1f} images/s"
    )
    print(f"{'pairs/s':>44} {'direct':>9} {'cached':>9} {'ratio':>8}")
    rows = [
        ("loader (centre crop), wall clock", "loader"),
        ("loader + CPU augmentation, wall clock", "full"),
        ("loader (centre crop), per CPU second", "loader_cpu"),
        ("loader + CPU augmentation, per CPU second", "full_cpu"),
    ]
    for label, key in rows:
        if key.endswith("_cpu") and args.workers > 0:
            continue  # the workers' CPU time is not counted here
        print(f"{label:>44} {direct[key]:9.1f} {cached[key]:9.1f} {cached[key] / direct[key]:7.1f}x")
    augment_s = train_run["augment_s"]
    batches = max(1, train_run["samples"] // args.batch_size)
    print(
        f"augmentation alone: {train_run['samples'] / augment_s:.0f} pairs/s wall "
        f"({1000 * augment_s / batches:.1f} ms per batch, {1000 * train_run['augment_cpu'] / batches:.1f} ms CPU)"
    )


if __name__ == "__main__":
    main()
