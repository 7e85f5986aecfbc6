"""Start-up cost of the ``radmi`` command: import time of ``radmi.cli`` and of every command module.

Each module is imported in a fresh interpreter (``python -c "import radmi.commands.X"``); the figure is the best
of ``--repeats`` wall times minus the best time of a bare ``python -c pass``, so it is what radmi adds. Two
whole commands are timed too, as a user meets them: ``radmi --help`` and a command given a missing file.

With ``--baseline PATH`` (another checkout of radmi, e.g. a ``git worktree`` of an older commit) the same modules
are timed from that tree in interleaved rounds, and the table gives the ratio new/baseline.

    python benchmarks/bench_import_time.py --repeats 5
    git worktree add /tmp/radmi-old <commit> && python benchmarks/bench_import_time.py --baseline /tmp/radmi-old
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_modules(tree: Path) -> list[str]:
    """``radmi.cli`` and each ``radmi.commands.<name>`` module of a source tree."""
    names = sorted(p.stem for p in (tree / "radmi" / "commands").glob("*.py") if p.stem != "__init__")
    return ["radmi.cli", *(f"radmi.commands.{name}" for name in names)]


def wall_time(argv: list[str], tree: Path) -> float | None:
    """Seconds one subprocess takes, with ``tree`` first on the import path; None if a module import failed
    (a command the tree does not have)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if argv[1] == "-c" and result.returncode != 0:
        return None
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="another radmi source tree to compare with")
    args = parser.parse_args()

    trees = {"new": REPO} if args.baseline is None else {"new": REPO, "baseline": args.baseline.resolve()}
    modules = command_modules(REPO)
    cases: dict[str, list[str]] = {m: [sys.executable, "-c", f"import {m}"] for m in modules}
    cases["radmi --help"] = [sys.executable, "-m", "radmi", "--help"]
    cases["radmi manifest check missing.csv"] = [sys.executable, "-m", "radmi", "manifest", "check", "missing.csv"]
    bare = [sys.executable, "-c", "pass"]

    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeats):  # interleaved rounds: load from other processes hits every case alike
        for tree_name, tree in trees.items():
            best[tree_name, "bare"] = min(best.get((tree_name, "bare"), 1e9), wall_time(bare, tree))
            for case, argv in cases.items():
                seconds = wall_time(argv, tree)
                if seconds is not None:
                    best[tree_name, case] = min(best.get((tree_name, case), 1e9), seconds)

    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    print(f"python start-up {best['new', 'bare']:.3f} s (subtracted); load average {' '.join(load)}; "
          f"best of {args.repeats}")
    header = "| import / command | new (s) |" + (" baseline (s) | new/baseline |" if args.baseline else "")
    print(header)
    print("|---|---:|" + ("---:|---:|" if args.baseline else ""))
    for case in cases:
        new = max(best["new", case] - best["new", "bare"], 0.0)
        row = f"| `{case}` | {new:.2f} |"
        if args.baseline:
            if ("baseline", case) not in best:
                row += " (not in baseline) | |"
            else:
                old = max(best["baseline", case] - best["baseline", "bare"], 0.0)
                # below 0.05 s both are start-up noise; a ratio of two such numbers means nothing
                ratio = f"{new / max(old, 0.01):.2f}" if max(new, old) >= 0.05 else "both < 0.05 s"
                row += f" {old:.2f} | {ratio} |"
        print(row)


if __name__ == "__main__":
    main()
