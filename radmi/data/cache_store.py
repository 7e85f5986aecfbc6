"""On-disk layout of a prepared cache: shard folders of ``.npy`` arrays, atomic JSON files, ``cache.json``.

A cache folder looks like this::

    CACHE/
      cache.json                    written last, when every shard is done: manifest hash, parameters, counts,
                                    bad rows; its presence means "complete"
      index.csv                     one line per kept manifest row: row, shard, slot and the manifest's
                                    columns except the paths
      shards/00000-of-00002/
        shard.json                  manifest hash, parameters, the shard's manifest rows [start, stop)
        progress.json               chunks done and bad rows so far (rewritten atomically)
        images.npy                  n x S x S uint8|uint16, value = round(intensity * (2**bits - 1))
        input_ids.npy               n x T int32
        attention_mask.npy          n x T uint8
        sentence_ids.npy            n x T int16   (-1 for special and pad tokens)
        labels.npy, label_mask.npy  n x 14 float32
        edema_severity.npy          n int8        (-1 when absent)

Slot ``k`` of shard ``[start, stop)`` holds manifest row ``start + k``; slots of bad rows stay zero. Shards
are never merged: a reader memory-maps each shard's arrays and follows ``index.csv``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from radmi.data.labels import NUM_LABELS
from radmi.errors import CacheError

#: Version of the layout above; a reader refuses other versions.
FORMAT_VERSION = 1
CACHE_JSON = "cache.json"
INDEX_CSV = "index.csv"
SHARDS_DIR = "shards"
SHARD_JSON = "shard.json"
PROGRESS_JSON = "progress.json"

#: Integer range of the stored pixel values for each supported dtype.
PIXEL_MAX = {"uint8": 255, "uint16": 65535}


def array_specs(size: int, max_length: int, dtype: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-row shape and dtype of every array a shard stores (the leading ``n`` is added by the caller)."""
    if dtype not in PIXEL_MAX:
        raise CacheError(f"dtype must be one of {sorted(PIXEL_MAX)}, not {dtype!r}")
    return {
        "images": ((size, size), dtype),
        "input_ids": ((max_length,), "int32"),
        "attention_mask": ((max_length,), "uint8"),
        "sentence_ids": ((max_length,), "int16"),
        "labels": ((NUM_LABELS,), "float32"),
        "label_mask": ((NUM_LABELS,), "float32"),
        "edema_severity": ((), "int8"),
    }


def file_sha256(path: str | PathLike, block: int = 1 << 20) -> str:
    """Hex SHA256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: str | PathLike, payload: Mapping[str, Any]) -> None:
    """Write JSON to a temporary file in the same folder, fsync it, then rename it over ``path``.

    A reader (or a resumed run after SIGKILL or power loss) sees either the old or the new file, never half.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode any other file of the cache gets (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | PathLike) -> dict[str, Any]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError as err:
        raise CacheError("file missing from the cache", path=path) from err
    except (OSError, json.JSONDecodeError) as err:
        raise CacheError(f"cannot read cache file ({err})", path=path) from err


