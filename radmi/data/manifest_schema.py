"""The manifest schema and its IO: the column list, value validation, ``read_manifest`` and ``write_manifest``.

Columns, in order (see ``data_manifests/README.md`` and ``docs/architecture.md``)::

    subject_id, study_id, dicom_id, image_path, report_path, view, split, <14 CHEXPERT_LABELS>, edema_severity

This module is the bottom of the manifest modules: the builders (``manifest_mimic``, ``manifest_folder``) and
the checker (``manifest_check``) import it, never the reverse. It also holds the reader of *source* CSVs
(``read_source_csv``: MIMIC-CXR's official tables, a hospital's report table) that both builders share.

**Dataset roots.** Every path of a manifest must resolve inside its dataset root(s) before ``radmi prepare`` or
``radmi manifest check`` opens it (a row ``report_path=/etc/passwd`` must never reach a cache). The builders
record their roots; ``write_manifest`` writes them beside the manifest ``M.csv`` as ``M.roots.json``
(``{"dataset_roots": [...]}``, see :func:`roots_file`); :func:`dataset_roots` gives the roots to enforce
(``--root``, else that file, else the manifest's own folder) and :func:`require_inside_roots` enforces them.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data.labels import CHEXPERT_LABELS, invalid_edema_values, invalid_label_values
from radmi.errors import ManifestError
from radmi.transforms.file_checks import file_problem, open_regular_file

__all__ = [
    "DATASET_ROOTS_ATTR",
    "EDEMA_COLUMN",
    "FRONTAL_VIEWS",
    "ID_COLUMNS",
    "MANIFEST_COLUMNS",
    "MAX_PARENT_LEVELS",
    "OPTIONAL_COLUMNS",
    "OUTSIDE_ROOT_HINT",
    "PATH_COLUMNS",
    "ROOTS_SUFFIX",
    "SPLITS",
    "TEXT_COLUMNS",
    "dataset_roots",
    "empty_labels",
    "enforced_roots",
    "link_or_special_problems",
    "manifest_problems",
    "outside_root",
    "outside_roots",
    "read_dataset_roots",
    "read_manifest",
    "read_manifest_within_roots",
    "read_manifest_strings",
    "require_inside_root",
    "require_inside_roots",
    "read_source_csv",
    "require_unique",
    "resolve_paths",
    "roots_file",
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
    (no file) are never outside. One root of :func:`outside_roots`."""
    return outside_roots(paths, [root])


def _root_forms(roots: Iterable[str | PathLike]) -> list[str]:
    """Each root as written (absolute, normalized) and with its links resolved: two names of one folder."""
    forms: list[str] = []
    for root in roots:
        for form in (os.path.normpath(os.path.abspath(root)), os.path.realpath(root)):
            if form not in forms:
                forms.append(form)
    return forms


def outside_roots(paths: pd.Series, roots: Iterable[str | PathLike]) -> pd.Series:
    """Boolean mask of the resolved (absolute) ``paths`` that are inside none of ``roots``; empty paths (no
    file) are never outside.

    The test is on the normalized path (``..`` removed), without following symbolic links: a link inside a
    root is the dataset's own (datasets are often assembled from links) and :mod:`radmi.transforms.file_checks`
    still refuses a dangling link, a loop or a special file when the row is opened. A root itself counts under
    its written name and under its resolved one (``/data`` linked to ``/mnt/data``: both are that root).
    """
    normalized = paths.map(lambda p: os.path.normpath(p) if p else p)
    inside = pd.Series(False, index=paths.index)
    for base in _root_forms(roots):
        prefix = base.rstrip(os.sep) + os.sep
        inside |= (normalized == base) | normalized.str.startswith(prefix)
    return ~inside & (paths != "")


#: The hint of an outside-root error.
OUTSIDE_ROOT_HINT = (
    "give the dataset folder with --root DIR, or pass --allow-outside-root if these files are meant"
)
#: The dataset-roots file of a manifest ``M.csv`` (or ``M.csv.gz``) is ``M.roots.json`` beside it.
ROOTS_SUFFIX = ".roots.json"
#: ``DataFrame.attrs`` key under which builders and ``read_manifest`` keep a manifest's dataset roots (absolute
#: path strings), so that ``write_manifest`` writes them beside the manifest.
DATASET_ROOTS_ATTR = "dataset_roots"
_ROOTS_KEY = "dataset_roots"
_MAX_ROOTS_BYTES = 1 << 20


