"""radmi manifests: one CSV row per image, the single input format of every radmi dataset.

Columns, in order (see ``data_manifests/README.md`` and ``docs/architecture.md``)::

    subject_id, study_id, dicom_id, image_path, report_path, view, split, <14 CHEXPERT_LABELS>, edema_severity

- ``build_mimic_manifest`` builds one from a MIMIC-CXR(-JPG) tree: from the official CSVs when present
  (vectorized pandas merges, seconds for the full 377k images, no file is touched except one probe for the
  image suffix), else by walking ``files/pNN/pNNNNNNNN/sNNNNNNNN/``.
- ``build_folder_manifest`` builds one from a hospital export: DICOM files plus a CSV of study -> report text.
- ``read_manifest`` validates a manifest and returns it with absolute paths; ``write_manifest`` writes one
  with paths relative to its own folder.
- ``check_manifest`` opens every row (image header, report, labels) and returns a per-row problem table.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from tqdm.auto import tqdm

from radmi.data.labels import CHEXPERT_LABELS, invalid_edema_values, invalid_label_values
from radmi.errors import ManifestError, RadmiError

logger = logging.getLogger(__name__)

ID_COLUMNS = ("subject_id", "study_id", "dicom_id")
PATH_COLUMNS = ("image_path", "report_path")
TEXT_COLUMNS = (*ID_COLUMNS, *PATH_COLUMNS, "view", "split")
EDEMA_COLUMN = "edema_severity"
#: The manifest columns, in order.
MANIFEST_COLUMNS: tuple[str, ...] = (*TEXT_COLUMNS, *CHEXPERT_LABELS, EDEMA_COLUMN)
#: Allowed ``split`` values; an empty split means "not assigned" (e.g. a hospital export).
SPLITS = ("train", "validate", "test")
FRONTAL_VIEWS = ("PA", "AP")

# Official MIMIC-CXR file names at the dataset root (gzipped or not).
RECORD_LIST = "cxr-record-list.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
#: radmi's name for the optional pulmonary edema severity table: subject_id, study_id, edema_severity (0..3).
EDEMA_SEVERITY = "mimic-cxr-2.0.0-edema-severity.csv"
#: Image suffixes of MIMIC-CXR (DICOM, gzipped DICOM) and MIMIC-CXR-JPG, in order of preference.
MIMIC_IMAGE_SUFFIXES = (".dcm", ".dcm.gz", ".jpg")

_DIGITS = r"\d+"
_TREE_IMAGE = re.compile(
    r"(?:^|/)p\d{2}/p(?P<subject_id>\d+)/s(?P<study_id>\d+)/(?P<dicom_id>[^/]+?)(?P<suffix>\.dcm\.gz|\.dcm|\.jpg)$"
)


# ------------------------------------------------------------------------------------------- validation
def manifest_problems(frame: pd.DataFrame) -> pd.DataFrame:
    """Value problems of a manifest read as strings (``read_csv(dtype=str, keep_default_na=False)``).

    Returns:
        a table with columns ``row`` (0-based data row), ``column``, ``problem``; empty when all is well.
        Missing columns are reported with ``row`` -1. Vectorized: one pass per column.
    """
    problems: list[pd.DataFrame] = []

    def add(mask: pd.Series, column: str, problem: str) -> None:
        rows = np.flatnonzero(mask.to_numpy())
        if len(rows):
            problems.append(pd.DataFrame({"row": rows, "column": column, "problem": problem}))

    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        problems.append(pd.DataFrame({"row": -1, "column": missing, "problem": "missing column"}))
    present = frame.columns
    for column in ("subject_id", "study_id"):
        if column in present:
            add(~frame[column].str.fullmatch(_DIGITS), column, "not a string of digits")
    for column in ("dicom_id", *PATH_COLUMNS):
        if column in present:
            add(frame[column].str.strip() == "", column, "empty")
    if "split" in present:
        add(~frame["split"].isin((*SPLITS, "")), "split", f"not one of {', '.join(SPLITS)} or empty")
    if "dicom_id" in present:
        add(frame["dicom_id"].duplicated(keep="first") & (frame["dicom_id"] != ""), "dicom_id", "duplicate")
    numeric = [c for c in (*CHEXPERT_LABELS, EDEMA_COLUMN) if c in present]
    for column in numeric:
        text = frame[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        not_a_number = values.isna() & (text != "")
        invalid = invalid_edema_values if column == EDEMA_COLUMN else invalid_label_values
        allowed = "0, 1, 2, 3 or blank" if column == EDEMA_COLUMN else "1, 0, -1 or blank"
        add(not_a_number | invalid(values.to_numpy(dtype=np.float64)), column, f"not {allowed}")
    if not problems:
        return pd.DataFrame({"row": pd.Series(dtype=np.int64), "column": [], "problem": []})
    return pd.concat(problems, ignore_index=True).sort_values(
        ["row", "column"], kind="stable", ignore_index=True
    )


def _read_raw(path: str | PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest file not found", path=path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"not a readable CSV: {err}", path=path) from err


def _is_absolute(paths: pd.Series) -> pd.Series:
    return paths.str.match(r"^(?:[A-Za-z]:)?[\\/]")


def resolve_paths(paths: pd.Series, base: str | PathLike) -> pd.Series:
    """Relative paths joined onto ``base`` (absolute ones kept), vectorized."""
    base = os.path.abspath(base)
    joined = paths.where(_is_absolute(paths), base + os.sep + paths)
    dotted = joined.str.contains(
        r"(?:^|[\\/])\.\.?(?:[\\/]|$)"
    )  # "../files/..." -> normalized, only where needed
    return joined.where(~dotted, joined[dotted].map(os.path.normpath))


def typed_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """A validated string frame with labels and edema as float64 (NaN = blank), in the schema's column order."""
    out = frame.loc[:, list(MANIFEST_COLUMNS)].copy()
    for column in (*CHEXPERT_LABELS, EDEMA_COLUMN):
        out[column] = pd.to_numeric(out[column].str.strip(), errors="coerce").astype(np.float64)
    return out


