"""Regression corpus (issue 17): every hostile file ends in a radmi error or a correct image, within budget.

``tests/corpus/make_corpus.py`` generates the files (>= 100, nothing committed). Each goes through
``LoadXRayDicom``/``LoadXRay`` (in a subprocess with a 2 GiB address-space headroom and a time limit),
``manifest check``, ``prepare --on-error skip`` and ``radmi predict`` with a tiny findings bundle (in a forked
child under the same address-space headroom and time limit; on the corpus folder, where predict lists the
DICOM-named files and the special files itself, and on a manifest of the other files and the special files).
The default suite runs a sample of 6 classes; the full corpus is ``-m slow``. Expectations come from the
generator's own ``expect`` column (checked against the loader), so a class added to ``make_corpus.py`` is
covered without changes here.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "corpus"))

from make_corpus import make_corpus  # noqa: E402

from radmi import errors  # noqa: E402
from radmi.data.labels import CHEXPERT_LABELS  # noqa: E402
from radmi.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest  # noqa: E402
from tests._bundle_fixtures import TINY_SIZE, make_tiny_run  # noqa: E402

TIME_BUDGET_S = 120  # for the whole loader subprocess (all files), on a loaded 2-core machine
HEADROOM = 2 * 2**30  # address space allowed above what a process holds before its first file (as _LOADER)
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


def _run_corpus(tmp_path: Path, classes: set[str] | None, bundle: Path) -> None:
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

    result = prepare_cache(
        manifest, tmp_path / "cache", size=16, max_length=16, on_error="skip", progress=False
    )
    bad = {item["row"] for item in json.loads((tmp_path / "cache" / "cache.json").read_text())["bad_rows"]}
    expected_bad = {i for i, row in enumerate(rows) if results[row["path"]]["outcome"] != "image"}
    assert bad == expected_bad
    assert result is not None

    # predict: one row per file, ok with finite probabilities exactly for the files that load
    loaded = {row["path"]: results[row["path"]]["outcome"] == "image" for row in rows}
    _predict_corpus(tmp_path, bundle, rows, loaded, manifest)


# ------------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A findings bundle folder: the shipped template around a tiny run (as in ``tests/test_predict.py``)."""
    from radmi.bundle.export import _stage
    from radmi.bundle.paths import bundle_dir
    from radmi.trust import record_trusted

    root = tmp_path_factory.mktemp("corpus_bundle")
    make_tiny_run(root / "run")
    staged = root / "radmi_cxr_findings"
    staged.mkdir()
    _stage(bundle_dir("radmi_cxr_findings"), staged, root / "run", "0.0.1", "test", TINY_SIZE)
    record_trusted(staged)  # as `radmi bundle export` does
    return staged


def _vm_size() -> int:
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) * 1024 for line in file if line.startswith("VmSize"))


def _predict_child(argvs: list[list[str]], out: Path) -> None:
    """In the forked child: ``radmi <argv>`` for each argv under the address-space headroom.

    Writes the exit statuses to ``out`` and each command's stdout to ``out`` + ``.<i>.stdout``.
    """
    import resource

    # what predict imports, loaded before the limit is measured (already loaded in pytest's process, mostly)
    import ignite.engine  # noqa: F401
    import monai.bundle  # noqa: F401

    import radmi.bundle.inference  # noqa: F401
    import radmi.bundle.predict  # noqa: F401
    from radmi.cli import main

    try:
        limit = _vm_size() + HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        statuses = []
        for i, argv in enumerate(argvs):
            with open(f"{out}.{i}.stdout", "w") as stdout, contextlib.redirect_stdout(stdout):
                statuses.append(main(argv))
        out.write_text(json.dumps(statuses))
    except BaseException:  # a crash (not a radmi error: main turns those into exit status 1): name it
        Path(f"{out}.crash").write_text(traceback.format_exc())
        os._exit(3)


def _run_predict(argvs: list[list[str]], out: Path) -> list[tuple[int, str]]:
    """``radmi.cli.main`` (what the ``radmi`` command runs) in a forked child: no seconds of imports, but the same
    address-space headroom and time budget as the loader subprocess. Returns (exit status, stdout) per command."""
    child = multiprocessing.get_context("fork").Process(target=_predict_child, args=(argvs, out))
    started = time.perf_counter()
    child.start()
    child.join(TIME_BUDGET_S)
    if child.exitcode is None:
        child.kill()
        child.join()
        pytest.fail(f"radmi predict over the corpus ran past {TIME_BUDGET_S} s (a FIFO opened?)")
    crash = Path(f"{out}.crash")
    assert child.exitcode == 0, crash.read_text() if crash.exists() else f"exit code {child.exitcode}"
    assert time.perf_counter() - started < TIME_BUDGET_S
    statuses = json.loads(out.read_text())
    return [(status, Path(f"{out}.{i}.stdout").read_text()) for i, status in enumerate(statuses)]


def _strict_json(text: str) -> dict:
    def refuse(name: str):
        raise AssertionError(f"bare {name} in the predictions JSON")

    return json.loads(text, parse_constant=refuse)


