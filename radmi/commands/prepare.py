"""``radmi prepare MANIFEST --out CACHE``: decode, resize and tokenize a manifest once into a cache.

Examples::

    radmi prepare manifest.csv --size 256 --out cache256 --workers 8
    # on a cluster: one job per slice, same arguments; the job finishing last writes cache.json
    radmi prepare manifest.csv --size 512 --dtype uint16 --out cache512 --shard 3/16
    # if shards ran on different machines, copy their shards/ folders together and finalize:
    radmi prepare manifest.csv --out cache512 --finalize
"""

from __future__ import annotations

import argparse
import errno
import os

from radmi.models.hub import OFFLINE_DEFAULT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="manifest CSV (see data_manifests/README.md)")
    parser.add_argument("--out", required=True, help="cache folder to create or resume")
    parser.add_argument(
        "--size", type=int, default=256, help="side of the stored square images, px (default 256)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="decoding processes (default: CPUs, max 8)",
    )
    parser.add_argument(
        "--shard", default=None, metavar="I/N", help="prepare only slice I of N (from 0), e.g. 0/4"
    )
    parser.add_argument(
        "--tokenizer", default=OFFLINE_DEFAULT, help=f"tokenizer name or folder (default {OFFLINE_DEFAULT})"
    )
    parser.add_argument("--max-length", type=int, default=128, help="tokens per report, padded (default 128)")
    parser.add_argument(
        "--dtype", choices=("uint8", "uint16"), default="uint8", help="stored pixel type (default uint8)"
    )
    parser.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="skip: list bad rows and go on (default)",
    )
    parser.add_argument(
        "--finalize", action="store_true", help="only write index.csv + cache.json once all shards are done"
    )
    roots = parser.add_mutually_exclusive_group()
    roots.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="dataset folder every image/report path must resolve inside; a row outside it stops the run "
        "before anything is decoded (default: the roots the builder recorded in M.roots.json beside the "
        "manifest M.csv, else the manifest's own folder; give --root for a manifest from someone else, it "
        "replaces M.roots.json)",
    )
    roots.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="no dataset-root check at all: rows may point at any file (only for a manifest you trust)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from radmi.data.cache import finalize_cache, prepare_cache
    from radmi.data.cache_store import CACHE_JSON

    if args.finalize:
        info = finalize_cache(args.out, args.manifest)
        counts = info["counts"]
        print(
            f"cache complete: {counts['kept']} kept, {counts['bad']} bad of {counts['rows']} rows -> {args.out}"
        )
        return 0
    try:
        summary = _prepare(args, prepare_cache)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        from radmi.data.cache_store import RESUME_HINT
        from radmi.errors import CacheError

        raise CacheError(f"the disk is full; {RESUME_HINT}", path=err.filename or args.out) from err
    print(
        f"shard {summary.shard}: {summary.kept} kept, {summary.bad} bad of {summary.rows} rows "
        f"({summary.processed} decoded now) in {summary.seconds:.1f} s"
    )
    for item in summary.bad_rows[:20]:
        print(f"  bad row {item['row']}: {item['file']}: {item['reason']}")
    if summary.bad > 20:
        print(f"  ... {summary.bad - 20} more, all listed in {summary.cache_dir / CACHE_JSON} once complete")
    if summary.complete:
        print(f"cache ready: {summary.cache_dir.resolve()} (read it with radmi.data.cache.CachedDataset)")
    else:
        print(f"shard done; the cache is complete when every shard is: {summary.cache_dir.resolve()}")
    return 0


def _prepare(args: argparse.Namespace, prepare_cache):
    """The ``prepare_cache`` call of :func:`run` (kept apart so a full disk is turned into one line there)."""
    return prepare_cache(
        args.manifest,
        args.out,
        size=args.size,
        tokenizer=args.tokenizer,
        max_length=args.max_length,
        workers=args.workers,
        shard=args.shard,
        dtype=args.dtype,
        on_error=args.on_error,
        progress=not args.no_progress,
        root=args.root,
        allow_outside_root=args.allow_outside_root,
    )
