"""``radmi prepare``: decode, resize and tokenize a manifest once into a memory-mapped cache.

Decoding a full-size 12-16-bit radiograph costs tens of milliseconds; a GPU wants thousands of images per
second. :func:`prepare_cache` runs every manifest row once through ``radmi.data.pipeline.sample_transform``
(DICOM/PNG loading with the LUTs and MONOCHROME1 inversion, aspect-preserving resize, report parsing and
tokenizing, labels) and stores the result in the layout of ``radmi.data.cache_store``: the images as an
``N x S x S`` uint8/uint16 memory map, the tokens and labels as small integer/float arrays, an index table
and ``cache.json``. The report text itself is not stored, but the token ids decode back to it (up to
``max_length``): a cache is as sensitive as the reports. :class:`CachedDataset` reads it back.

- **Parallel**: ``workers`` processes decode chunks of rows; the main process writes them.
- **Resumable**: after each batch of chunks the arrays are flushed and ``progress.json`` is rewritten
  atomically, so a run that is killed or interrupted continues where it stopped when started again.
- **Shardable**: ``shard="i/n"`` processes only the i-th contiguous slice of the manifest into its own
  folder; the run that completes the last shard (or ``finalize_cache``) writes the index and ``cache.json``.
  Shards are read together, never copied into one file.
- **Validating**: a row whose transform raises a radmi error (unreadable DICOM, missing report, bad label...)
  is listed in ``cache.json`` (row, file, reason) and counted, and the run goes on (``on_error="skip"``).
- **Reports optional**: a row with an empty ``report_path`` (CheXpert) is kept with only the special tokens;
  ``cache.json`` counts the kept rows that have a report (``counts.with_report``).
- **Checked**: the manifest's SHA256 and the preprocessing parameters are recorded; asking for a cache
  with a different manifest or parameters raises :class:`~radmi.errors.CacheError`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radmi import __version__
from radmi.data.cache_dataset import CachedBatch, CachedDataset, collate_cached
from radmi.data.cache_store import (
    CACHE_JSON,
    FORMAT_VERSION,
    INDEX_CSV,
    PIXEL_MAX,
    PROGRESS_JSON,
    SHARD_JSON,
    array_specs,
    create_arrays,
    existing_shard_counts,
    file_sha256,
    load_cache_info,
    open_arrays,
    params_mismatch,
    parse_shard,
    read_json,
    shard_dir,
    shard_rows,
    write_json_atomic,
)
from radmi.data.manifest import PATH_COLUMNS, enforced_roots, read_manifest, require_inside_roots
from radmi.errors import CacheError, radmi_cause
from radmi.models.hub import OFFLINE_DEFAULT

__all__ = [
    "CacheSummary",
    "CachedBatch",
    "CachedDataset",
    "cache_params",
    "check_cache",
    "collate_cached",
    "finalize_cache",
    "is_cache",
    "load_cache_info",
    "prepare_cache",
]

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
#: Seconds between two commits of the progress file (each commit flushes the arrays first).
COMMIT_INTERVAL_S = 2.0


@dataclass
class CacheSummary:
    """What one :func:`prepare_cache` call did.

    Attributes:
        cache_dir: the cache folder.
        shard: ``"i/n"`` this call worked on.
        rows: manifest rows in this shard; ``kept`` + ``bad`` of them are done (all, unless interrupted).
        processed: rows decoded by this call (the rest were done by an earlier run).
        seconds: wall time of this call.
        complete: every shard is done and ``cache.json`` is written (the cache can be read).
        bad_rows: this shard's bad rows, ``{"row", "file", "reason"}`` each.
    """

    cache_dir: Path
    shard: str
    rows: int
    kept: int
    bad: int
    processed: int
    seconds: float
    complete: bool
    bad_rows: list[dict[str, Any]] = field(default_factory=list)


def cache_params(
    size: int = 256,
    tokenizer: str = OFFLINE_DEFAULT,
    max_length: int = 128,
    dtype: str = "uint8",
    transform_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The preprocessing parameters a cache records and is checked against.

    Passed through a JSON round trip, so they compare equal to what ``cache.json`` gives back (tuples -> lists).
    """
    if dtype not in PIXEL_MAX:
        raise CacheError(f"dtype must be one of {sorted(PIXEL_MAX)}, not {dtype!r}")
    params = {
        "size": int(size),
        "tokenizer": str(tokenizer),
        "max_length": int(max_length),
        "dtype": dtype,
        "transform_options": dict(sorted((transform_options or {}).items())),
    }
    try:
        return json.loads(json.dumps(params))
    except TypeError as err:
        raise CacheError(f"transform_options must be JSON values (numbers, strings, lists): {err}") from err


