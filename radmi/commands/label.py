"""``radmi label``: CheXpert-14 labels from report text, with radmi's rule-based labeler.

radmi label REPORTS.csv --out LABELS.csv [--id-column study_id] [--report-column report] [--sections findings,impression]
radmi label MANIFEST.csv --out LABELS.csv        # a manifest: reports read from report_path, one row per study
radmi label DEMO_OR_MIMIC_FOLDER --out LABELS.csv

The output has the id column then the 14 CheXpert columns with MIMIC-CXR's chexpert CSV values (1.0, 0.0,
-1.0, blank). How the labeler works: ``docs/labeling.md``.
"""

from __future__ import annotations

import argparse
import time
from os import PathLike
from pathlib import Path

import pandas as pd

from radmi.data.labeler import label_reports, read_report_table
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.reports import DEFAULT_SECTIONS
from radmi.errors import ManifestError, ReportError

_MANIFEST_KEYS = ("study_id", "report_path")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, help="a CSV of reports, a manifest CSV, or a demo-data / MIMIC-CXR folder"
    )
    parser.add_argument("--out", type=Path, required=True, help="labels CSV to write")
    parser.add_argument("--id-column", default="study_id", help="reports CSV column with the id (default study_id)")
    parser.add_argument(
        "--report-column", default="report", help="reports CSV column with the report text (default report)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help="comma-separated sections to read (default findings,impression; the last paragraph when both "
        "are absent); 'all' reads the whole text",
    )


def _is_manifest_csv(path: Path, report_column: str) -> bool:
    header = pd.read_csv(path, nrows=0, dtype=str).columns
    return report_column not in header and all(key in header for key in _MANIFEST_KEYS)


def _read_report_file(path: str, row: int) -> str:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as err:
        raise ReportError("report file not found", path=path, row=row) from err
    except UnicodeDecodeError as err:
        raise ReportError(f"report is not UTF-8 text (byte {err.start})", path=path, row=row) from err
    if not text.strip():
        raise ReportError("empty report", path=path, row=row)
    return text


def _reports_of_manifest(table: pd.DataFrame) -> pd.Series:
    """One report per study of a manifest table (first row of each study; errors name that manifest row)."""
    studies = table.reset_index(drop=True).drop_duplicates("study_id")
    texts = [_read_report_file(path, int(row)) for row, path in zip(studies.index, studies["report_path"], strict=True)]
    return pd.Series(texts, index=pd.Index(studies["study_id"].astype(str), name="study_id"), name="report")


def read_reports(
    source: str | PathLike, id_column: str = "study_id", report_column: str = "report"
) -> pd.Series:
    """The reports to label, indexed by id: from a reports CSV, a manifest CSV or a dataset folder.

    Raises:
        ManifestError / ReportError: naming the file and row of the first problem.
    """
    source = Path(source)
    if source.is_dir():
        from radmi.data.source import open_source

        return _reports_of_manifest(open_source(source).manifest_table())
    if not source.is_file():
        raise ManifestError("file or folder not found", path=source)
    try:
        manifest = _is_manifest_csv(source, report_column)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"not a readable CSV: {err}", path=source) from err
    if manifest:
        from radmi.data.manifest_schema import read_manifest_within_roots

        return _reports_of_manifest(read_manifest_within_roots(source))
    return read_report_table(source, id_column, report_column)


def write_labels(labels: pd.DataFrame, out: str | PathLike) -> Path:
    """Write ``labels`` (index = ids) as CSV: the id column, then the 14 labels as 1.0/0.0/-1.0/blank."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels.loc[:, list(CHEXPERT_LABELS)].to_csv(out, index=True, na_rep="", float_format="%.1f")
    return out


def run(args: argparse.Namespace) -> int:
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    reports = read_reports(args.source, args.id_column, args.report_column)
    start = time.perf_counter()
    labels = label_reports(reports, sections=sections, path=args.source)
    seconds = time.perf_counter() - start
    write_labels(labels, args.out)
    positives = (labels.loc[:, list(CHEXPERT_LABELS)] == 1.0).sum()
    print(f"wrote {args.out}: {len(labels)} reports labeled in {seconds:.1f} s")
    print("positives per finding: " + ", ".join(f"{k} {int(v)}" for k, v in positives.items() if v))
    return 0
