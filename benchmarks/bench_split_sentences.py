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
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radmi.data import reports  # noqa: E402
from radmi.data.reports import split_sentences  # noqa: E402

_OLD_CANDIDATE = re.compile(r"[.!?]+[\"')\]]*(?=\s+)")


def _old_unwrap(text: str) -> str:
    paragraphs = []
    for block in reports._BLANK_LINES.split(text.strip("\n")):
        lines: list[str] = []
        for raw in block.split("\n"):
            line = reports._SPACES.sub(" ", raw).strip()
            if not line:
                continue
            if lines and not reports._LIST_MARKER.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _old_ends_sentence(chunk: str, following: str) -> bool:
    following = following.lstrip()
    if not following:
        return True
    if chunk.endswith(("!", "?")):
        return True
    starts_upper = following[0].isupper() or following[0].isdigit() or following.startswith(("___", '"', "("))
    words = chunk.rstrip(".\"')]").split()
    last = words[-1] if words else ""
    bare = last.lstrip("([\"'")
    if reports._DOTTED.fullmatch(bare):
        return bare.lower() in reports._DOTTED_CAN_END and starts_upper
    if bare.lower() in reports._ABBREVIATIONS:
        return False
    if bare.isdigit() and len(words) == 1:
        return False
    return starts_upper


def old_split_sentences(text: str) -> list[str]:
    """The splitter before issue 17 (copied verbatim, with its quadratic unwrap)."""
    sentences: list[str] = []
    for line in _old_unwrap(reports._normalize_text(text)).split("\n"):
        line = line.strip()
        start = 0
        for match in _OLD_CANDIDATE.finditer(line):
            end = match.end()
            if _old_ends_sentence(line[start:end].strip(), line[end:]):
                sentences.append(line[start:end])
                start = end
        sentences.append(line[start:])
    cleaned = (reports._LIST_MARKER.sub("", s.strip(), count=1).strip() for s in sentences)
    return [s for s in cleaned if any(c.isalnum() for c in s)]


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
