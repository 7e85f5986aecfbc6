"""``radmi manifest``: build a manifest from a MIMIC-CXR tree or a hospital export, or check one.

radmi manifest mimic-cxr ROOT --out M.csv [--frontal-only] [--image-ext auto|.dcm|.dcm.gz|.jpg]
radmi manifest folder --images DIR --reports CSV --out M.csv
radmi manifest check M.csv [--problems problems.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from radmi.data.manifest import (
    MIMIC_IMAGE_SUFFIXES,
    SPLITS,
    build_folder_manifest,
    build_mimic_manifest,
    check_manifest,
    split_counts,
    write_manifest,
)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    mimic = sub.add_parser("mimic-cxr", help="build from a MIMIC-CXR or MIMIC-CXR-JPG folder")
    mimic.add_argument("root", type=Path, help="dataset folder holding files/ and the official CSVs")
    mimic.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    mimic.add_argument("--frontal-only", action="store_true", help="keep PA and AP views only")
    mimic.add_argument(
        "--image-ext",
        default="auto",
        choices=("auto", *MIMIC_IMAGE_SUFFIXES),
        help="image file suffix (auto: probe the first record)",
    )
    mimic.add_argument(
        "--reports-root",
        type=Path,
        default=None,
        help="folder with files/pNN/.../sNNNNNNNN.txt (default ROOT)",
    )

    folder = sub.add_parser("folder", help="build from a hospital export: DICOM files + a CSV of reports")
    folder.add_argument(
        "--images", type=Path, required=True, help="folder searched recursively for DICOM files"
    )
    folder.add_argument("--reports", type=Path, required=True, help="CSV with study_id and report columns")
    folder.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    folder.add_argument(
        "--study-key",
        default="StudyInstanceUID",
        choices=("StudyInstanceUID", "AccessionNumber"),
        help="DICOM tag whose value the CSV's study id column holds",
    )
    folder.add_argument("--id-column", default="study_id", help="reports CSV column with the study key")
    folder.add_argument("--report-column", default="report", help="reports CSV column with the report text")
    folder.add_argument("--split", default="", choices=("", *SPLITS), help="split written to every row")
    folder.add_argument("--all-files", action="store_true", help="read every file, not only *.dcm / *.dcm.gz")
    folder.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable files / studies without report"
    )

    check = sub.add_parser("check", help="open every row and report problems (exit 1 if any)")
    check.add_argument("manifest", type=Path)
    check.add_argument("--problems", type=Path, default=None, help="write the per-row problem table as CSV")


def _print_built(manifest, out: Path) -> None:
    print(f"wrote {out}: {len(manifest)} images")
    print(split_counts(manifest).to_string())


def run(args: argparse.Namespace) -> int:
    if args.action == "mimic-cxr":
        manifest = build_mimic_manifest(
            args.root,
            frontal_only=args.frontal_only,
            image_ext=args.image_ext,
            reports_root=args.reports_root,
        )
        write_manifest(manifest, args.out)
        _print_built(manifest, args.out)
        return 0
    if args.action == "folder":
        manifest = build_folder_manifest(
            args.images,
            args.reports,
            args.out,
            study_key=args.study_key,
            id_column=args.id_column,
            report_column=args.report_column,
            split=args.split,
            suffixes=None if args.all_files else (".dcm", ".dcm.gz"),
            on_error="skip" if args.skip_bad else "raise",
        )
        _print_built(manifest, args.out)
        return 0
    result = check_manifest(args.manifest)
    if args.problems is not None:
        args.problems.parent.mkdir(parents=True, exist_ok=True)
        result.problems.to_csv(args.problems, index=False)
    print(f"{result.path}: {result.n_rows} rows, {result.n_bad_rows} with problems")
    if not result.ok:
        print(result.summary().to_string(index=False))
        if args.problems is not None:
            print(f"per-row problems: {args.problems}")
    return 0 if result.ok else 1
