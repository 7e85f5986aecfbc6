"""A full disk ends ``radmi prepare`` and pretraining's checkpoint writes in one line with the resume hint, and
the rerun after freeing space completes (no SIGBUS from a memory map of a sparse file)."""

from __future__ import annotations

import errno
import os
from collections import namedtuple

import numpy as np
import pytest
from pretrain_data import write_tiny_manifest

import radmi.data.cache_store as cache_store
import radmi.engines.checkpoint as checkpoint
from radmi.cli import main
from radmi.data.cache import CachedDataset
from radmi.errors import TrainingError

Usage = namedtuple("Usage", "total used free")


def test_prepare_on_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path, monkeypatch, capsys):
    manifest = write_tiny_manifest(tmp_path / "data", n_train=4, n_validate=2)
    out = tmp_path / "cache"
    argv = ["prepare", str(manifest), "--out", str(out), "--size", "32", "--max-length", "16", "--workers", "1",
            "--no-progress"]  # fmt: skip

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_store.os, "posix_fallocate", full)
    monkeypatch.setattr(cache_store.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough free disk space" in err[0] and "rerun the same radmi prepare" in err[0]
    # no half-made array is left to look finished
    assert not any(path.suffix == ".npy" for path in out.rglob("*"))

    monkeypatch.undo()
    assert main(argv) == 0
    dataset = CachedDataset(out)
    assert len(dataset) == 6 and np.isfinite(dataset[0]["image"].numpy()).all()


def test_reserving_space_falls_back_to_the_free_space_where_blocks_cannot_be_reserved(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    path.write_bytes(b"\0" * 4096)

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(cache_store.os, "posix_fallocate", unsupported)
    cache_store.reserve_disk_space(path)  # enough free space: fine
    monkeypatch.setattr(cache_store.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 10))
    with pytest.raises(cache_store.CacheError, match="4096|0.00 GiB needed"):
        cache_store.reserve_disk_space(path)


def test_a_checkpoint_write_on_a_full_disk_is_a_training_error(tmp_path, monkeypatch):
    saver = checkpoint._FixedNameDiskSaver(str(tmp_path))

    def failed_write(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file data/0")

    monkeypatch.setattr(checkpoint.torch, "save", failed_write)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 1024))
    with pytest.raises(TrainingError, match="the disk is full; free space and rerun the same command"):
        saver({"x": 1}, "checkpoint_1.pt")
    # with space left, the same error is not called a full disk
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
        saver({"x": 1}, "checkpoint_1.pt")
