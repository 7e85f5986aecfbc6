"""Reports per second of ``radmi.data.labeler`` beside a naive per-phrase regex loop, in the same run.

The corpus: MIMIC-CXR-shaped reports (header lines, INDICATION, COMPARISON, FINDINGS and IMPRESSION wrapped at
79 columns) assembled from the hand-written sentences of ``tests/labeler_sentences.tsv`` (5 to 12 findings
sentences, 1 to 3 impression sentences each), so that they are longer and more varied than the demo's.

- **radmi**: ``label_reports`` (sections and sentences by ``report_sentences``, ONE combined regex per report).
- **baseline**: the same sections, sentences, cue scopes and aggregation, but every phrase of the tables is its
  own compiled regex, searched in a Python loop over phrases for every sentence (the obvious way to write a
  labeler). Run on the first ``--baseline-reports`` reports; both labelings are compared on them.

    python benchmarks/bench_labeler.py                      # 20,000 reports, baseline on 2,000
    python benchmarks/bench_labeler.py --reports 5000 --baseline-reports 1000

Pinned to one CPU core (``os.sched_setaffinity``) where the OS allows; prints the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data import labeler as L
from radmi.data import labeler_phrases as P
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.reports import report_sentences

SENTENCES = Path(__file__).parents[1] / "tests" / "labeler_sentences.tsv"


def make_reports(count: int, seed: int = 0) -> list[str]:
    """``count`` MIMIC-CXR-shaped report texts built from the hand-written test sentences."""
    sentences = pd.read_csv(SENTENCES, sep="\t", comment="#", dtype=str)["sentence"].tolist()
    rng = np.random.default_rng(seed)
    reports = []
    for _ in range(count):
        findings = rng.choice(sentences, size=int(rng.integers(5, 13)), replace=False)
        impression = rng.choice(sentences, size=int(rng.integers(1, 4)), replace=False)

        def wrap(parts) -> str:
            return textwrap.fill("  ".join(parts), width=79, initial_indent=" ", subsequent_indent=" ")

        reports.append(
            " " * 33 + "FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ year old with "
            "dyspnea  // ?effusion\n \n COMPARISON:  ___\n \n FINDINGS: \n \n"
            + wrap(findings) + "\n \n IMPRESSION: \n \n" + wrap(impression) + "\n"
        )
    return reports


# ---- the naive baseline -------------------------------------------------------------------------------------
def _phrase_patterns() -> list[tuple[re.Pattern[str], str, tuple[int, ...]]]:
    """Every phrase of the tables as its own compiled regex, in the combined pattern's priority order."""
    index = {name: i for i, name in enumerate(CHEXPERT_LABELS)}
    entries: list[tuple[str, str, tuple[int, ...]]] = [(p, L.BLOCKER, ()) for p in P.BLOCKERS]
    entries += [(p, kind, ()) for kind, phrases in P.CUES.items() for p in phrases]
    for table, kind in ((P.NORMALS, L.NORMAL), (P.MENTIONS, L.MENTION), (P.WEAK_MENTIONS, L.WEAK)):
        entries += [(p, kind, tuple(index[f] for f in findings)) for findings, phrases in table.items() for p in phrases]
    compiled = []
    for phrase, kind, findings in entries:
        body = phrase if kind in L._NO_BOUNDARY_KINDS else rf"\b(?:{phrase})\b"
        compiled.append((re.compile(body), kind, findings))
    return compiled


_PHRASES = _phrase_patterns()


def naive_label(text: str) -> np.ndarray:
    """One report the naive way: a Python loop over every phrase for every sentence."""
    sentences = report_sentences(text)
    normalized = L._normalize(sentences)
    offset, found = 0, []
    for number, sentence in enumerate(normalized.split("\n")):
        for priority, (pattern, kind, findings) in enumerate(_PHRASES):
            for match in pattern.finditer(sentence):
                found.append((offset + match.start(), priority, offset + match.end(), kind, findings, number))
        offset += len(sentence) + 1
        found.append((offset - 1, -1, offset, "terminator_punct", (), number))
    tokens, end = [], -1
    for start, _, stop, kind, findings, number in sorted(found):
        if start < end:  # overlapped by an earlier, higher-priority match
            continue
        end = stop
        if kind != L.BLOCKER:
            tokens.append(L.Token(start, stop, kind, findings, number))
    return L._aggregate(L._mention_ranks(normalized, tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--baseline-reports", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many radmi runs")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    reports = make_reports(args.reports)
    mean_chars = np.mean([len(r) for r in reports])
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, one core; "
          f"load average before: {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{len(reports)} reports, {mean_chars:.0f} characters each on average")

    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        labels = L.label_reports(reports)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
    best = min(times)
    radmi_rate, radmi_cpu_rate = len(reports) / best, len(reports) / min(cpu_times)

    subset = reports[: args.baseline_reports]
    start, cpu = time.perf_counter(), time.process_time()
    naive = np.stack([naive_label(text) for text in subset])
    naive_seconds, naive_cpu = time.perf_counter() - start, time.process_time() - cpu
    naive_rate, naive_cpu_rate = len(subset) / naive_seconds, len(subset) / naive_cpu
    ours = labels.to_numpy()[: len(subset)]
    same = ((ours == naive) | (np.isnan(ours) & np.isnan(naive))).all(axis=1).mean()

    # wall time depends on what else runs on the core; CPU time (time.process_time) much less
    print(f"radmi  label_reports: {radmi_rate:,.0f} reports/s wall, {radmi_cpu_rate:,.0f} per CPU-second "
          f"(best of {args.repeats}: " + ", ".join(f"{t:.2f} s" for t in times) + f" for {len(reports)})")
    print(f"naive per-phrase loop: {naive_rate:,.0f} reports/s wall, {naive_cpu_rate:,.0f} per CPU-second "
          f"({naive_seconds:.2f} s for {len(subset)})")
    print(f"speed-up: {radmi_rate / naive_rate:.1f}x wall, {radmi_cpu_rate / naive_cpu_rate:.1f}x CPU; "
          f"identical label rows: {same:.4f}")
    print(f"MIMIC-CXR's 227,835 reports at this rate: {227_835 / radmi_rate:.0f} s wall, "
          f"{227_835 / radmi_cpu_rate:.0f} CPU-s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
