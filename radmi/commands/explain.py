"""``radmi explain IMAGE --report REPORT.txt --run RUN_DIR --out DIR [--boxes finding-locations.csv.gz]``:
draw each report sentence's region x sentence critic scores over the radiograph (see ``radmi.eval.explain``).
A global-MI run gets one panel: its region-to-report map."""

from __future__ import annotations

import argparse
from pathlib import Path

from radmi.errors import ReportError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="a DICOM (or PNG/JPG) radiograph")
    parser.add_argument(
        "--report", required=True, type=Path, help="the report text file of the image's study"
    )
    parser.add_argument(
        "--run",
        required=True,
        type=Path,
        help="a `radmi pretrain` run directory (local MI, TVDIM; global MI: one region-to-report panel)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder; the PNG is <image name>_explain.png"
    )
    parser.add_argument(
        "--boxes",
        type=Path,
        help="finding-locations.csv.gz of demo data: draw this image's ground-truth boxes",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="evaluate the run's config.json even if radmi did not write it on this machine (MONAI configs are "
        "code; see docs/bundles.md)",
    )


def _image_boxes(table_path: Path, image: Path):
    """The boxes of ``image`` (matched by dicom_id = file stem) from a finding-locations table."""
    import pandas as pd

    from radmi.eval.explain import Box

    table = pd.read_csv(table_path, dtype={"dicom_id": str, "study_id": str})
    dicom_id = image.name.split(".")[0]
    rows = table[table["dicom_id"] == dicom_id]
    return [
        Box(
            r.x0,
            r.y0,
            r.x1,
            r.y1,
            label=str(r.label),
            sentence_index=None if pd.isna(r.sentence_index) else int(r.sentence_index),
        )
        for r in rows.itertuples()
    ]


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.runs import require_run

    run_dir = require_run(args.run, "pretrain")  # before the slow imports: a wrong folder fails at once
    from radmi.eval.explain import PretrainedRun, explain_image

    try:
        report = args.report.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ReportError(f"cannot read the report: {err.strerror}", path=args.report) from err
    boxes = _image_boxes(args.boxes, args.image) if args.boxes else []
    run_ = PretrainedRun(run_dir, device=args.device, trust=args.trust)
    out = explain_image(
        run_, args.image, report, args.out / f"{args.image.name.split('.')[0]}_explain.png", boxes
    )
    print(f"radmi explain: wrote {out}")
    return 0