def roots_file(manifest_path: str | PathLike) -> Path:
    """The dataset-roots file of a manifest: ``M.roots.json`` beside ``M.csv`` / ``M.csv.gz`` (beside the file a
    link to the manifest points at, whose folder relative paths are relative to)."""
    path = Path(manifest_path).resolve()
    name = path.name
    for suffix in (".csv.gz", ".csv"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ROOTS_SUFFIX)


def _manifest_folder(manifest_path: str | PathLike) -> Path:
    """The folder relative manifest paths are joined onto (as ``read_manifest`` does)."""
    return Path(manifest_path).resolve().parent


def read_dataset_roots(manifest_path: str | PathLike) -> list[Path] | None:
    """The dataset roots recorded beside a manifest (``M.roots.json``), absolute; None when there is no such file.

    Relative roots are relative to the manifest's folder (the tree can move with the manifest).

    Raises:
        ManifestError: naming the roots file, when it is not a regular file, not JSON, not an object with a
            non-empty list of path strings under ``"dataset_roots"``, or names the filesystem root.
    """
    sidecar = roots_file(manifest_path)
    if not os.path.lexists(sidecar):
        return None
    fix = "; rebuild the manifest with radmi manifest, fix or delete this file, or give --root DIR"
    problem = file_problem(sidecar)  # from stat alone: a FIFO is never opened
    if problem is not None:
        raise ManifestError(f"unreadable dataset-roots file: {problem}{fix}", path=sidecar)
    try:
        with open_regular_file(sidecar, ManifestError) as file:
            raw = file.read(_MAX_ROOTS_BYTES + 1)
        if len(raw) > _MAX_ROOTS_BYTES:
            raise ValueError(f"larger than {_MAX_ROOTS_BYTES:,} bytes")
        content = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ManifestError(f"broken dataset-roots file: not JSON ({err}){fix}", path=sidecar) from err
    except OSError as err:
        raise ManifestError(
            f"unreadable dataset-roots file: {err.strerror or err}{fix}", path=sidecar
        ) from err
    roots = content.get(_ROOTS_KEY) if isinstance(content, dict) else None
    if (
        not isinstance(roots, list)
        or not roots
        or not all(isinstance(r, str) and r.strip() and "\0" not in r for r in roots)
    ):
        raise ManifestError(
            f'broken dataset-roots file: expected {{"{_ROOTS_KEY}": [one or more folder paths]}}{fix}',
            path=sidecar,
        )
    base = _manifest_folder(manifest_path)
    resolved = [Path(os.path.normpath(os.path.join(base, root))) for root in roots]
    for root in resolved:
        if root.parent == root or Path(os.path.realpath(root)).parent == Path(os.path.realpath(root)):
            raise ManifestError(
                f"dataset-roots file names the filesystem root {root} (every path would be inside it){fix}",
                path=sidecar,
            )
    return resolved


def enforced_roots(
    manifest_path: str | PathLike, root: str | PathLike | None = None
) -> tuple[list[Path], str]:
    """(the dataset roots to enforce, where they come from in words): see :func:`dataset_roots`."""
    if root is not None:
        return [Path(os.path.normpath(os.path.abspath(root)))], "given with --root"
    recorded = read_dataset_roots(manifest_path)
    if recorded is not None:
        return recorded, f"recorded in {roots_file(manifest_path).name}"
    # the folder under the name it was given and with links resolved (where read_manifest joins relative rows)
    folders = list(dict.fromkeys([Path(os.path.abspath(manifest_path)).parent, _manifest_folder(manifest_path)]))
    return folders, f"the manifest's folder, as no {roots_file(manifest_path).name} is beside it"


def dataset_roots(manifest_path: str | PathLike, root: str | PathLike | None = None) -> list[Path]:
    """The folders every ``image_path``/``report_path`` of a manifest must resolve inside.

    ``root`` when given (``--root DIR``); else the roots its builder recorded beside it (``M.roots.json``,
    written by :func:`write_manifest`); else (a hand-written manifest) the manifest's own folder.

    Raises:
        ManifestError: a broken roots file (named).
    """
    return enforced_roots(manifest_path, root)[0]


