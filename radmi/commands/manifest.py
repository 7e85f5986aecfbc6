"""``radmi manifest``: build a manifest from a MIMIC-CXR tree or a hospital export, or check one.

radmi manifest mimic-cxr ROOT --out M.csv [--frontal-only] [--image-ext auto|.dcm|.dcm.gz|.jpg] [--skip-bad]
radmi manifest folder --images DIR --reports CSV --out M.csv [--label-reports | --labels CSV]
    [--split-fractions 0.8,0.1,0.1 --seed N | --split test] [--salt-file FILE | --salt TEXT]
radmi manifest chexpert ROOT --out M.csv [--frontal-only] [--val-fraction 0.05] [--skip-bad]
radmi manifest openi --reports DIR_OF_XML --images DIR_OF_PNG --out M.csv [--skip-bad]
radmi manifest check M.csv [--problems problems.csv] [--root DIR | --allow-outside-root]

Every builder writes the manifest's dataset roots beside it (``M.roots.json``); ``check`` and ``radmi prepare``
refuse a row whose path resolves outside them.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from radmi.data.manifest import (
    CHEXPERT_VAL_FRACTION,
    MIMIC_IMAGE_SUFFIXES,
    OPENI_TEST_FRACTION,
    OPENI_VAL_FRACTION,
    SPLITS,
    build_chexpert_manifest,
    build_folder_manifest,
    build_mimic_manifest,
    build_openi_manifest,
    check_manifest,
    split_counts,
    write_manifest,
)
from radmi.errors import RadmiError


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
    mimic.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out (and count) images whose image or report is a dangling link, a link loop or a special "
        "file (default: stop at the first)",
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
    folder_labels = folder.add_mutually_exclusive_group()
    folder_labels.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="the hospital's labels CSV: the --id-column plus the 14 CheXpert columns (1, 0, -1 or blank)",
    )
    folder_labels.add_argument(
        "--label-reports",
        action="store_true",
        help="label every study from its report (radmi label's labeler)",
    )
    folder.add_argument(
        "--split-fractions",
        default=None,
        metavar="TRAIN,VAL,TEST",
        help="patient-level split by a hash of the subject id, e.g. 0.8,0.1,0.1 (stable when patients are added)",
    )
    folder.add_argument("--seed", type=int, default=0, help="seed of --split-fractions (default 0)")
    folder_salt = folder.add_mutually_exclusive_group()
    folder_salt.add_argument(
        "--salt-file",
        type=Path,
        default=None,
        help="file holding the secret salt of the subject-id hash, created with a random salt if absent "
        "(default $RADMI_SALT_FILE or ~/.config/radmi/subject-id.salt); keep it private and keep it",
    )
    folder_salt.add_argument("--salt", default=None, help="the salt itself (instead of --salt-file)")

    chexpert = sub.add_parser(
        "chexpert", help="build from a CheXpert-v1.0(-small) folder (labels, no reports)"
    )
    chexpert.add_argument(
        "root", type=Path, help="dataset folder holding train.csv, valid.csv and train/, valid/"
    )
    chexpert.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    chexpert.add_argument(
        "--frontal-only", action="store_true", help="keep the images CheXpert marks Frontal"
    )
    chexpert.add_argument(
        "--val-fraction",
        type=float,
        default=CHEXPERT_VAL_FRACTION,
        help=f"fraction of the training patients hashed into the validate split (default {CHEXPERT_VAL_FRACTION})",
    )
    chexpert.add_argument(
        "--skip-bad", action="store_true", help="skip (and count) bad rows instead of stopping"
    )

    openi = sub.add_parser(
        "openi", help="build from Open-i (Indiana University): report XML files + PNG images"
    )
    openi.add_argument(
        "--reports", type=Path, required=True, help="folder of report XML files (ecgen-radiology)"
    )
    openi.add_argument("--images", type=Path, required=True, help="folder of the images (NLMCXR_png)")
    openi.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    openi.add_argument("--image-ext", default=".png", help="image file suffix (default .png)")
    openi.add_argument(
        "--val-fraction",
        type=float,
        default=OPENI_VAL_FRACTION,
        help="fraction of reports hashed into validate",
    )
    openi.add_argument(
        "--test-fraction",
        type=float,
        default=OPENI_TEST_FRACTION,
        help="fraction of reports hashed into test",
    )
    openi.add_argument(
        "--skip-bad", action="store_true", help="skip (and count) malformed XML and missing images"
    )

    check = sub.add_parser("check", help="open every row and report problems (exit 1 if any)")
    check.add_argument("manifest", type=Path)
    _add_root_arguments(check, "a row outside it is a problem and is not opened")
    check.add_argument("--problems", type=Path, default=None, help="write the per-row problem table as CSV")


def _add_root_arguments(parser: argparse.ArgumentParser, outside: str) -> None:
    """``--root DIR`` and ``--allow-outside-root`` (one mutually exclusive pair), as ``radmi prepare`` has them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"dataset folder every image/report path must resolve inside; {outside} (default: the roots "
        "the builder recorded in M.roots.json beside the manifest M.csv, else the manifest's own folder; "
        "give --root for a manifest from someone else, it replaces M.roots.json)",
    )
    group.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="no dataset-root check at all: rows may point at any file (only for a manifest you trust)",
    )