#: the start of every failed row's reason: a radmi error class, or a bad input listed without being opened
_REASONS = tuple(
    f"{name}: "
    for name, item in vars(errors).items()
    if isinstance(item, type) and issubclass(item, errors.RadmiError)
) + ("bad input: ",)


def _check_predictions(csv_path: Path, expected: dict[str, bool], status: int, stdout: str) -> None:
    """``expected``: {row path as written: whether the file loads}; exactly those rows, with the right status."""
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    report = _strict_json(csv_path.with_suffix(".json").read_text())
    records = report["predictions"]
    paths = list(table["path"])
    assert len(paths) == len(set(paths)) == len(records), "one row per file"
    assert set(paths) == set(expected), (
        sorted(set(paths) - set(expected)),
        sorted(set(expected) - set(paths)),
    )
    assert [r["path"] for r in records] == paths and [r["status"] for r in records] == list(table["status"])
    assert not any(Path(path).is_absolute() for path in paths)  # relative to the input (no --full-paths)
    assert report["findings"] == list(CHEXPERT_LABELS)
    wrong = []
    for row, record in zip(table.to_dict("records"), records, strict=True):
        path, loads = row["path"], expected[row["path"]]
        if row["status"] != ("ok" if loads else "error"):
            wrong.append((path, row["status"], row["error"]))
        elif loads:  # finite probabilities in [0, 1], in the CSV and the JSON
            values = [float(row[name]) for name in CHEXPERT_LABELS]
            values += [float(record["probabilities"][name]) for name in CHEXPERT_LABELS]
            if row["error"] or "error" in record or not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
                wrong.append((path, "bad probabilities", row))
        elif not row["error"].startswith(_REASONS) or record.get("error") != row["error"]:
            wrong.append((path, "error without a radmi reason", row["error"]))
        elif "probabilities" in record or any(row[name] for name in CHEXPERT_LABELS):
            wrong.append((path, "probabilities beside an error", row))
    assert not wrong, wrong
    ok = sum(expected.values())
    assert (report["num_images"], report["num_predicted"], report["num_failed"]) == (
        len(expected),
        ok,
        len(expected) - ok,
    )
    assert f"predicted {ok} of {len(expected)} images" in stdout
    assert status == (0 if ok else 1)  # all files failing is the one run predict ends with exit status 1


def _special(path: Path) -> bool:
    """A FIFO, a dangling link or a link loop (``is_dir`` and ``is_file`` follow links)."""
    return not path.is_dir() and not path.is_file()


def _predict_corpus(tmp_path: Path, bundle: Path, rows: list[dict], loaded: dict[str, bool], manifest: Path):
    """``radmi predict`` on the corpus folder (it lists the DICOM-named files and, whatever their name, the special
    files), then on a manifest of the files the folder scan does not take (PNGs, a folder named .dcm) and of the
    special files again: every file is predicted, special files both ways, nothing is decoded twice."""
    corpus = tmp_path / "corpus"
    out = tmp_path / "predict"
    in_folder = [
        row
        for row in rows
        if _special(Path(row["path"]))
        or (Path(row["path"]).is_file() and row["path"].lower().endswith((".dcm", ".dicom", ".dcm.gz")))
    ]
    in_manifest = [row for row in rows if row not in in_folder or _special(Path(row["path"]))]
    runs = []  # (argv, {row path as written: whether the file loads})
    common = ["--bundle", str(bundle), "--device", "cpu", "--no-progress"]
    if in_folder:  # paths relative to the folder
        expected = {Path(row["path"]).name: loaded[row["path"]] for row in in_folder}
        runs.append(
            (["predict", "--input", str(corpus), "--out", str(out / "by_folder.csv"), *common], expected)
        )
    if in_manifest:  # paths relative to the manifest's folder
        frame = read_manifest(manifest)
        chosen = {row["path"] for row in in_manifest}
        subset = write_manifest(frame[frame["image_path"].isin(chosen)], tmp_path / "predict_manifest.csv")
        expected = {
            str(Path(row["path"]).relative_to(subset.parent)): loaded[row["path"]] for row in in_manifest
        }
        runs.append(
            (["predict", "--input", str(subset), "--out", str(out / "by_manifest.csv"), *common], expected)
        )
    done = _run_predict([argv for argv, _ in runs], tmp_path / "predict_statuses.json")
    for (argv, expected), (status, stdout) in zip(runs, done, strict=True):
        _check_predictions(Path(argv[argv.index("--out") + 1]), expected, status, stdout)
    if in_folder:  # the folder scan lists a special file without opening it
        table = pd.read_csv(out / "by_folder.csv", dtype=str, keep_default_na=False).set_index("path")
        for row in in_folder:
            if _special(Path(row["path"])):
                error = table.loc[Path(row["path"]).name, "error"]
                assert error.startswith("bad input: "), (row["name"], error)


def test_corpus_sample(tmp_path, bundle):
    _run_corpus(tmp_path, SAMPLE_CLASSES, bundle)


@pytest.mark.slow
def test_full_corpus(tmp_path, bundle):
    assert len(make_corpus(tmp_path / "count")) >= 100
    _run_corpus(tmp_path, None, bundle)