# ---------------------------------------------------------------------------------------------- workers
_TRANSFORM = None  # one sample_transform per worker process, built by _init_worker


def _die_with_parent(main_pid: int | None = None) -> None:
    """Make this worker process exit when its parent dies (Linux ``PR_SET_PDEATHSIG``; a no-op elsewhere).

    After ``kill -9`` of ``radmi prepare`` its pool workers would otherwise live on as orphans, holding memory
    and the files they read. Nothing is lost: a worker only computes; the parent writes the shards. ``main_pid``
    is the ``radmi prepare`` process: when it is already gone once the signal is armed (killed between the fork
    and here; a subreaper may have adopted this worker, so its parent id need not be 1), exit at once.
    """
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: nothing to do
        return
    if os.getppid() == 1 or (main_pid is not None and not _process_exists(main_pid)):
        os._exit(1)  # the parent died before the prctl took effect


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _init_worker(params: Mapping[str, Any], pool_worker: bool = True, main_pid: int | None = None) -> None:
    """Build the per-row pipeline once per process (loading the tokenizer is the slow part)."""
    global _TRANSFORM
    if pool_worker:
        _die_with_parent(main_pid)
    import torch

    from radmi.data.pipeline import sample_transform

    if pool_worker:
        torch.set_num_threads(1)  # parallelism comes from the processes
    _TRANSFORM = sample_transform(
        image_size=params["size"],
        tokenizer=params["tokenizer"],
        max_length=params["max_length"],
        **params["transform_options"],
    )


def _quantize(image: np.ndarray, dtype: str) -> np.ndarray:
    """[0, 1] float -> nearest integer level of ``dtype`` (error at most half a level, 0.5 / (2**bits - 1))."""
    top = PIXEL_MAX[dtype]
    return np.rint(np.clip(image, 0.0, 1.0) * np.float32(top)).astype(dtype)


def _process_chunk(
    chunk: int, first_row: int, records: Sequence[dict], params: Mapping[str, Any], on_error: str
) -> tuple[int, dict[str, np.ndarray], list[dict[str, Any]]]:
    """Run the pipeline on ``records`` (manifest rows ``first_row...``) -> (chunk, arrays, bad rows).

    ``arrays`` hold one entry per record (zeros for bad rows), already in the cache's dtypes.
    """
    size, max_length = params["size"], params["max_length"]
    specs = array_specs(size, max_length, params["dtype"])
    arrays = {name: np.zeros((len(records), *shape), dtype) for name, (shape, dtype) in specs.items()}
    bad = []
    for offset, record in enumerate(records):
        row = first_row + offset
        try:
            sample = _TRANSFORM(record)
            image = np.asarray(sample["image"], dtype=np.float32)
            if not np.isfinite(image).all():
                raise CacheError(
                    "the decoded image has NaN or infinite values", path=record.get("image_path")
                )
        except Exception as err:
            cause = radmi_cause(err)
            if cause is None:  # a bug or an environment problem, not bad data: stop with the row named
                raise CacheError(
                    f"preparing the row failed: {type(err).__name__}: {err}",
                    path=record.get("image_path"),
                    row=row,
                ) from err
            if on_error == "raise":
                raise type(cause)(cause.reason, path=cause.path, row=row) from err
            bad.append(
                {"row": row, "file": cause.path or str(record.get("image_path", "")), "reason": cause.reason}
            )
            continue
        if image.shape != (1, size, size):  # the pipeline's contract, not the data, is broken
            raise CacheError(
                f"the pipeline gave an image of shape {image.shape}, expected (1, {size}, {size})", row=row
            )
        arrays["images"][offset] = _quantize(image[0], params["dtype"])
        for name in ("input_ids", "attention_mask", "sentence_ids", "labels", "label_mask", "edema_severity"):
            arrays[name][offset] = np.asarray(sample[name])
    return chunk, arrays, bad