def read_manifest(path: str | PathLike, resolve: bool = True) -> pd.DataFrame:
    """Read and validate a manifest.

    Args:
        path: the manifest CSV.
        resolve: make ``image_path``/``report_path`` absolute (relative ones are relative to the manifest's folder).

    Returns:
        a DataFrame with the columns of ``MANIFEST_COLUMNS`` in order (extra columns dropped): ids, paths,
        view and split as strings, the 14 labels and ``edema_severity`` as float64 with NaN for blank.

    Raises:
        ManifestError: naming the file and the first bad row (0-based data row) and why.
    """
    frame = _read_raw(path)
    problems = manifest_problems(frame)
    if len(problems):
        first = problems.iloc[0]
        more = (
            f" ({len(problems) - 1} more problem(s); run `radmi manifest check`)" if len(problems) > 1 else ""
        )
        row = None if first["row"] < 0 else int(first["row"])
        raise ManifestError(f"column '{first['column']}': {first['problem']}{more}", path=path, row=row)
    manifest = typed_manifest(frame)
    if resolve:
        base = Path(path).resolve().parent
        for column in PATH_COLUMNS:
            manifest[column] = resolve_paths(manifest[column], base)
    return manifest


def _relative_to(paths: pd.Series, base: str) -> pd.Series:
    """Rewrite absolute paths relative to ``base`` where they share a folder with it, vectorized.

    Rows under one common folder ``C`` get ``relpath(C, base) + rest``; ``C`` is found by walking up from
    the first path until every path starts with it (one vectorized test per level).
    """
    absolute = _is_absolute(paths)
    if not absolute.any():
        return paths
    candidates = paths[absolute]
    common = os.path.dirname(candidates.iloc[0])
    while common and not candidates.str.startswith(common.rstrip(os.sep) + os.sep).all():
        parent = os.path.dirname(common)
        if parent == common:
            break
        common = parent
    prefix = common.rstrip(os.sep) + os.sep
    if (
        not candidates.str.startswith(prefix).all()
        or os.path.splitdrive(common)[0] != os.path.splitdrive(base)[0]
    ):
        return paths
    relative_common = os.path.relpath(common, base)
    if relative_common.split(os.sep).count("..") > MAX_PARENT_LEVELS:
        return paths  # data far away from the manifest: absolute paths read better than ../../../..
    lead = "" if relative_common == "." else relative_common + os.sep
    return paths.where(~absolute, lead + paths.str.slice(len(prefix)))


#: ``write_manifest`` writes relative paths when the data is at most this many folders above the manifest.
MAX_PARENT_LEVELS = 2