def require_inside_roots(
    manifest: pd.DataFrame,
    roots: Sequence[str | PathLike],
    *,
    path: str | PathLike | None = None,
    origin: str = "",
) -> None:
    """Raise a :class:`ManifestError` naming the first row whose resolved ``image_path``/``report_path`` is
    inside none of ``roots`` (a row with ``report_path=/etc/passwd`` must not put that file into a cache).

    Args:
        manifest: the manifest with absolute paths (``read_manifest``).
        roots: the folders allowed (:func:`dataset_roots`).
        path: the manifest file, named by the error.
        origin: where the roots come from, in words (:func:`enforced_roots`).
    """
    masks = {column: outside_roots(manifest[column].astype(str), roots).to_numpy() for column in PATH_COLUMNS}
    rows = np.flatnonzero(np.logical_or.reduce(list(masks.values())))
    if len(rows):
        first = int(rows[0])
        column = next(c for c in PATH_COLUMNS if masks[c][first])
        raise ManifestError(
            f"column '{column}': {manifest[column].iat[first]} is {outside_roots_text(roots, origin)}"
            + (f" ({len(rows) - 1} more row(s))" if len(rows) > 1 else "")
            + f"; {OUTSIDE_ROOT_HINT}",
            path=path,
            row=first,
        )


def outside_roots_text(roots: Sequence[str | PathLike], origin: str = "") -> str:
    """``outside the dataset root R (origin)`` / ``outside the dataset roots R1, R2 (origin)``."""
    names = ", ".join(str(r) for r in roots)
    noun = "root" if len(roots) == 1 else "roots"
    return f"outside the dataset {noun} {names}" + (f" ({origin})" if origin else "")


def require_inside_root(
    manifest: pd.DataFrame, root: str | PathLike, *, path: str | PathLike | None = None
) -> None:
    """:func:`require_inside_roots` with the one ``root`` given with ``--root``."""
    require_inside_roots(manifest, [root], path=path, origin="given with --root")


#: The hint of an outside-root error where there is no --root option (commands that read a manifest's files).
UNCACHED_OUTSIDE_ROOT_HINT = (
    "if these files are meant, put the manifest in the folder that holds them, list that folder in the "
    "manifest's roots file, or prepare a cache with `radmi prepare --root DIR` (or `--allow-outside-root`) "
    "and use that"
)


def read_manifest_within_roots(path: str | PathLike) -> pd.DataFrame:
    """:func:`read_manifest` (paths absolute), refusing a row outside the manifest's :func:`dataset_roots`: the
    rule of ``radmi prepare`` for the readers without a cache (``predict``, ``label``, ``ManifestDataset``,
    ``finetune``/``evaluate``/``retrieve`` on a manifest).

    Raises:
        ManifestError: a bad manifest, a broken roots file, or the first row outside the roots (named).
    """
    roots, origin = enforced_roots(path)
    frame = read_manifest(path)
    try:
        require_inside_roots(frame, roots, path=path, origin=origin)
    except ManifestError as err:
        raise ManifestError(
            err.reason.replace(OUTSIDE_ROOT_HINT, UNCACHED_OUTSIDE_ROOT_HINT), path=err.path, row=err.row
        ) from None
    return frame


def link_or_special_problems(paths: Iterable[str]) -> list[str]:
    """Per path, why it is a link that goes nowhere or a special file ('' when it is not).

    From ``lstat`` (and ``stat`` for links) alone, never opening anything: a FIFO never blocks. A regular file,
    a link to one, an empty path and a missing path are all '' (a missing file is ``radmi manifest check``'s
    business); a dangling link, a link loop, a FIFO, a socket, a device or a folder get the reason of
    :func:`radmi.transforms.file_checks.file_problem`. One ``lstat`` per path.
    """
    reasons = []
    for path in paths:
        reason = ""
        if path:
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                mode = None
            except (OSError, ValueError):  # a loop in a parent folder, an embedded NUL byte, no permission
                mode = -1
            if mode == -1 or (mode is not None and not stat.S_ISREG(mode)):
                reason = file_problem(path) or ""
        reasons.append(reason)
    return reasons


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
        view and split as strings, the 14 labels and ``edema_severity`` as float64 with NaN for blank. Its
        ``attrs["dataset_roots"]`` holds the manifest's dataset roots (:func:`dataset_roots`, absolute; absent
        when the roots file is broken), so a subset written elsewhere with :func:`write_manifest` keeps them.
        No root is enforced here: ``prepare_cache`` and ``check_manifest`` do.

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
    # a broken roots file: no roots kept here; prepare and manifest check say so when they enforce the roots
    with contextlib.suppress(ManifestError):
        manifest.attrs[DATASET_ROOTS_ATTR] = [str(root) for root in dataset_roots(path)]
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


