"""Time ``build_mimic_manifest`` on a full-size MIMIC-CXR CSV set against a naive per-row build.

Generates the official CSVs of a MIMIC-CXR-sized dataset (377,110 images, 227,835 studies, 65,379 subjects by
default; no image files) in a temporary folder, then times:

- radmi: ``build_mimic_manifest(root)`` (vectorized pandas merges), and
- baseline: the same manifest built row by row (``iterrows`` over the record list with dict look-ups into
  the metadata, split and CheXpert tables), on the first ``--baseline-rows`` records (default: all).

Both outputs are compared on the baseline's rows, and the speed-up is printed as a ratio of rows per second.

    python benchmarks/bench_manifest.py                      # full size
    python benchmarks/bench_manifest.py --images 20000 --studies 12000 --subjects 3500
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import (
    CHEXPERT,
    EDEMA_SEVERITY,
    MANIFEST_COLUMNS,
    METADATA,
    RECORD_LIST,
    SPLIT,
    build_mimic_manifest,
)

VIEWS = np.array(["PA", "AP", "LATERAL", "LL", "AP AXIAL", ""])
VIEW_P = np.array([0.25, 0.38, 0.30, 0.05, 0.01, 0.01])


def generate(root: Path, images: int, studies: int, subjects: int, seed: int = 0) -> None:
    """Write the record list, metadata, split, CheXpert and edema CSVs (gzipped) of a synthetic MIMIC-CXR."""
    rng = np.random.default_rng(seed)
    subject_ids = 10_000_000 + np.sort(rng.choice(9_999_999, subjects, replace=False))
    study_subject = np.sort(
        np.concatenate([np.arange(subjects), rng.integers(0, subjects, studies - subjects)])
    )
    study_ids = 50_000_000 + rng.choice(9_999_999, studies, replace=False)
    image_study = np.sort(np.concatenate([np.arange(studies), rng.integers(0, studies, images - studies)]))
    subject = subject_ids[study_subject[image_study]].astype(str)
    study = study_ids[image_study].astype(str)
    digest = rng.integers(0, 2**32, size=(images, 5), dtype=np.uint64)
    dicom = pd.Series(["-".join(f"{v:08x}" for v in row) for row in digest])
    folder = "files/p" + pd.Series(subject).str.slice(0, 2) + "/p" + subject + "/s" + study
    pd.DataFrame(
        {"subject_id": subject, "study_id": study, "dicom_id": dicom, "path": folder + "/" + dicom + ".dcm"}
    ).to_csv(root / f"{RECORD_LIST}.gz", index=False)
    meta = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": subject,
            "study_id": study,
            "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
            "ViewPosition": rng.choice(VIEWS, images, p=VIEW_P),
            "Rows": 3056,
            "Columns": 2544,
            "StudyDate": 21800101,
            "StudyTime": 120000.0,
        }
    )
    meta.to_csv(root / f"{METADATA}.gz", index=False)
    split = rng.choice(np.array(["train", "validate", "test"]), subjects, p=[0.98, 0.01, 0.01])[
        study_subject[image_study]
    ]
    pd.DataFrame({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split}).to_csv(
        root / f"{SPLIT}.gz", index=False
    )
    labelled = rng.random(studies) < 0.95  # a few studies have no CheXpert row
    values = rng.choice(
        np.array([1.0, 0.0, -1.0, np.nan]), size=(int(labelled.sum()), 14), p=[0.1, 0.1, 0.05, 0.75]
    )
    chexpert = pd.DataFrame(values, columns=list(CHEXPERT_LABELS))
    chexpert.insert(0, "study_id", study_ids[labelled].astype(str))
    chexpert.insert(0, "subject_id", subject_ids[study_subject[labelled]].astype(str))
    chexpert.to_csv(root / f"{CHEXPERT}.gz", index=False)
    with_edema = rng.random(studies) < 0.03
    pd.DataFrame(
        {
            "subject_id": subject_ids[study_subject[with_edema]].astype(str),
            "study_id": study_ids[with_edema].astype(str),
            "edema_severity": rng.integers(0, 4, int(with_edema.sum())),
        }
    ).to_csv(root / f"{EDEMA_SEVERITY}.gz", index=False)


def naive_build(root: Path, rows: int) -> tuple[pd.DataFrame, float, float]:
    """The per-row way: dicts from ``iterrows`` of each table, then one dict per record.

    Returns the manifest of the first ``rows`` records, the seconds spent building the look-up dicts (over
    the full tables) and the seconds of the per-record loop.
    """
    start = time.perf_counter()
    read = lambda name: pd.read_csv(root / f"{name}.gz", dtype=str)  # noqa: E731
    records = read(RECORD_LIST).head(rows)
    views = {r["dicom_id"]: r["ViewPosition"] for _, r in read(METADATA).iterrows()}
    splits = {r["dicom_id"]: r["split"] for _, r in read(SPLIT).iterrows()}
    labels = {(r["subject_id"], r["study_id"]): r for _, r in read(CHEXPERT).iterrows()}
    edema = {
        (r["subject_id"], r["study_id"]): r["edema_severity"] for _, r in read(EDEMA_SEVERITY).iterrows()
    }
    tables = time.perf_counter() - start
    start = time.perf_counter()
    out = []
    for _, record in tqdm(records.iterrows(), total=len(records), desc="baseline rows", mininterval=2):
        key = (record["subject_id"], record["study_id"])
        folder = os.path.dirname(record["path"])
        label_row = labels.get(key)
        view = views.get(record["dicom_id"])
        out.append(
            {
                "subject_id": record["subject_id"],
                "study_id": record["study_id"],
                "dicom_id": record["dicom_id"],
                "image_path": os.path.join(str(root), record["path"]),
                "report_path": os.path.join(str(root), folder + ".txt"),
                "view": "" if not isinstance(view, str) else view,
                "split": splits.get(record["dicom_id"], ""),
                **{
                    name: float(label_row[name]) if label_row is not None else np.nan
                    for name in CHEXPERT_LABELS
                },
                "edema_severity": float(edema[key]) if key in edema else np.nan,
            }
        )
    return pd.DataFrame(out, columns=list(MANIFEST_COLUMNS)), tables, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=377_110)
    parser.add_argument("--studies", type=int, default=227_835)
    parser.add_argument("--subjects", type=int, default=65_379)
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=30_000,
        help="records the baseline loop builds (0: all; default 30000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of radmi's build (best is reported)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        generate(root, args.images, args.studies, args.subjects)
        print(
            f"generated {args.images} images / {args.studies} studies / {args.subjects} subjects "
            f"in {time.perf_counter() - start:.1f} s"
        )
        timings = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            # no image files here: the link/special-file lstat pass (check_files) is left out, as in the baseline
            manifest = build_mimic_manifest(root, image_ext=".dcm", progress=False, check_files=False)
            timings.append(time.perf_counter() - start)
        fast = min(timings)
        rows = min(args.baseline_rows or len(manifest), len(manifest))
        baseline, tables, loop = naive_build(root, rows)
        pd.testing.assert_frame_equal(
            manifest.head(rows).astype({"view": object, "split": object}),
            baseline.astype({"view": object, "split": object}),
            check_dtype=False,
        )
        # the baseline's look-up tables are built in full; its per-record loop is linear in the rows
        slow = tables + loop * len(manifest) / rows
        measured = "measured" if rows == len(manifest) else f"loop extrapolated from {rows} rows"
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
        )
        print(
            f"radmi build_mimic_manifest: {len(manifest)} rows in {fast:.2f} s (best of {args.repeats}: "
            f"{', '.join(f'{t:.2f}' for t in timings)}) = {len(manifest) / fast:,.0f} rows/s"
        )
        print(
            f"baseline per-row iterrows:  look-up tables {tables:.1f} s + loop {loop:.1f} s for {rows} rows "
            f"({rows / loop:,.0f} rows/s) -> {slow:.1f} s for {len(manifest)} rows ({measured})"
        )
        print(f"speed-up (baseline time / radmi time): {slow / fast:.1f}x; outputs identical on {rows} rows")


if __name__ == "__main__":
    main()