# ------------------------------------------------------------------------------------------ cache checks
def is_cache(path: str | PathLike) -> bool:
    """Whether ``path`` is a complete prepared cache folder."""
    return (Path(path) / CACHE_JSON).is_file()


def _check_recorded(
    recorded: Mapping[str, Any], sha256: str | None, params: Mapping[str, Any] | None, where: Path
):
    if sha256 is not None and recorded["manifest"]["sha256"] != sha256:
        raise CacheError(
            "the cache was prepared from a different manifest (SHA256 "
            f"{recorded['manifest']['sha256'][:12]}..., asked {sha256[:12]}...); use another --out or delete it",
            path=where,
        )
    if params is not None:
        differences = params_mismatch(recorded["params"], params)
        if differences:
            raise CacheError(
                "the cache was prepared with other parameters ("
                + "; ".join(differences)
                + "); use another --out",
                path=where,
            )


def check_cache(
    cache_dir: str | PathLike, manifest: str | PathLike | None = None, **params: Any
) -> dict[str, Any]:
    """Raise CacheError unless ``cache_dir`` is complete and matches ``manifest`` (by SHA256) and ``params``.

    Args:
        cache_dir: the cache folder.
        manifest: the manifest CSV it must have been prepared from; ``None`` skips the hash check.
        params: keyword arguments of :func:`cache_params` (size, tokenizer, max_length, dtype,
            transform_options); given ones are filled up with the defaults, none skips the check.

    Returns:
        the cache's ``cache.json``.
    """
    info = load_cache_info(cache_dir)
    sha256 = None if manifest is None else file_sha256(manifest)
    _check_recorded(info, sha256, cache_params(**params) if params else None, Path(cache_dir))
    return info


