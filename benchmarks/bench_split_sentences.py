"""split_sentences: the linear splitter (issue 17) against the old quadratic one, in one run.

The old splitter copied the rest of the line at every candidate boundary and re-stripped the growing chunk, so
its time grew with the square (or worse) of the length of a line; 0.8 MB took seconds and 20 MB would take
tens of minutes. The new one is measured on sizes up to 20 MB; the old one only on the small sizes, on the
same text, and the ratio is printed where both ran.

    python benchmarks/bench_split_sentences.py [--max-mb 20] [--old-max-kb 200]

Two texts: ``prose`` (realistic sentences, one long line) and ``no-boundary`` ("foo. bar " repeated: every
period is a candidate but none ends a sentence, the old worst case).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reports_reference import split_sentences_reference as old_split_sentences  # noqa: E402

from radmi.data.reports import split_sentences  # noqa: E402

TEXTS = {
    "prose": "There is a small right pleural effusion, e.g. 2.5 cm. Dr. Smith was notified at 3 p.m. ",
    "no-boundary": "foo. bar ",
}


def _time(function, text: str) -> tuple[float, int]:
    started = time.perf_counter()
    count = len(function(text))
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-mb", type=float, default=20.0, help="largest text for the new splitter (MB)")
    parser.add_argument("--old-max-kb", type=float, default=200.0, help="largest text for the old one (KB)")
    args = parser.parse_args()
    sizes = [25_000, 50_000, 100_000, 200_000, 1_000_000, 5_000_000, 20_000_000]
    sizes = [s for s in sizes if s <= args.max_mb * 1e6]
    print(f"{'text':<12} {'size':>10} {'new s':>8} {'old s':>8} {'old/new':>8} {'sentences':>10}")
    for name, unit in TEXTS.items():
        for size in sizes:
            text = (unit * (size // len(unit) + 1))[:size]
            new_s, count = _time(split_sentences, text)
            old = ""
            ratio = ""
            if size <= args.old_max_kb * 1000:
                old_s, old_count = _time(old_split_sentences, text)
                assert old_count == count, (old_count, count)
                old, ratio = f"{old_s:8.2f}", f"{old_s / new_s:8.0f}"
            print(f"{name:<12} {size / 1e6:>8.3f}MB {new_s:8.3f} {old:>8} {ratio:>8} {count:>10}")


if __name__ == "__main__":
    main()
