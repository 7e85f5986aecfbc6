"""Time ``radmi.data.demo.generate``: studies per second, against the issue's target of 1,000 studies at 512 px
in 2 minutes (with --workers 2 on a 2-core machine).

    OMP_NUM_THREADS=1 python benchmarks/bench_demo_generate.py --studies 1000 --size 512 --workers 2

Prints the wall time, studies/s, the projected time for 1,000 studies, the ratio to the 120 s target (< 1 is
within it), the CPU seconds per study (a separate in-process probe) with the time they project on idle cores, and
the machine's load average before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from radmi.data.demo import generate

TARGET_SECONDS_PER_1000 = 120.0


def cpu_seconds_per_study(studies: int, args: argparse.Namespace, work: Path) -> float:
    """CPU seconds per study, measured in this process (workers=1) with ``time.process_time``.

    Unlike the wall time this hardly depends on what else the machine runs, so it projects the time on idle
    cores: studies x CPU-s per study / workers.
    """
    start = time.process_time()
    generate(work / "cpu-probe", studies, seed=args.seed + 1, size=args.size, views=args.views,
             compress=args.compress, workers=1, progress=False)  # fmt: skip
    return (time.process_time() - start) / studies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--views", default="frontal", choices=["frontal", "both"])
    parser.add_argument("--compress", default="mixed", choices=["mixed", "none"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-probe", type=int, default=50, help="studies for the CPU-time probe (0: skip)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="write here and keep it (default: a temp dir)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="radmi-bench-demo-"))
    out = args.keep or work / "data"
    load_before = os.getloadavg()
    start = time.perf_counter()
    summary = generate(out, args.studies, seed=args.seed, size=args.size, views=args.views,
                       compress=args.compress, workers=args.workers)  # fmt: skip
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    size_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
    cpu = cpu_seconds_per_study(args.cpu_probe, args, work) if args.cpu_probe else float("nan")
    shutil.rmtree(work, ignore_errors=True)

    per_1000 = seconds / args.studies * 1000
    print(
        f"cpus={os.cpu_count()} workers={args.workers} size={args.size} views={args.views} compress={args.compress}"
    )
    print(f"load average (1/5/15 min) before: {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}"
          f"  after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")  # fmt: skip
    print(
        f"studies={summary.studies} images={summary.images} boxes={summary.findings} size_on_disk={size_mb:.1f} MB"
    )
    print(
        f"wall={seconds:.1f} s  rate={args.studies / seconds:.2f} studies/s  projected_1000={per_1000:.1f} s"
    )
    quiet = cpu * 1000 / min(args.workers, os.cpu_count() or 1)
    print(
        f"cpu probe ({args.cpu_probe} studies, 1 process): {cpu:.3f} CPU-s per study; "
        f"on {args.workers} idle cores: ~{quiet:.0f} s per 1000 studies (ratio {quiet / TARGET_SECONDS_PER_1000:.2f})"
    )
    print(
        f"ratio vs target (120 s per 1000 studies) = {per_1000 / TARGET_SECONDS_PER_1000:.2f}  (<= 1 meets it)"
    )


if __name__ == "__main__":
    main()
