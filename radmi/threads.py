"""CPU thread defaults: OpenMP threads that sleep while they wait, and one knob for their number.

PyTorch runs one OpenMP thread per core, and OpenMP's default lets a waiting thread spin for a while. When
other jobs share the cores, the team's threads are descheduled in turn, and the ones waiting at each parallel
region's barrier spin on CPU time that the straggler needs. benchmarks/bench_threads.py measured it
(docs/performance.md): with one other busy process on 2 cores a ResNet-18 training step took 1.11 s with
spinning threads and 0.68 s with sleeping ones (0.37 s idle either way). radmi therefore sets, once, at the
start of a ``radmi`` command:

- ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (read when torch loads OpenMP, so it applies to the
  commands, which import torch after this runs);
- the number of torch compute threads: ``--threads N`` / ``RADMI_THREADS``, else ``OMP_NUM_THREADS`` if the
  user set it, else every core this process may use (its CPU affinity). Fewer threads than cores did not help
  under load in that benchmark, and cost 1.7x on an idle machine.

Library users (``import radmi``) and ``python -m monai.bundle`` runs keep torch's own defaults unless they call
:func:`configure_threads`.
"""

from __future__ import annotations

import os
import sys

from radmi.errors import RadmiError

#: environment variable with radmi's thread count (the ``--threads`` option sets it for subprocesses too)
THREADS_ENV = "RADMI_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), else the CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Set the compute-thread defaults described in the module docstring; returns the thread count chosen.

    Args:
        threads: an explicit count (``--threads``); None: ``RADMI_THREADS``, ``OMP_NUM_THREADS``, usable cores.
    """
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        if threads is None and os.environ.get(name):
            try:
                threads = int(os.environ[name])
            except ValueError:
                raise RadmiError(f"{name} must be a whole number of threads, not {os.environ[name]!r}") from None
    if threads is None:
        threads = usable_cores()
    threads = max(1, int(threads))
    os.environ[THREADS_ENV] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch reads it when first imported; workers inherit it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:  # already loaded (e.g. tests, notebooks): set the count directly
        sys.modules["torch"].set_num_threads(threads)
    return threads