# ---------------------------------------------------------------------------------------------- a shard
def _open_shard(
    cache_dir: Path,
    index: int,
    count: int,
    manifest_info: dict[str, Any],
    params: dict[str, Any],
    chunk_size: int,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Create or reopen shard ``index`` of ``count``: (folder, shard.json, progress.json), checked."""
    others = existing_shard_counts(cache_dir) - {count}
    if others:
        raise CacheError(
            f"this cache is being prepared in {sorted(others)[0]} shards; run every shard with the same n",
            path=cache_dir,
        )
    folder = shard_dir(cache_dir, index, count)
    start, stop = shard_rows(manifest_info["rows"], index, count)
    meta = {
        "format_version": FORMAT_VERSION,
        "manifest": manifest_info,
        "params": params,
        "shard": [index, count],
        "rows": [start, stop],
        "chunk_size": chunk_size,
    }
    if (folder / SHARD_JSON).is_file():
        recorded = read_json(folder / SHARD_JSON)
        _check_recorded(recorded, manifest_info["sha256"], params, folder)
        chunk_size = recorded["chunk_size"]  # resume with the chunking the shard was started with
        meta["chunk_size"] = chunk_size
        if recorded["rows"] != meta["rows"]:
            raise CacheError("the shard's row range does not match the manifest", path=folder)
        progress = read_json(folder / PROGRESS_JSON)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        create_arrays(folder, stop - start, params["size"], params["max_length"], params["dtype"])
        progress = {"done_chunks": [], "bad": []}
        write_json_atomic(folder / PROGRESS_JSON, progress)
        write_json_atomic(folder / SHARD_JSON, meta)  # written last: its presence means "arrays allocated"
    return folder, meta, progress


def _chunks(start: int, stop: int, chunk_size: int) -> Iterator[tuple[int, int, int]]:
    """(chunk number, first row, end row) of the shard's rows."""
    for number, first in enumerate(range(start, stop, chunk_size)):
        yield number, first, min(first + chunk_size, stop)


def _run_chunks(
    todo: list[tuple[int, int, int]],
    records: list[dict],
    params: dict[str, Any],
    on_error: str,
    workers: int,
) -> Iterator[tuple[int, dict[str, np.ndarray], list[dict[str, Any]]]]:
    """Yield finished chunks, in process (``workers`` <= 1) or from a process pool, in completion order."""
    if workers <= 1:
        _init_worker(params, pool_worker=False)
        for number, first, end in todo:
            yield _process_chunk(number, first, records[first:end], params, on_error)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(params, True, os.getpid())) as pool:
        pending: set = set()
        queue = iter(todo)
        try:
            while True:
                while len(pending) < 2 * workers and (item := next(queue, None)) is not None:
                    number, first, end = item
                    pending.add(
                        pool.submit(_process_chunk, number, first, records[first:end], params, on_error)
                    )
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _fill_shard(
    folder: Path,
    meta: dict[str, Any],
    progress: dict[str, Any],
    records: list[dict],
    on_error: str,
    workers: int,
    show_progress: bool,
) -> int:
    """Process the shard's missing chunks into its arrays; returns the number of rows processed."""
    start, stop = meta["rows"]
    done = set(progress["done_chunks"])
    todo = [c for c in _chunks(start, stop, meta["chunk_size"]) if c[0] not in done]
    if not todo:
        return 0
    arrays = open_arrays(folder, mode="r+")
    bad: list[dict[str, Any]] = list(progress["bad"])
    finished: list[int] = []
    processed = 0
    last_commit = time.monotonic()

    def commit() -> None:
        for array in arrays.values():
            array.flush()  # the data reaches the disk before the progress file says it is there
        progress["done_chunks"] = sorted(done.union(finished))
        progress["bad"] = sorted(bad, key=lambda item: item["row"])
        write_json_atomic(folder / PROGRESS_JSON, progress)

    bar = tqdm(
        total=stop - start,
        initial=stop - start - sum(end - first for _, first, end in todo),
        desc=f"prepare {folder.name}",
        unit="img",
        disable=not show_progress,
    )
    try:
        for number, chunk_arrays, chunk_bad in _run_chunks(todo, records, meta["params"], on_error, workers):
            first, end = (
                start + number * meta["chunk_size"],
                min(start + (number + 1) * meta["chunk_size"], stop),
            )
            for name, values in chunk_arrays.items():
                arrays[name][first - start : end - start] = values
            for item in chunk_bad:
                # the file name only: MIMIC-CXR folders carry the subject id
                logger.warning(
                    "bad manifest row %d (%s): %s", item["row"], Path(item["file"]).name, item["reason"]
                )
            bad.extend(chunk_bad)
            finished.append(number)
            processed += end - first
            bar.update(end - first)
            bar.set_postfix(bad=len(bad))
            if time.monotonic() - last_commit > COMMIT_INTERVAL_S:
                commit()
                last_commit = time.monotonic()
    finally:
        commit()  # keep what is done, also on Ctrl-C or an error in a later chunk
        bar.close()
    return processed