def _root_entry(root: str | PathLike, base: str, relative: bool) -> str:
    """A dataset root as ``M.roots.json`` holds it: relative to the manifest's folder ``base`` when the
    manifest's own paths under it are written relative (see ``_relative_to``; also when the manifest lies inside
    the root), else absolute."""
    resolved = str(Path(root).resolve())  # relative rows are joined onto the resolved folder ``base``
    if relative and os.path.splitdrive(resolved)[0] == os.path.splitdrive(base)[0]:
        parts = os.path.relpath(resolved, base).split(os.sep)
        if parts.count("..") <= MAX_PARENT_LEVELS or all(part in ("..", ".") for part in parts):
            return "/".join(parts)
    # absolute rows keep the names they were given (``/data`` linked to ``/mnt/data``): so does the root; the
    # check also accepts the resolved name (``_root_forms``)
    return os.path.normpath(os.path.abspath(root))


def write_manifest(
    manifest: pd.DataFrame,
    path: str | PathLike,
    relative: bool = True,
    dataset_roots: Sequence[str | PathLike] | None = None,
) -> Path:
    """Write ``manifest`` (the columns of ``MANIFEST_COLUMNS``, then any ``OPTIONAL_COLUMNS`` it has) as CSV,
    and its dataset roots beside it.

    Args:
        manifest: ids/paths/view/split as strings, labels and edema as numbers or NaN.
        path: output CSV; its folder is created.
        relative: write paths relative to the manifest's folder (portable when the tree moves with it)
            where the files share a folder at most ``MAX_PARENT_LEVELS`` above it; others stay absolute.
        dataset_roots: the folders every path lies in (the builders' dataset folders); default
            ``manifest.attrs["dataset_roots"]``, which the builders and ``read_manifest`` set. They are written
            to ``M.roots.json`` beside ``M.csv`` (:func:`roots_file`), relative to the manifest's folder where
            the paths are, and ``radmi prepare`` / ``radmi manifest check`` refuse a row outside them. Without
            roots no such file is written (one left from an earlier manifest at ``path`` is removed) and the
            manifest's own folder is its root. A table whose paths were rewritten to another folder needs
            its new roots here (its ``attrs`` still name the old ones).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in OPTIONAL_COLUMNS if c in manifest.columns]
    out = manifest.loc[:, [*MANIFEST_COLUMNS, *extra]].copy()
    base = str(path.resolve().parent)
    if relative:
        for column in PATH_COLUMNS:
            out[column] = _relative_to(out[column].astype(str), base)
    out[EDEMA_COLUMN] = pd.to_numeric(out[EDEMA_COLUMN]).astype("Int64")  # 2, not 2.0
    out.to_csv(path, index=False, na_rep="", float_format="%.1f")
    roots = manifest.attrs.get(DATASET_ROOTS_ATTR) if dataset_roots is None else dataset_roots
    sidecar = roots_file(path)
    if sidecar.is_dir() and not sidecar.is_symlink():
        raise ManifestError("a folder is in the way of the dataset-roots file; move it", path=sidecar)
    if os.path.lexists(sidecar):  # an earlier manifest's (never written through a link or into a FIFO)
        sidecar.unlink()
    if roots:
        entries = list(dict.fromkeys(_root_entry(root, base, relative) for root in roots))
        sidecar.write_text(json.dumps({_ROOTS_KEY: entries}, indent=1) + "\n", encoding="utf-8")
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
