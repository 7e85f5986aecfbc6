"""Why a pretraining epoch slows far more than 2x when other jobs share the cores, and what radmi's default does.

Times a CPU training step (ResNet-18 forward + backward + SGD step, batch 8, 128 px, one channel) in a fresh
process per setting, first on an otherwise idle machine, then beside ``--hogs`` busy processes (pure-Python
loops, one core each, like other jobs on a shared machine). Settings:

- ``torch default``: torch's own thread count (one per core) and OpenMP's default wait policy (threads spin
  while they wait for each other);
- ``torch default, passive wait``: the same threads with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep);
- ``1 thread``: ``torch.set_num_threads(1)``;
- ``radmi default``: what ``radmi`` sets (:func:`radmi.threads.configure_threads`): one thread per usable core
  and ``OMP_WAIT_POLICY=PASSIVE``.

Prints the median step time per setting and load, and each setting's slowdown under load (loaded / idle), in
the same run.

    python benchmarks/bench_threads.py --hogs 1,2 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEP_SCRIPT = r"""
import json, os, sys, time
settings = json.loads(sys.argv[1])
for key, value in settings.get("env", {}).items():
    os.environ[key] = value  # before torch loads OpenMP
if settings.get("radmi"):
    from radmi.threads import configure_threads
    configure_threads()
import torch
if settings.get("threads"):
    torch.set_num_threads(settings["threads"])
from radmi.models.image import ImageEncoder
torch.manual_seed(0)
model = ImageEncoder(backbone="resnet18", embed_dim=64)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
images = torch.rand(8, 1, 128, 128)
times = []
for step in range(settings["steps"] + 2):
    start = time.perf_counter()
    out = model(images)
    loss = sum(v.float().mean() for v in out)  # (global B x E, local B x E x h x w)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step >= 2:  # the first steps warm up allocators and kernels
        times.append(time.perf_counter() - start)
print(json.dumps({"threads": torch.get_num_threads(), "times": times}))
"""

SETTINGS = {
    "torch default": {},
    "torch default, passive wait": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "1 thread": {"threads": 1},
    "radmi default": {"radmi": True},
}


def step_times(setting: dict, steps: int) -> tuple[int, list[float]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "RADMI_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT, json.dumps({**setting, "steps": steps})],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["threads"], data["times"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", default="1,2", help="comma list: busy processes in each loaded phase")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    loads = [0, *(int(n) for n in args.hogs.split(","))]
    results: dict[tuple[int, str], tuple[int, float]] = {}
    for n_hogs in loads:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_hogs)]
        if hogs:
            time.sleep(5)  # the busy processes are running before the first timed step
        try:
            with open("/proc/loadavg") as handle:
                print(f"{n_hogs} busy processes: load average {handle.read().split()[0]} before the runs", flush=True)
            for name, setting in SETTINGS.items():
                threads, times = step_times(setting, args.steps)
                results[n_hogs, name] = (threads, statistics.median(times))
                print(f"  {name}: {threads} threads, median step {results[n_hogs, name][1]:.3f} s", flush=True)
        finally:
            for hog in hogs:
                hog.kill()
            if hogs:
                time.sleep(1)

    print(f"\ncores: {os.cpu_count()}; step = ResNet-18 fwd+bwd+SGD, batch 8, 128 px; step time in s (threads)")
    print("| setting | " + " | ".join(f"{n} busy" for n in loads) + " | " + " | ".join(f"{n} busy / idle" for n in loads[1:]) + " |")
    print("|---|" + "---|" * len(loads) + "---:|" * (len(loads) - 1))
    for name in SETTINGS:
        cells = [f"{results[n, name][1]:.3f} ({results[n, name][0]})" for n in loads]
        ratios = [f"{results[n, name][1] / results[0, name][1]:.2f}" for n in loads[1:]]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
