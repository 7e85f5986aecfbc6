"""CPU thread defaults: no more compute threads than free cores, and OpenMP threads that sleep while waiting.

PyTorch starts one OpenMP thread per core, and OpenMP's default lets a waiting thread spin for a while. When
other jobs share the cores, a thread that was descheduled holds up its team at every parallel region while the
others spin and take CPU time from the jobs that would let it run; benchmarks/bench_threads.py measures the
cost (docs/performance.md). radmi therefore sets, once, at the start of a ``radmi`` command:

- ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning; read when torch loads OpenMP, so only when
  torch is not imported yet);
- the number of torch compute threads: ``--threads N`` / ``RADMI_THREADS``, else ``OMP_NUM_THREADS`` if the
  user set it, else the free cores: the cores this process may use minus the 1-minute load average, at least 1.

Library users (``import radmi``) and ``python -m monai.bundle`` runs keep torch's own defaults unless they call
:func:`configure_threads`.
"""

from __future__ import annotations

import os
import sys

#: environment variable with radmi's thread count (the ``--threads`` option sets it for subprocesses too)
THREADS_ENV = "RADMI_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), else the CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def free_cores() -> int:
    """Usable cores minus the 1-minute load average (rounded), at least 1."""
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        load = 0.0
    return max(1, min(cores, round(cores - load)))


def configure_threads(threads: int | None = None) -> int:
    """Set the compute-thread defaults described in the module docstring; returns the thread count chosen.

    Args:
        threads: an explicit count (``--threads``); None: ``RADMI_THREADS``, ``OMP_NUM_THREADS``, free cores.
    """
    if threads is None and os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads is None:
        threads = free_cores()
    threads = max(1, int(threads))
    os.environ[THREADS_ENV] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch reads it when first imported; workers inherit it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:  # already loaded (e.g. tests, notebooks): set the count directly
        sys.modules["torch"].set_num_threads(threads)
    return threads