def _print_built(manifest, out: Path) -> None:
    print(f"wrote {out}: {len(manifest)} images")
    print(split_counts(manifest).to_string())


def _print_skipped(skipped: list[dict]) -> None:
    """Counts of skipped source items by reason kind (file names and reasons are in the log, never report text)."""
    if not skipped:
        return
    kinds = Counter(item["reason"].split(":")[0].split(" (")[0] for item in skipped)
    print(f"skipped {len(skipped)}: " + "; ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))


def _run_folder(args: argparse.Namespace) -> int:
    """``radmi manifest folder``: the salt from --salt or the salt file, fractions parsed, then the builder."""
    from radmi.data.splits import default_salt_file, load_or_create_salt, parse_fractions

    if args.split and args.split_fractions:
        raise RadmiError("give either --split or --split-fractions, not both")
    try:
        fractions = None if args.split_fractions is None else parse_fractions(args.split_fractions)
    except ValueError as err:
        raise RadmiError(str(err)) from err
    if args.salt is not None:
        salt = args.salt
    else:
        salt_file = args.salt_file or default_salt_file()
        salt, created = load_or_create_salt(salt_file)
        if created:
            print(
                f"created {salt_file} with a random salt for the subject-id hash: keep it private, and keep it "
                "(the same salt gives the same subject ids and splits on the next export)"
            )
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
        salt=salt,
        split_fractions=fractions,
        seed=args.seed,
        labels_csv=args.labels,
        label_reports=args.label_reports,
    )
    _print_built(manifest, args.out)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "mimic-cxr":
        skipped: list[dict] = []
        manifest = build_mimic_manifest(
            args.root,
            frontal_only=args.frontal_only,
            image_ext=args.image_ext,
            reports_root=args.reports_root,
            on_error="skip" if args.skip_bad else "raise",
            skipped=skipped,
        )
        write_manifest(manifest, args.out)
        _print_built(manifest, args.out)
        _print_skipped(skipped)
        return 0
    if args.action == "folder":
        return _run_folder(args)
    if args.action == "chexpert":
        skipped = []
        manifest = build_chexpert_manifest(
            args.root,
            frontal_only=args.frontal_only,
            val_fraction=args.val_fraction,
            on_error="skip" if args.skip_bad else "raise",
            skipped=skipped,
        )
        write_manifest(manifest, args.out)
        _print_built(manifest, args.out)
        _print_skipped(skipped)
        return 0
    if args.action == "openi":
        skipped = []
        manifest = build_openi_manifest(
            args.reports,
            args.images,
            args.out,
            image_ext=args.image_ext,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            on_error="skip" if args.skip_bad else "raise",
            skipped=skipped,
        )
        _print_built(manifest, args.out)
        _print_skipped(skipped)
        return 0
    result = check_manifest(args.manifest, root=args.root, allow_outside_root=args.allow_outside_root)
    if args.problems is not None:
        args.problems.parent.mkdir(parents=True, exist_ok=True)
        result.problems.to_csv(args.problems, index=False)
    print(f"{result.path}: {result.n_rows} rows, {result.n_bad_rows} with problems")
    if result.roots:
        roots = ", ".join(str(root) for root in result.roots)
        print(f"dataset root{'s' if len(result.roots) > 1 else ''}: {roots} ({result.roots_origin})")
    else:
        print("dataset root: not checked (--allow-outside-root)")
    if not result.ok:
        print(result.summary().to_string(index=False))
        if args.problems is not None:
            print(f"per-row problems: {args.problems}")
    return 0 if result.ok else 1
