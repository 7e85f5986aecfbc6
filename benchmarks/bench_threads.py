"""Why a pretraining epoch slows far more than 2x when other jobs share the cores, and what radmi's default does.

Times a CPU training step (ResNet-18 forward + backward + SGD step, batch 8, 128 px, one channel) in a fresh
process per setting, first on an otherwise idle machine, then beside ``--hogs`` busy processes (pure-Python
loops, one core each, like other jobs on a shared machine). Settings:

- ``torch default``: torch's own thread count (one per core) and OpenMP's default wait policy (threads spin
  while they wait for each other);
- ``1 thread``: ``torch.set_num_threads(1)``;
- ``radmi default``: what ``radmi`` sets (:func:`radmi.threads.configure_threads`): threads = free cores
  (cores minus the 1-minute load average, at least 1) and ``OMP_WAIT_POLICY=PASSIVE``.

Prints the median step time per setting and load, and each setting's slowdown under load (loaded / idle), in
the same run.

    python benchmarks/bench_threads.py --hogs 2 --steps 12
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
    loss = sum(v.float().mean() for v in (out.values() if isinstance(out, dict) else [out]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step >= 2:  # the first steps warm up allocators and kernels
        times.append(time.perf_counter() - start)
print(json.dumps({"threads": torch.get_num_threads(), "times": times}))
"""

SETTINGS = {
    "torch default": {},
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
    parser.add_argument("--hogs", type=int, default=2, help="busy processes in the loaded runs")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    results: dict[tuple[str, str], tuple[int, float]] = {}
    for load in ("idle", f"{args.hogs} busy processes"):
        hogs = []
        if load != "idle":
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            time.sleep(65)  # let the 1-minute load average see them, as radmi's default reads it
        try:
            with open("/proc/loadavg") as handle:
                print(f"{load}: load average {handle.read().split()[0]} before the runs", flush=True)
            for name, setting in SETTINGS.items():
                threads, times = step_times(setting, args.steps)
                results[load, name] = (threads, statistics.median(times))
                print(f"  {name}: {threads} threads, median step {results[load, name][1]:.3f} s", flush=True)
        finally:
            for hog in hogs:
                hog.kill()
            if hogs:
                time.sleep(1)

    loaded = f"{args.hogs} busy processes"
    print(f"\ncores: {os.cpu_count()}; step = ResNet-18 fwd+bwd+SGD, batch 8, 128 px")
    print("| setting | idle: threads, step (s) | loaded: threads, step (s) | loaded / idle |")
    print("|---|---|---|---:|")
    for name in SETTINGS:
        (t_idle, s_idle), (t_load, s_load) = results["idle", name], results[loaded, name]
        print(f"| {name} | {t_idle}, {s_idle:.3f} | {t_load}, {s_load:.3f} | {s_load / s_idle:.2f} |")


if __name__ == "__main__":
    main()