def _shard_state(cache_dir: Path, index: int, count: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    folder = shard_dir(cache_dir, index, count)
    if not (folder / SHARD_JSON).is_file():
        return None
    return read_json(folder / SHARD_JSON), read_json(folder / PROGRESS_JSON)


def _shard_complete(meta: Mapping[str, Any], progress: Mapping[str, Any]) -> bool:
    start, stop = meta["rows"]
    return len(progress["done_chunks"]) == len(range(start, stop, meta["chunk_size"]))


# ------------------------------------------------------------------------------------------------ finalize
def finalize_cache(
    cache_dir: str | PathLike, manifest: str | PathLike | pd.DataFrame | None = None
) -> dict[str, Any]:
    """Write ``index.csv`` and ``cache.json`` once every shard is done; returns the ``cache.json`` dict.

    Args:
        cache_dir: the cache folder.
        manifest: the manifest (path, or the frame ``read_manifest`` gave) for the index table's columns;
            ``None`` reads the file recorded by the shards. A path is checked against the recorded SHA256.

    Raises:
        CacheError: a shard is missing or unfinished (the message lists them), or the manifest differs.
    """
    cache_dir = Path(cache_dir)
    counts = existing_shard_counts(cache_dir)
    if len(counts) != 1:
        raise CacheError("no shards (or shards of several --shard i/n splits) in this folder", path=cache_dir)
    count = counts.pop()
    states = [_shard_state(cache_dir, i, count) for i in range(count)]
    missing = [f"{i}/{count}" for i, s in enumerate(states) if s is None or not _shard_complete(*s)]
    if missing:
        raise CacheError(
            f"shard(s) {', '.join(missing)} not finished: run `radmi prepare --shard` for them",
            path=cache_dir,
        )
    first_meta = states[0][0]
    manifest_info, params = first_meta["manifest"], first_meta["params"]
    for meta, _ in states:
        _check_recorded(meta, manifest_info["sha256"], params, cache_dir)
    if isinstance(manifest, pd.DataFrame):
        frame = manifest
    else:
        path = Path(manifest) if manifest is not None else Path(manifest_info["path"])
        if file_sha256(path) != manifest_info["sha256"]:
            raise CacheError("the manifest changed since the cache was prepared (SHA256 differs)", path=path)
        frame = read_manifest(path, resolve=False)
    if len(frame) != manifest_info["rows"]:
        raise CacheError(
            f"the manifest has {len(frame)} rows, the cache expects {manifest_info['rows']}", path=cache_dir
        )

    bad = sorted((item for _, progress in states for item in progress["bad"]), key=lambda item: item["row"])
    bad_rows = np.array([item["row"] for item in bad], dtype=np.int64)
    kept_rows = ~np.isin(np.arange(len(frame)), bad_rows)
    # recorded so that pretraining can refuse a cache without reports (CheXpert) without opening the arrays
    with_report = int((frame["report_path"].astype(str).str.strip() != "").to_numpy()[kept_rows].sum())
    index = frame.drop(columns=[c for c in PATH_COLUMNS if c in frame.columns]).reset_index(drop=True)
    index.insert(0, "row", np.arange(len(index)))
    shard_of_row = np.zeros(len(index), dtype=np.int64)
    slot_of_row = np.zeros(len(index), dtype=np.int64)
    for i, (meta, _) in enumerate(states):
        start, stop = meta["rows"]
        shard_of_row[start:stop] = i
        slot_of_row[start:stop] = np.arange(stop - start)
    index.insert(1, "shard", shard_of_row)
    index.insert(2, "slot", slot_of_row)
    index = index[~np.isin(index["row"].to_numpy(), bad_rows)]
    tmp = cache_dir / f".{INDEX_CSV}.{os.getpid()}.tmp"
    index.to_csv(tmp, index=False)
    os.replace(tmp, cache_dir / INDEX_CSV)

    info = {
        "format_version": FORMAT_VERSION,
        "radmi_version": __version__,
        "manifest": manifest_info,
        "params": params,
        "tokenizer": params["tokenizer"],
        "shards": count,
        "counts": {
            "rows": int(manifest_info["rows"]),
            "kept": len(index),
            "bad": len(bad),
            "kept_by_split": {str(k): int(v) for k, v in index["split"].value_counts().sort_index().items()},
            "with_report": with_report,
        },
        "bad_rows": bad,
    }
    write_json_atomic(cache_dir / CACHE_JSON, info)  # last: its presence means "complete"
    return info


# ----------------------------------------------------------------------------------------------- prepare
def prepare_cache(
    manifest: str | PathLike,
    out: str | PathLike,
    size: int = 256,
    tokenizer: str = OFFLINE_DEFAULT,
    max_length: int = 128,
    workers: int = 1,
    shard: str | None = None,
    dtype: str = "uint8",
    on_error: str = "skip",
    transform_options: Mapping[str, Any] | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    root: str | PathLike | None = None,
    allow_outside_root: bool = False,
) -> CacheSummary:
    """Decode, resize and tokenize the rows of ``manifest`` once into the cache folder ``out``.

    Re-running with the same arguments skips what is done; a finished cache that matches returns at once
    (whatever ``shard`` says). Shards of one cache must all use the same ``n`` and parameters.

    Args:
        manifest: manifest CSV (``radmi.data.manifest`` schema).
        out: cache folder (created).
        size: S, the side of the stored square images in pixels (e.g. 256 or 512).
        tokenizer: tokenizer name or folder (``radmi.models.hub`` names, default the offline MiniLM).
        max_length: T, tokens per report (padded, truncated by whole sentences).
        workers: decoding processes (1: in this process).
        shard: ``"i/n"`` to prepare only the i-th (from 0) of n slices of the manifest; ``None`` = all.
        dtype: ``"uint8"`` (256 levels, 4x smaller) or ``"uint16"`` (65536 levels).
        on_error: ``"skip"``: bad rows are listed and counted, the run goes on; ``"raise"``: the first bad
            row stops the run with its radmi error (the rows done so far are kept).
        transform_options: extra keyword arguments for ``sample_transform`` (recorded and checked too).
        chunk_size: rows per work item (a new cache only; a resumed shard keeps its own).
        progress: show a tqdm progress bar.
        root: the dataset root every ``image_path``/``report_path`` must resolve inside; a row outside it is a
            :class:`ManifestError` before anything is decoded (a ``report_path=/etc/passwd`` never reaches the
            cache). None: the roots the manifest's builder recorded beside it (``M.roots.json``), else the
            manifest's own folder (:func:`radmi.data.manifest_schema.dataset_roots`).
        allow_outside_root: no root check at all (the rows may point anywhere).

    Returns:
        a :class:`CacheSummary`; ``complete`` is True once every shard is done and ``cache.json`` is written.

    Raises:
        CacheError: ``out`` holds a cache of another manifest or other parameters, or a row failed for a
            reason that is not bad data (the message names the row).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    began = time.perf_counter()
    cache_dir = Path(out)
    index, count = parse_shard(shard)
    params = cache_params(size, tokenizer, max_length, dtype, transform_options)
    manifest_path = Path(manifest).resolve()
    frame = read_manifest(manifest_path)
    if not allow_outside_root:
        roots, origin = enforced_roots(manifest, root)  # as given: its folder's linked name counts too
        require_inside_roots(frame, roots, path=manifest_path, origin=origin)
    manifest_info = {"path": str(manifest_path), "sha256": file_sha256(manifest_path), "rows": len(frame)}
    if is_cache(cache_dir):  # finished (possibly in shards): check it and return, nothing to do
        info = load_cache_info(cache_dir)
        _check_recorded(info, manifest_info["sha256"], params, cache_dir)
        counts = info["counts"]
        return CacheSummary(
            cache_dir=cache_dir,
            shard=f"{index}/{count}",
            rows=counts["rows"],
            kept=counts["kept"],
            bad=counts["bad"],
            processed=0,
            seconds=time.perf_counter() - began,
            complete=True,
            bad_rows=list(info["bad_rows"]),
        )
    cache_dir.mkdir(parents=True, exist_ok=True)

    folder, meta, progress_state = _open_shard(
        cache_dir, index, count, manifest_info, params, int(chunk_size)
    )
    records = frame.reset_index(drop=True).rename_axis("row").reset_index().to_dict("records")
    processed = _fill_shard(folder, meta, progress_state, records, on_error, int(workers), progress)

    states = [_shard_state(cache_dir, i, count) for i in range(count)]
    complete = all(s is not None and _shard_complete(*s) for s in states)
    if complete:
        finalize_cache(cache_dir, frame)
    start, stop = meta["rows"]
    done = set(progress_state["done_chunks"])
    done_rows = sum(
        end - first for number, first, end in _chunks(start, stop, meta["chunk_size"]) if number in done
    )
    bad = progress_state["bad"]
    return CacheSummary(
        cache_dir=cache_dir,
        shard=f"{index}/{count}",
        rows=stop - start,
        kept=done_rows - len(bad),
        bad=len(bad),
        processed=processed,
        seconds=time.perf_counter() - began,
        complete=complete,
        bad_rows=list(bad),
    )
