"""The manifest checker behind ``radmi manifest check``: open every row and list what is wrong.

The schema and values are validated by :func:`radmi.data.manifest_schema.manifest_problems`; images are
opened header-only (DICOM: :func:`radmi.transforms.dicom_decode.read_xray_dicom_header`; PNG/JPG: Pillow) and
reports are loaded with :class:`radmi.transforms.text.LoadReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from radmi.data.manifest_schema import (
    PATH_COLUMNS,
    enforced_roots,
    manifest_problems,
    outside_roots,
    outside_roots_text,
    read_manifest_strings,
    resolve_paths,
)
from radmi.errors import ImageError, RadmiError
from radmi.transforms.dicom_decode import read_xray_dicom_header
from radmi.transforms.file_checks import file_problem, open_regular_file

__all__ = ["ManifestCheck", "check_manifest"]


@dataclass
class ManifestCheck:
    """Result of ``check_manifest``.

    Attributes:
        path: the manifest checked.
        n_rows: number of data rows.
        problems: one row per problem: ``row`` (0-based; -1 for the whole file), ``column``, ``path``
            (the file concerned, or empty), ``problem``.
        roots: the dataset roots enforced (empty with ``allow_outside_root``).
        roots_origin: where they come from, in words (``--root``, the roots file, the manifest's folder).
    """

    path: Path
    n_rows: int
    problems: pd.DataFrame
    roots: list[Path] = field(default_factory=list)
    roots_origin: str = ""

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
    """None if the image header is readable, else the reason (no pixel decoding, never blocks on a FIFO)."""
    from radmi.transforms.image import DEFAULT_MAX_PIXELS, is_image_file  # here: it imports MONAI (seconds)

    problem = file_problem(path, missing="image file not found")
    if problem is not None:
        return problem
    if is_image_file(path):
        try:
            with (
                open_regular_file(path, ImageError, missing="image file not found") as file,
                Image.open(file) as image,
            ):
                width, height = image.size
                if width * height > DEFAULT_MAX_PIXELS:
                    return (
                        f"image of {height} x {width} = {width * height:,} pixels is larger than the limit "
                        f"of {DEFAULT_MAX_PIXELS:,} pixels (max_pixels)"
                    )
                image.verify()
        except RadmiError as err:
            return err.reason
        except Image.DecompressionBombError as err:
            return f"image too large (Pillow's decompression-bomb limit): {err}"
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            return f"unreadable image: {err}"
        except Exception as err:  # any other failure of Pillow on a hostile file is a problem of that file
            return f"unreadable image: {type(err).__name__}: {str(err)[:300]}"
        return None
    try:
        read_xray_dicom_header(path)
    except RadmiError as err:
        return err.reason
    return None


def _check_report(path: str) -> str | None:
    from radmi.transforms.text import LoadReport  # here, not at the top: it imports MONAI (seconds)

    try:
        LoadReport()(path)
    except RadmiError as err:
        return err.reason
    return None


def _safe_check(check, path: str) -> str | None:
    """Run one file check; an unexpected exception becomes the row's problem instead of stopping the check."""
    try:
        return check(path)
    except Exception as err:  # the checker must list every problem, never crash on one file
        return f"unexpected error reading the file: {type(err).__name__}: {str(err)[:300]}"


def check_manifest(
    path: str | PathLike,
    progress: bool = True,
    *,
    root: str | PathLike | None = None,
    allow_outside_root: bool = False,
) -> ManifestCheck:
    """Open every row of a manifest and list what is wrong.

    Checks the schema and values (ids, split, labels, duplicate dicom_id), then for each row that the image
    header is readable (DICOM: pydicom without pixels, single-frame greyscale, codec present; PNG/JPG:
    Pillow) and that the report exists, decodes and is not empty. A path that resolves outside the dataset
    roots (:func:`radmi.data.manifest_schema.dataset_roots`: ``root`` when given, else the roots its builder
    recorded beside it, else the manifest's folder) is listed as a problem and never opened, unless
    ``allow_outside_root``.

    Raises:
        ManifestError: the manifest is missing or not a CSV, or its dataset-roots file is broken (named).
    """
    path = Path(path)
    frame = read_manifest_strings(path)
    roots, origin = ([], "") if allow_outside_root else enforced_roots(path, root)
    problems = manifest_problems(frame).assign(path="")
    found = [problems]
    if not (problems["row"] == -1).any():
        base = path.resolve().parent
        resolved = {c: resolve_paths(frame[c], base) for c in PATH_COLUMNS}
        columns = {c: paths.tolist() for c, paths in resolved.items()}
        outside = {
            c: (outside_roots(paths, roots) & (frame[c].str.strip() != "")).tolist()
            if roots
            else [False] * len(frame)
            for c, paths in resolved.items()
        }
        outside_reason = f"{outside_roots_text(roots, origin)}: give --root DIR, or --allow-outside-root"
        rows = []
        for row in tqdm(range(len(frame)), desc="checking rows", unit=" rows", disable=not progress):
            for column, check in (("image_path", _check_image), ("report_path", _check_report)):
                file = columns[column][row]
                if outside[column][row]:
                    reason = outside_reason
                else:
                    reason = _safe_check(check, file) if frame[column].iat[row].strip() else None
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
    return ManifestCheck(path=path, n_rows=len(frame), problems=table, roots=roots, roots_origin=origin)