def load_cache_info(cache_dir: str | PathLike) -> dict[str, Any]:
    """The parsed ``cache.json`` of a complete cache.

    Raises:
        CacheError: no ``cache.json`` (not a cache, or a shard is unfinished), or another format version.
    """
    path = Path(cache_dir) / CACHE_JSON
    if not path.is_file():
        raise CacheError(
            "not a complete cache (no cache.json): run `radmi prepare`, for every --shard if sharded",
            path=cache_dir,
        )
    info = read_json(path)
    if info.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"cache format {info.get('format_version')} is not the supported {FORMAT_VERSION}; prepare it again",
            path=cache_dir,
        )
    return info


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i`` < ``n``) -> ``(i, n)``; ``None`` -> ``(0, 1)``."""
    if shard is None:
        return 0, 1
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError as err:
        raise CacheError(f"--shard must look like i/n (e.g. 0/4), not {shard!r}") from err
    if count < 1 or not 0 <= index < count:
        raise CacheError(f"--shard {shard}: need 0 <= i < n (shards are numbered from 0)")
    return index, count


def shard_rows(num_rows: int, index: int, count: int) -> tuple[int, int]:
    """Manifest rows ``[start, stop)`` of shard ``index`` of ``count``: contiguous, sizes differ by at most 1."""
    return num_rows * index // count, num_rows * (index + 1) // count


def shard_dir(cache_dir: str | PathLike, index: int, count: int) -> Path:
    return Path(cache_dir) / SHARDS_DIR / f"{index:05d}-of-{count:05d}"


def existing_shard_counts(cache_dir: str | PathLike) -> set[int]:
    """The ``n`` of every ``shards/i-of-n`` folder already in the cache."""
    root = Path(cache_dir) / SHARDS_DIR
    if not root.is_dir():
        return set()
    return {int(p.name.split("-of-")[1]) for p in root.iterdir() if p.is_dir() and "-of-" in p.name}


#: what to do after a full disk; finished shards (and chunks) are kept, so the same command resumes
RESUME_HINT = "free disk space, then rerun the same radmi prepare command (finished work is kept)"


def reserve_disk_space(path: Path) -> None:
    """Reserve the blocks of a freshly created (sparse) file, so a full disk is an error now, not a SIGBUS later.

    Writing into a memory map of a sparse file on a full disk kills the process with SIGBUS (exit 135, no
    message); ``posix_fallocate`` fails with ENOSPC instead. Where the file system cannot reserve blocks, the free
    space is compared with the file's size.

    Raises:
        CacheError: naming the file, with the space needed and free, and the resume hint.
    """
    needed = path.stat().st_size
    try:
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, needed)
        return
    except OSError as err:
        if err.errno != errno.ENOSPC and shutil.disk_usage(path.parent).free >= needed:
            return  # the file system cannot reserve blocks, but the space is there
    except AttributeError:  # no posix_fallocate on this platform
        if shutil.disk_usage(path.parent).free >= needed:
            return
    free = shutil.disk_usage(path.parent).free
    raise CacheError(
        f"not enough free disk space for this cache array ({needed / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB "
        f"free); {RESUME_HINT}",
        path=path,
    )


def create_arrays(folder: Path, rows: int, size: int, max_length: int, dtype: str) -> None:
    """Allocate the shard's ``.npy`` files and reserve their disk space (:func:`reserve_disk_space`)."""
    for name, (shape, array_dtype) in array_specs(size, max_length, dtype).items():
        path = folder / f"{name}.npy"
        if not path.exists():
            try:
                np.lib.format.open_memmap(path, mode="w+", dtype=array_dtype, shape=(rows, *shape)).flush()
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    path.unlink(missing_ok=True)
                    raise CacheError(f"the disk is full; {RESUME_HINT}", path=path) from err
                raise
            try:
                reserve_disk_space(path)
            except CacheError:
                path.unlink(missing_ok=True)  # a half-reserved array must not look created on the rerun
                raise


def open_arrays(folder: Path, mode: str = "r") -> dict[str, np.memmap]:
    """Memory-map every array of a shard (``mode="r"`` to read, ``"r+"`` to fill)."""
    arrays = {}
    for name in array_specs(1, 1, "uint8"):
        path = folder / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode=mode)
        except (OSError, ValueError) as err:
            raise CacheError(f"cannot memory-map cache array ({err})", path=path) from err
    return arrays


def params_mismatch(recorded: Mapping[str, Any], asked: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between recorded and asked preprocessing parameters."""
    keys = sorted(set(recorded) | set(asked))
    return [
        f"{k}: cache has {recorded.get(k)!r}, asked {asked.get(k)!r}"
        for k in keys
        if recorded.get(k) != asked.get(k)
    ]
