"""``radmi prepare`` pool workers exit when their parent is killed (``PR_SET_PDEATHSIG``, issue 17).

The test runs ``prepare_cache(..., workers=2)`` (what ``radmi prepare --workers 2`` calls) in a forked child,
finds its pool workers through ``/proc`` (no psutil), kills the child with SIGKILL (no clean-up runs in it) and
waits for every worker to be gone. A rerun of the same call must then finish the cache, equal to an
uninterrupted run. Linux only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import known_pixels, write_dicom, xray_dataset

from radmi.data.cache import prepare_cache
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import MANIFEST_COLUMNS, write_manifest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux only"
)

WORKERS = 2
ROWS = 4 * 64  # four chunks of the default 64 rows: both workers get work
SIZE = 32
MAX_LENGTH = 16
TIMEOUT_S = 60  # generous: a loaded 2-core machine; a pass takes well under a second of it


def _manifest(root: Path) -> Path:
    """ROWS rows over 8 DICOMs and 8 reports (the same files repeat under different ids)."""
    images, reports = [], []
    for i in range(8):
        images.append(write_dicom(root / f"img{i}.dcm", xray_dataset(known_pixels(160, 128, seed=i))))
        reports.append(root / f"r{i}.txt")
        reports[-1].write_text(f"FINDINGS: Small left pleural effusion number {i}.\nIMPRESSION: Effusion.\n")
    rows = [
        {
            "subject_id": f"{10000000 + i // 4}",
            "study_id": f"{50000000 + i}",
            "dicom_id": f"id{i:05d}",
            "image_path": str(images[i % 8]),
            "report_path": str(reports[i % 8]),
            "view": "PA",
            "split": "train",
            **dict.fromkeys(CHEXPERT_LABELS, np.nan),
            "edema_severity": np.nan,
        }
        for i in range(ROWS)
    ]
    return write_manifest(pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)), root / "manifest.csv")


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of ``pid`` from ``/proc/<pid>/stat``, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (ENOENT, ESRCH)
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return (fields[0], int(fields[1]), fields[19]) if len(fields) > 19 else None


def _forks_of(pid: int, candidates: dict[int, str]) -> dict[int, str]:
    """The ``candidates`` that are pool workers of ``pid``: forks of it (same command line; the ``fork`` start
    method), or forks of its forkserver (``forkserver``, the default from Python 3.14), not programs it ran and
    not the forkserver itself."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        found = {}
        for child, started in candidates.items():
            line = Path(f"/proc/{child}/cmdline").read_bytes()
            stat = _stat(child)
            from_forkserver = b"forkserver" in line and stat is not None and stat[1] != pid
            if line == command or from_forkserver:
                found[child] = started
        return found
    except OSError:
        return {}


def _descendants(pid: int) -> dict[int, str]:
    """Every living descendant of ``pid``: {pid: start time} (the start time tells a reused pid apart)."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[0] not in "ZX":
            parents.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, started in parents.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


def _alive(pid: int, started: str) -> bool:
    """``pid`` is still the process that started at ``started`` and is not a zombie (dead, waiting to be reaped)."""
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in "ZX"


def _prepare(manifest: Path, out: Path, workers: int = WORKERS):
    return prepare_cache(manifest, out, size=SIZE, max_length=MAX_LENGTH, workers=workers, progress=False)


def _prepare_in_own_group(manifest: Path, out: Path) -> None:
    os.setpgid(0, 0)  # a process group of its own: the test's clean-up can kill it with everything it started
    _prepare(manifest, out)


def test_workers_exit_when_prepare_is_killed(tmp_path):
    manifest = _manifest(tmp_path)
    out = tmp_path / "cache"
    workers: dict[int, str] = {}
    # radmi prepare's own code, in a forked child (a `radmi prepare` subprocess would spend seconds importing)
    parent = multiprocessing.get_context("fork").Process(target=_prepare_in_own_group, args=(manifest, out))
    parent.start()
    with contextlib.suppress(OSError):  # set from both sides, so that the clean-up never misses the group
        os.setpgid(parent.pid, parent.pid)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(workers) < WORKERS and parent.exitcode is None and time.monotonic() < deadline:
            workers = _forks_of(parent.pid, _descendants(parent.pid))
            time.sleep(0.01)
        assert len(workers) >= WORKERS, f"no {WORKERS} workers seen: {workers}, exit code {parent.exitcode}"
        os.kill(parent.pid, signal.SIGKILL)
        parent.join(TIMEOUT_S)
        # killed, not finished: the workers had only just started, with all the rows still to do
        assert parent.exitcode == -signal.SIGKILL
        deadline = time.monotonic() + TIMEOUT_S
        while (left := [pid for pid, started in workers.items() if _alive(pid, started)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert not left, f"prepare workers {left} outlived their killed parent {parent.pid}"
    finally:
        # nothing may survive a failing test: the parent's group while its pid is still unreaped (its own), then
        # any worker still there (ours only: the same start time)
        if parent.exitcode is None:
            try:
                os.killpg(parent.pid, signal.SIGKILL)
            except ProcessLookupError:
                parent.kill()
            parent.join()
        for pid, started in workers.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)

    # the rerun of the same call resumes and finishes; its cache equals an uninterrupted run's
    assert _prepare(manifest, out).complete
    reference = tmp_path / "reference"
    summary = _prepare(manifest, reference, workers=1)
    assert summary.complete and summary.kept == ROWS
    shard = "shards/00000-of-00001"
    names = sorted(path.name for path in (reference / shard).glob("*.npy"))
    assert "images.npy" in names and sorted(p.name for p in (out / shard).glob("*.npy")) == names
    for name in names:
        assert np.array_equal(np.load(out / shard / name), np.load(reference / shard / name)), name
    assert (out / "index.csv").read_text() == (reference / "index.csv").read_text()


def _arm_with(main_pid: int) -> None:
    from radmi.data.cache import _die_with_parent

    _die_with_parent(main_pid)
    os._exit(0)  # still here: the main process was judged alive


def test_a_worker_started_after_its_main_process_died_exits_at_once():
    """Killed between the fork and the prctl, under a subreaper the worker's parent id is not 1: the main
    process's pid, checked after the signal is armed, tells it."""
    context = multiprocessing.get_context("fork")
    gone = context.Process(target=os._exit, args=(0,))
    gone.start()
    gone.join()  # a pid that no process has now
    for main_pid, code in ((gone.pid, 1), (os.getpid(), 0)):
        worker = context.Process(target=_arm_with, args=(main_pid,))
        worker.start()
        worker.join(TIMEOUT_S)
        assert worker.exitcode == code, (main_pid, worker.exitcode)
