"""Regression corpus (issue 17): every hostile file ends in a radmi error or a correct image, within budget.

``tests/corpus/make_corpus.py`` generates the files (>= 100, nothing committed). Each goes through
``LoadXRayDicom``/``LoadXRay`` (in a subprocess with a 2 GiB address-space headroom and a time limit),
``manifest check`` and ``prepare --on-error skip``. The default suite runs a sample of every class; the full
corpus is ``-m slow``. Neither test runs ``predict`` over the corpus: ``predict``'s handling of bad files
(links, loops, FIFOs, non-finite output) is covered in ``tests/test_predict.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "corpus"))

from make_corpus import make_corpus  # noqa: E402

from radmi.data.labels import CHEXPERT_LABELS  # noqa: E402
from radmi.data.manifest import MANIFEST_COLUMNS, write_manifest  # noqa: E402

TIME_BUDGET_S = 120  # for the whole loader subprocess (all files), on a loaded 2-core machine
SAMPLE_CLASSES = {"bomb", "special", "lut", "size", "modality", "ok"}

_LOADER = r"""
import json, resource, sys, time
from radmi.errors import RadmiError
from radmi.transforms.dicom import LoadXRay
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * 2**30, vm + 2 * 2**30))
load = LoadXRay()
results = {}
for path in sys.argv[1:]:
    started = time.perf_counter()
    try:
        image = load(path)
        arr = image.numpy()
        ok = arr.ndim == 3 and arr.shape[0] == 1 and bool((arr >= 0).all() and (arr <= 1).all())
        results[path] = {"outcome": "image" if ok else "bad image", "s": time.perf_counter() - started}
    except RadmiError as err:
        results[path] = {"outcome": "radmi error", "error": type(err).__name__, "s": time.perf_counter() - started}
    except BaseException as err:
        results[path] = {"outcome": f"crash {type(err).__name__}: {err}"[:300], "s": time.perf_counter() - started}
print(json.dumps(results))
"""


def _run_corpus(tmp_path: Path, classes: set[str] | None) -> None:
    rows = make_corpus(tmp_path / "corpus", classes)
    assert rows
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, *[r["path"] for r in rows]],
        capture_output=True, text=True, timeout=TIME_BUDGET_S, cwd=TESTS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert time.perf_counter() - started < TIME_BUDGET_S
    wrong = []
    for row in rows:
        outcome = results[row["path"]]["outcome"]
        if outcome.startswith("crash") or outcome == "bad image":
            wrong.append((row["name"], outcome))
        elif row["expect"] == "error" and outcome != "radmi error":
            wrong.append((row["name"], f"expected a radmi error, got {outcome}"))
        elif row["expect"] == "image" and outcome != "image":
            wrong.append((row["name"], f"expected an image, got {outcome}"))
    assert not wrong, wrong

    # manifest check: never crashes, every file that did not load is in the problem table
    from radmi.data.manifest_check import check_manifest

    report = tmp_path / "r.txt"
    report.write_text("FINDINGS: No effusion.\n")
    table = pd.DataFrame(
        [
            {
                "subject_id": "10000001",
                "study_id": f"{50000000 + i}",
                "dicom_id": f"id{i}",
                "image_path": row["path"],
                "report_path": str(report),
                "view": "PA",
                "split": "train",
                **dict.fromkeys(CHEXPERT_LABELS, np.nan),
                "edema_severity": np.nan,
            }
            for i, row in enumerate(rows)
        ],
        columns=list(MANIFEST_COLUMNS),
    )
    manifest = write_manifest(table, tmp_path / "manifest.csv")
    check = check_manifest(manifest, progress=False)
    flagged = set(check.problems["row"])
    for i, row in enumerate(rows):
        # header-only checking finds all but truncated pixel payloads and colour PNGs (no decoding; prepare,
        # below, finds them)
        header_visible = row["klass"] != "truncated" and row["name"] != "kind__png_rgb_colour"
        if results[row["path"]]["outcome"] == "radmi error" and header_visible:
            assert i in flagged, row["name"]

    # prepare --on-error skip: skips and counts exactly the files that do not load
    from radmi.data.cache import prepare_cache

    result = prepare_cache(manifest, tmp_path / "cache", size=16, max_length=16, on_error="skip", progress=False)
    bad = {item["row"] for item in json.loads((tmp_path / "cache" / "cache.json").read_text())["bad_rows"]}
    expected_bad = {i for i, row in enumerate(rows) if results[row["path"]]["outcome"] != "image"}
    assert bad == expected_bad
    assert result is not None


def test_corpus_sample(tmp_path):
    _run_corpus(tmp_path, SAMPLE_CLASSES)


@pytest.mark.slow
def test_full_corpus(tmp_path):
    assert len(make_corpus(tmp_path / "count")) >= 100
    _run_corpus(tmp_path, None)