def write_manifest(manifest: pd.DataFrame, path: str | PathLike, relative: bool = True) -> Path:
    """Write ``manifest`` (the columns of ``MANIFEST_COLUMNS``) as CSV.

    Args:
        manifest: ids/paths/view/split as strings, labels and edema as numbers or NaN.
        path: output CSV; its folder is created.
        relative: write paths relative to the manifest's folder (portable when the tree moves with it)
            where the files share a folder at most ``MAX_PARENT_LEVELS`` above it; others stay absolute.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = manifest.loc[:, list(MANIFEST_COLUMNS)].copy()
    if relative:
        base = str(path.resolve().parent)
        for column in PATH_COLUMNS:
            out[column] = _relative_to(out[column].astype(str), base)
    out[EDEMA_COLUMN] = pd.to_numeric(out[EDEMA_COLUMN]).astype("Int64")  # 2, not 2.0
    out.to_csv(path, index=False, na_rep="", float_format="%.1f")
    return path


def empty_labels(n: int) -> dict[str, np.ndarray]:
    """Blank label and edema columns for ``n`` rows."""
    return {name: np.full(n, np.nan) for name in (*CHEXPERT_LABELS, EDEMA_COLUMN)}


# ------------------------------------------------------------------------------------------- MIMIC-CXR
def _find_csv(root: Path, name: str) -> Path | None:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    return None


def _read_official(
    path: Path, required: Sequence[str], numeric: Sequence[str] = (), check_ids: bool = True
) -> pd.DataFrame:
    """Read the ``required`` columns of an official CSV; ManifestError if some lack.

    With ``check_ids``, ``subject_id``/``study_id`` come back as int64 (integer keys merge much faster than
    strings; the ``p``/``s`` folder prefixes are tolerated); other non-numeric columns are strings.
    """
    wanted = {*required, *ID_COLUMNS}
    integer_ids = ("subject_id", "study_id") if check_ids else ()
    text_columns = {c for c in wanted if c not in numeric and c not in integer_ids}
    try:
        # object, not pandas' "str" dtype: hashing/merging 377k python-backed strings is several times faster
        frame = pd.read_csv(path, usecols=lambda c: c in wanted, dtype=dict.fromkeys(text_columns, object))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, EOFError, UnicodeDecodeError) as err:
        raise ManifestError(f"not a readable CSV: {err}", path=path) from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(f"missing column(s) {missing}", path=path)
    for column in integer_ids:
        if column in frame.columns and not pd.api.types.is_integer_dtype(frame[column]):
            # the slow path, only for unusual files: prefixes (p10000032, s50414267), blanks, junk
            text = frame[column].astype(str).str.strip().str.removeprefix("p").str.removeprefix("s")
            numbers = pd.to_numeric(text.where(text.str.fullmatch(_DIGITS)), errors="coerce")
            if numbers.isna().any():
                row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
                raise ManifestError(f"column '{column}' is not a string of digits", path=path, row=row)
            frame[column] = numbers.astype(np.int64)
    return frame


def _unique_by(frame: pd.DataFrame, keys: list[str], path: Path) -> pd.DataFrame:
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        raise ManifestError(f"duplicate {'/'.join(keys)}", path=path, row=int(np.flatnonzero(duplicated)[0]))
    return frame


def _study_folder(subject: pd.Series, study: pd.Series) -> pd.Series:
    """``files/pNN/pNNNNNNNN/sNNNNNNNN`` for each row (ids as strings), vectorized."""
    return "files/p" + subject.str.slice(0, 2) + "/p" + subject + "/s" + study


def _id_strings(records: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    return records["subject_id"].astype(str), records["study_id"].astype(str)


def _choose_suffix(root: Path, stems: pd.Series, image_ext: str) -> str:
    """The image suffix: the given one, or for ``auto`` the first of .dcm/.dcm.gz/.jpg that exists for the
    first row (one probe, never a stat of every file)."""
    if image_ext != "auto":
        if image_ext not in MIMIC_IMAGE_SUFFIXES:
            raise ValueError(f"image_ext must be 'auto' or one of {MIMIC_IMAGE_SUFFIXES}, got {image_ext!r}")
        return image_ext
    if len(stems):
        for suffix in MIMIC_IMAGE_SUFFIXES:
            if (root / f"{stems.iloc[0]}{suffix}").is_file():
                return suffix
    logger.warning("no image found for the first record under %s; assuming '.dcm' paths", root)
    return ".dcm"


def _records_from_csvs(root: Path, image_ext: str) -> pd.DataFrame | None:
    """subject_id, study_id, dicom_id, image stem (root-relative, no suffix) from the record list or metadata."""
    record_list = _find_csv(root, RECORD_LIST)
    if record_list is not None:
        records = _read_official(record_list, ["subject_id", "study_id", "dicom_id", "path"])
        paths = records["path"].str.strip()
        stems = paths.where(
            ~paths.str.endswith(".dcm"), paths.str.slice(0, -4)
        )  # the official list names .dcm
        return records.assign(stem=stems).drop(columns="path")
    metadata = _find_csv(root, METADATA)
    if metadata is not None:  # MIMIC-CXR-JPG ships no record list
        records = _read_official(metadata, ["dicom_id", "subject_id", "study_id"])
        stems = _study_folder(*_id_strings(records)) + "/" + records["dicom_id"]
        return records.loc[:, ["subject_id", "study_id", "dicom_id"]].assign(stem=stems)
    return None


def _walk_tree(root: Path, image_ext: str, progress: bool) -> pd.DataFrame:
    """Records found by listing ``files/pNN/pNNNNNNNN/sNNNNNNNN/*`` (scandir, no per-file stat)."""
    top = root / "files" if (root / "files").is_dir() else root
    found: list[str] = []
    with tqdm(desc="listing images", unit=" files", disable=not progress) as bar:
        for folder, _, names in os.walk(top):
            relative = os.path.relpath(folder, root).replace(os.sep, "/")
            found.extend(f"{relative}/{name}" for name in names)
            bar.update(len(names))
    paths = pd.Series(sorted(found), dtype=object)
    parts = paths.str.extract(_TREE_IMAGE)
    keep = parts["dicom_id"].notna()
    if image_ext != "auto":
        keep &= parts["suffix"] == image_ext
    logger.info("tree walk: %d image files, %d other files ignored", int(keep.sum()), int((~keep).sum()))
    parts = parts[keep].assign(stem=paths[keep].str.replace(r"(\.dcm\.gz|\.dcm|\.jpg)$", "", regex=True))
    # the same image stored twice (e.g. .dcm and .jpg): keep the preferred suffix
    parts["rank"] = parts["suffix"].map({s: i for i, s in enumerate(MIMIC_IMAGE_SUFFIXES)})
    parts = parts.sort_values(["stem", "rank"], kind="stable").drop_duplicates("dicom_id", keep="first")
    parts = parts.astype({"subject_id": np.int64, "study_id": np.int64})  # the CSV readers' key type
    return parts.loc[:, ["subject_id", "study_id", "dicom_id", "stem", "suffix"]].reset_index(drop=True)


def _read_view(path: str) -> str:
    return str(read_dicom_header(path, ("ViewPosition",)).get("ViewPosition", "") or "")


def build_mimic_manifest(
    root: str | PathLike,
    frontal_only: bool = False,
    image_ext: str = "auto",
    reports_root: str | PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Manifest of a MIMIC-CXR (DICOM) or MIMIC-CXR-JPG tree, with absolute paths.

    Records come from ``cxr-record-list.csv.gz``, else ``mimic-cxr-2.0.0-metadata.csv.gz``, else a walk of
    ``files/``. Views come from the metadata CSV, splits from the split CSV, labels from the CheXpert CSV and
    edema severity from ``mimic-cxr-2.0.0-edema-severity.csv.gz``, each when present (else empty/blank).
    Every step is a vectorized pandas merge.

    Args:
        root: the dataset folder (holding ``files/`` and the CSVs).
        frontal_only: keep PA and AP views only.
        image_ext: ``.dcm``, ``.dcm.gz`` or ``.jpg``; ``auto`` probes the first record (CSV mode) or keeps
            what the walk finds (preferring .dcm, then .dcm.gz, then .jpg for the same image).
        reports_root: folder holding the report tree ``files/pNN/pNNNNNNNN/sNNNNNNNN.txt`` (default ``root``;
            MIMIC-CXR-JPG users point it at their MIMIC-CXR folder).
        progress: show progress bars (tree walk, DICOM header reading).

    Raises:
        ManifestError: the root is missing, a CSV lacks columns or has duplicate keys, no image is found,
            or ``frontal_only`` needs views that are nowhere to be found.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ManifestError("dataset root is not a folder", path=root)
    reports_root = Path(reports_root).resolve() if reports_root is not None else root
    records = _records_from_csvs(root, image_ext)
    if records is None:
        records = _walk_tree(root, image_ext, progress)
        image_paths = str(root) + "/" + records["stem"] + records.pop("suffix")
    else:
        image_paths = str(root) + "/" + records["stem"] + _choose_suffix(root, records["stem"], image_ext)
    if records.empty:
        raise ManifestError(
            "no MIMIC-CXR images or record CSVs found (expected files/pNN/pNNNNNNNN/sNNNNNNNN/)", path=root
        )
    records = records.drop(columns="stem")
    records["image_path"] = image_paths.to_numpy()
    records["report_path"] = str(reports_root) + "/" + _study_folder(*_id_strings(records)) + ".txt"

    metadata = _find_csv(root, METADATA)
    if metadata is not None:
        views = _read_official(metadata, ["dicom_id", "ViewPosition"]).loc[:, ["dicom_id", "ViewPosition"]]
        views = _unique_by(views, ["dicom_id"], metadata)
        records = records.merge(views, on="dicom_id", how="left")  # keys checked unique above
        records["view"] = records.pop("ViewPosition").fillna("").str.strip()
    elif frontal_only:
        dicom = ~records["image_path"].str.endswith(".jpg")
        if not dicom.all():
            raise ManifestError(
                f"--frontal-only needs {METADATA}.gz for JPG images (they carry no view)", path=root
            )
        # no metadata CSV: read ViewPosition from the DICOM headers (a small tree, e.g. a subset)
        paths = records["image_path"].tolist()
        records["view"] = [_read_view(p) for p in tqdm(paths, desc="reading views", disable=not progress)]
    else:
        records["view"] = ""

    split_csv = _find_csv(root, SPLIT)
    if split_csv is not None:
        splits = _unique_by(
            _read_official(split_csv, ["dicom_id", "split"]).loc[:, ["dicom_id", "split"]],
            ["dicom_id"],
            split_csv,
        )
        records = records.merge(splits, on="dicom_id", how="left")
        records["split"] = records["split"].fillna("").str.strip()
    else:
        records["split"] = ""

    records = _merge_study_table(records, root, CHEXPERT, list(CHEXPERT_LABELS))
    records = _merge_study_table(records, root, EDEMA_SEVERITY, [EDEMA_COLUMN])
    if frontal_only:
        records = records[records["view"].isin(FRONTAL_VIEWS)]
    records["subject_id"], records["study_id"] = _id_strings(records)
    return records.loc[:, list(MANIFEST_COLUMNS)].reset_index(drop=True)


def _merge_study_table(records: pd.DataFrame, root: Path, name: str, columns: list[str]) -> pd.DataFrame:
    """Left-merge a per-study table (subject_id, study_id, columns...) onto the records; blank if absent."""
    path = _find_csv(root, name)
    if path is None:
        return records.assign(**{c: np.nan for c in columns})
    table = _read_official(path, ["subject_id", "study_id", *columns], numeric=columns)
    table = _unique_by(table.loc[:, ["subject_id", "study_id", *columns]], ["subject_id", "study_id"], path)
    for column in columns:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
    return records.merge(table, on=["subject_id", "study_id"], how="left")


# ------------------------------------------------------------------------------------------- hospital folder
def read_dicom_header(path: str | PathLike, tags: Sequence[str]) -> pydicom.Dataset:
    """The named header elements of a DICOM file (plain or ``.gz``), without reading pixels.

    Raises:
        ManifestError: naming the file, when it is not a readable DICOM file.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as stream:
            return pydicom.dcmread(stream, stop_before_pixels=True, specific_tags=list(tags))
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as err:
        raise ManifestError(f"not a readable DICOM file: {type(err).__name__}: {err}", path=path) from err


_FOLDER_TAGS = ("StudyInstanceUID", "SOPInstanceUID", "PatientID", "ViewPosition", "AccessionNumber")


def _dicom_files(images_dir: Path, suffixes: Sequence[str] | None) -> list[Path]:
    files = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    if suffixes is None:
        return files
    lowered = tuple(s.lower() for s in suffixes)
    return [p for p in files if p.name.lower().endswith(lowered)]


def _sequential_ids(keys: pd.Series, start: int) -> pd.Series:
    """8-digit id strings numbering the distinct keys in sorted order from ``start``."""
    codes, _ = pd.factorize(keys, sort=True)
    return pd.Series(codes + start, index=keys.index).astype(str)


def build_folder_manifest(
    images_dir: str | PathLike,
    reports_csv: str | PathLike,
    out: str | PathLike,
    study_key: str = "StudyInstanceUID",
    id_column: str = "study_id",
    report_column: str = "report",
    split: str = "",
    suffixes: Sequence[str] | None = (".dcm", ".dcm.gz"),
    on_error: str = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """Manifest of a hospital export: DICOM files anywhere under ``images_dir`` plus a CSV of reports.

    Each study's report is written to ``<out folder>/<out stem>_reports/s<study_id>.txt`` so that the
    manifest keeps the one schema; ``<out stem>_studies.csv`` maps radmi's study ids back to ``study_key``.
    Subjects and studies are numbered (``1xxxxxxx``, ``5xxxxxxx``) in sorted order of PatientID and
    ``study_key``; no patient identifier is written. The manifest itself is written to ``out``.

    Args:
        images_dir: the export folder (searched recursively).
        reports_csv: CSV with ``id_column`` (the value of the DICOM tag ``study_key``) and ``report_column``.
        out: the manifest CSV to write.
        study_key: DICOM keyword matching the reports CSV: ``StudyInstanceUID`` or ``AccessionNumber``.
        split: the split written to every row (``""`` = unassigned, or ``train``/``validate``/``test``).
        suffixes: file-name endings to read; ``None`` tries every file (non-DICOM files count as errors).
        on_error: ``raise`` on the first unreadable file or study without report; ``skip`` logs and drops it.

    Returns:
        the manifest, with absolute paths.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if split not in (*SPLITS, ""):
        raise ValueError(f"split must be one of {SPLITS} or empty, got {split!r}")
    images_dir, out = Path(images_dir).resolve(), Path(out).resolve()
    if not images_dir.is_dir():
        raise ManifestError("images folder not found", path=images_dir)
    reports = _read_official(Path(reports_csv), [id_column, report_column], check_ids=False)
    reports = reports.assign(key=reports[id_column].astype(str).str.strip())
    reports = _unique_by(reports, ["key"], Path(reports_csv)).set_index("key")[report_column]

    rows, skipped = [], 0
    for path in tqdm(_dicom_files(images_dir, suffixes), desc="reading DICOM headers", disable=not progress):
        try:
            header = read_dicom_header(path, _FOLDER_TAGS)
            key = str(header.get(study_key, "") or "").strip()
            if not key:
                raise ManifestError(f"no {study_key} in the header", path=path)
            text = reports.get(key)
            if not isinstance(text, str) or not text.strip():
                raise ManifestError(f"no report for this study in {Path(reports_csv).name}", path=path)
        except ManifestError as err:
            if on_error == "raise":
                raise
            skipped += 1
            logger.warning("skipped %s: %s", path, err.reason)
            continue
        rows.append(
            {
                "patient": str(header.get("PatientID", "") or ""),
                "key": key,
                "dicom_id": str(header.get("SOPInstanceUID", "") or path.name),
                "image_path": str(path),
                "view": str(header.get("ViewPosition", "") or "").strip(),
            }
        )
    if not rows:
        raise ManifestError("no DICOM image with a matching report found", path=images_dir)
    logger.info("folder manifest: %d images kept, %d skipped", len(rows), skipped)
    frame = pd.DataFrame(rows)
    frame["subject_id"] = _sequential_ids(frame["patient"], 10_000_000)
    frame["study_id"] = _sequential_ids(frame["key"], 50_000_000)

    report_dir = out.parent / f"{out.stem}_reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    studies = frame.drop_duplicates("study_id").loc[:, ["study_id", "key"]]
    for study_id, key in zip(studies["study_id"], studies["key"], strict=True):
        (report_dir / f"s{study_id}.txt").write_text(reports[key], encoding="utf-8")
    studies.rename(columns={"key": study_key}).to_csv(out.parent / f"{out.stem}_studies.csv", index=False)

    frame["report_path"] = str(report_dir) + "/s" + frame["study_id"] + ".txt"
    frame["split"] = split
    manifest = frame.assign(**empty_labels(len(frame))).loc[:, list(MANIFEST_COLUMNS)]
    write_manifest(manifest, out)
    return manifest


# ------------------------------------------------------------------------------------------- checking
@dataclass
class ManifestCheck:
    """Result of ``check_manifest``.

    Attributes:
        path: the manifest checked.
        n_rows: number of data rows.
        problems: one row per problem: ``row`` (0-based; -1 for the whole file), ``column``, ``path``
            (the file concerned, or empty), ``problem``.
    """

    path: Path
    n_rows: int
    problems: pd.DataFrame

    @property
    def ok(self) -> bool:
        return self.problems.empty

    @property
    def n_bad_rows(self) -> int:
        return int(self.problems.loc[self.problems["row"] >= 0, "row"].nunique())

    def summary(self) -> pd.DataFrame:
        """Problem counts per column and problem (``count`` = rows concerned), most frequent first."""
        if self.problems.empty:
            return pd.DataFrame({"column": [], "problem": [], "count": pd.Series(dtype=np.int64)})
        # images/reports problems carry the exception text; group them by their first clause
        kind = self.problems["problem"].str.split(":", n=1).str[0]
        table = self.problems.assign(problem=kind).groupby(["column", "problem"]).size()
        return table.rename("count").reset_index().sort_values("count", ascending=False, ignore_index=True)


def _check_image(path: str) -> str | None:
    """None if the image header is readable, else the reason (no pixel decoding)."""
    from radmi.transforms.image import is_image_file

    if is_image_file(path):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.verify()
        except FileNotFoundError:
            return "image file not found"
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            return f"unreadable image: {err}"
        return None
    from radmi.transforms.dicom import read_xray_dicom_header

    if not os.path.exists(path):
        return "image file not found"
    try:
        read_xray_dicom_header(path)
    except RadmiError as err:
        return err.reason
    return None


def _check_report(path: str) -> str | None:
    from radmi.transforms.text import LoadReport

    try:
        LoadReport()(path)
    except RadmiError as err:
        return err.reason
    return None


def check_manifest(path: str | PathLike, progress: bool = True) -> ManifestCheck:
    """Open every row of a manifest and list what is wrong.

    Checks the schema and values (ids, split, labels, duplicate dicom_id), then for each row that the image
    header is readable (DICOM: pydicom without pixels, single-frame greyscale, codec present; PNG/JPG:
    Pillow) and that the report exists, decodes and is not empty.
    """
    path = Path(path)
    frame = _read_raw(path)
    problems = manifest_problems(frame).assign(path="")
    found = [problems]
    if not (problems["row"] == -1).any():
        base = path.resolve().parent
        columns = {c: resolve_paths(frame[c], base).tolist() for c in PATH_COLUMNS}
        rows = []
        for row in tqdm(range(len(frame)), desc="checking rows", unit=" rows", disable=not progress):
            for column, check in (("image_path", _check_image), ("report_path", _check_report)):
                file = columns[column][row]
                reason = check(file) if frame[column].iat[row].strip() else None
                if reason is not None:
                    rows.append({"row": row, "column": column, "problem": reason, "path": file})
        found.append(pd.DataFrame(rows, columns=["row", "column", "problem", "path"]))
    non_empty = [f for f in found if not f.empty]
    table = pd.concat(non_empty, ignore_index=True) if non_empty else problems
    table = (
        table.astype({"row": np.int64})
        .loc[:, ["row", "column", "path", "problem"]]
        .sort_values(["row", "column"], kind="stable", ignore_index=True)
    )
    return ManifestCheck(path=path, n_rows=len(frame), problems=table)


def split_counts(manifest: pd.DataFrame, splits: Iterable[str] = (*SPLITS, "")) -> pd.DataFrame:
    """Images, studies and subjects per split (``""`` shown as ``unassigned``)."""
    grouped = manifest.groupby("split")
    table = pd.DataFrame(
        {
            "images": grouped.size(),
            "studies": grouped["study_id"].nunique(),
            "subjects": grouped["subject_id"].nunique(),
        }
    )
    table = table.reindex([s for s in splits if s in table.index])
    table.index = [s or "unassigned" for s in table.index]
    return table
