"""The manifest schema and its IO: the column list, value validation, ``read_manifest`` and ``write_manifest``.

Columns, in order (see ``data_manifests/README.md`` and ``docs/architecture.md``)::

    subject_id, study_id, dicom_id, image_path, report_path, view, split, <14 CHEXPERT_LABELS>, edema_severity

This module is the bottom of the manifest modules: the builders (``manifest_mimic``, ``manifest_folder``) and
the checker (``manifest_check``) import it, never the reverse. It also holds the reader of *source* CSVs
(``read_source_csv``: MIMIC-CXR's official tables, a hospital's report table) that both builders share.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data.labels import CHEXPERT_LABELS, invalid_edema_values, invalid_label_values
from radmi.errors import ManifestError

__all__ = [
    "EDEMA_COLUMN",
    "FRONTAL_VIEWS",
    "ID_COLUMNS",
    "MANIFEST_COLUMNS",
    "MAX_PARENT_LEVELS",
    "OPTIONAL_COLUMNS",
    "PATH_COLUMNS",
    "SPLITS",
    "TEXT_COLUMNS",
    "empty_labels",
    "manifest_problems",
    "outside_root",
    "read_manifest",
    "read_manifest_strings",
    "require_inside_root",
    "read_source_csv",
    "require_unique",
    "resolve_paths",
    "split_counts",
    "typed_manifest",
    "write_manifest",
]

ID_COLUMNS = ("subject_id", "study_id", "dicom_id")
PATH_COLUMNS = ("image_path", "report_path")
TEXT_COLUMNS = (*ID_COLUMNS, *PATH_COLUMNS, "view", "split")
EDEMA_COLUMN = "edema_severity"
#: The manifest columns, in order.
MANIFEST_COLUMNS: tuple[str, ...] = (*TEXT_COLUMNS, *CHEXPERT_LABELS, EDEMA_COLUMN)
#: Optional columns after the schema's: ``write_manifest`` writes them when the table has them, readers ignore
#: them. ``mesh_major``: Open-i's MeSH major terms of the report, ``;``-separated.
OPTIONAL_COLUMNS: tuple[str, ...] = ("mesh_major",)
#: Allowed ``split`` values; an empty split means "not assigned" (e.g. a hospital export).
SPLITS = ("train", "validate", "test")
FRONTAL_VIEWS = ("PA", "AP")

_DIGITS = r"\d+"


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
    # an empty report_path is allowed: an image without a report (CheXpert); pretraining refuses such rows
    for column in ("dicom_id", "image_path"):
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


def read_manifest_strings(path: str | PathLike) -> pd.DataFrame:
    """A manifest CSV as read, every cell a string (blank = ``""``), before validation.

    Raises:
        ManifestError: the file is missing or is not a readable CSV.
    """
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
    """Relative paths joined onto ``base`` (absolute ones kept, empty ones = no file kept empty), vectorized."""
    base = os.path.abspath(base)
    joined = paths.where(_is_absolute(paths) | (paths == ""), base + os.sep + paths)
    dotted = joined.str.contains(
        r"(?:^|[\\/])\.\.?(?:[\\/]|$)"
    )  # "../files/..." -> normalized, only where needed
    return joined.where(~dotted, joined[dotted].map(os.path.normpath))


def outside_root(paths: pd.Series, root: str | PathLike) -> pd.Series:
    """Boolean mask of the resolved (absolute, normalized) ``paths`` that are not inside ``root``; empty paths
    (no file) are never outside.

    The test is on the normalized path (``..`` removed), without following symbolic links: a link inside the
    root is the dataset's own (datasets are often assembled from links) and :mod:`radmi.transforms.file_checks`
    still refuses a dangling link, a loop or a special file when the row is opened.
    """
    base = os.path.normpath(os.path.abspath(root))
    prefix = base.rstrip(os.sep) + os.sep
    normalized = paths.map(lambda p: os.path.normpath(p) if p else p)
    inside = (normalized == base) | normalized.str.startswith(prefix)
    return ~inside & (paths != "")


#: The hint of an outside-root error.
OUTSIDE_ROOT_HINT = "give the dataset folder with --root DIR, or pass --allow-outside-root if these files are meant"


def require_inside_root(
    manifest: pd.DataFrame, root: str | PathLike, *, path: str | PathLike | None = None
) -> None:
    """Raise a :class:`ManifestError` naming the first row whose resolved ``image_path``/``report_path`` is
    outside ``root`` (a row with ``report_path=/etc/passwd`` must not put that file into a cache)."""
    masks = {column: outside_root(manifest[column].astype(str), root).to_numpy() for column in PATH_COLUMNS}
    rows = np.flatnonzero(np.logical_or.reduce(list(masks.values())))
    if len(rows):
        first = int(rows[0])
        column = next(c for c in PATH_COLUMNS if masks[c][first])
        raise ManifestError(
            f"column '{column}': {manifest[column].iat[first]} is outside the dataset root {root}"
            + (f" ({len(rows) - 1} more row(s))" if len(rows) > 1 else "")
            + f"; {OUTSIDE_ROOT_HINT}",
            path=path,
            row=first,
        )


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
    frame = read_manifest_strings(path)
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
    """Write ``manifest`` (the columns of ``MANIFEST_COLUMNS``, then any ``OPTIONAL_COLUMNS`` it has) as CSV.

    Args:
        manifest: ids/paths/view/split as strings, labels and edema as numbers or NaN.
        path: output CSV; its folder is created.
        relative: write paths relative to the manifest's folder (portable when the tree moves with it)
            where the files share a folder at most ``MAX_PARENT_LEVELS`` above it; others stay absolute.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in OPTIONAL_COLUMNS if c in manifest.columns]
    out = manifest.loc[:, [*MANIFEST_COLUMNS, *extra]].copy()
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


# ------------------------------------------------------------------------------------------- source CSVs
def read_source_csv(
    path: Path, required: Sequence[str], numeric: Sequence[str] = (), check_ids: bool = True
) -> pd.DataFrame:
    """Read the ``required`` columns of a source CSV (plain or ``.gz``); ManifestError if some lack.

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


def require_unique(frame: pd.DataFrame, keys: list[str], path: Path) -> pd.DataFrame:
    """``frame`` unchanged; ManifestError naming ``path`` and the first duplicated row of ``keys``."""
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        raise ManifestError(f"duplicate {'/'.join(keys)}", path=path, row=int(np.flatnonzero(duplicated)[0]))
    return frame
