"""The pieces a findings bundle's ``configs/inference.json`` is built from.

The bundle config wires them into a ``monai.engines.SupervisedEvaluator``:

- :func:`list_inputs` turns ``dataset_dir`` (a folder of DICOMs, one DICOM file, or a radmi manifest CSV) into
  the data list;
- :class:`InferenceDataset` applies the preprocessing and, when one file cannot be read, keeps its error instead
  of stopping the run;
- :class:`InferenceCollate` stacks the readable images into a ``B x 1 x S x S`` batch and carries the failures
  alongside;
- :class:`SkipEmptyInferer` lets a batch whose files all failed pass without calling the network;
- :class:`ProbabilityWriter` (an Ignite handler) writes one row per input file, probabilities or error, as CSV
  and JSON.

Nothing here logs report text or patient identifiers: rows carry the file path and the DICOM/study ids only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from monai.data import Dataset
from monai.inferers import SimpleInferer
from monai.transforms import apply_transform

from radmi.errors import BundleError, RadmiError
from radmi.transforms.file_checks import file_problem

logger = logging.getLogger(__name__)

#: File name endings taken as DICOM when a folder is scanned (compared in lower case).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dcm.gz")
#: Manifest file endings: a ``dataset_dir`` ending like this is read as a radmi manifest.
MANIFEST_SUFFIXES = (".csv", ".csv.gz")


def _has_dicom_preamble(path: Path) -> bool:
    """True when ``path`` carries the ``DICM`` magic at byte 128 (DICOM Part 10 files without an extension)."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_candidate(path: Path) -> bool:
    # hospital exports often store DICOMs without an extension or under UID-like names: look at the magic bytes
    return path.name.lower().endswith(DICOM_SUFFIXES) or _has_dicom_preamble(path)


#: a MIMIC-CXR study folder name: ``s`` and the study id
_MIMIC_STUDY_FOLDER = re.compile(r"s(\d+)")


def study_id_from_path(path: Path) -> str:
    """The study id of a file in a MIMIC-CXR-style tree (``.../s50414267/<dicom_id>.dcm``), else ``""``."""
    match = _MIMIC_STUDY_FOLDER.fullmatch(path.parent.name)
    return match.group(1) if match else ""


def _shown_path(path: Path, root: Path, full_paths: bool) -> str:
    """The path written to the outputs: relative to the input folder (``root``) unless ``full_paths``."""
    absolute = Path(os.path.abspath(path))
    if full_paths:
        return str(absolute)
    try:
        return str(absolute.relative_to(root))
    except ValueError:  # a manifest row outside the manifest's folder
        return str(absolute)


def list_inputs(source: str | Path, full_paths: bool = False) -> list[dict[str, Any]]:
    """The data list for inference: one dict per image, in a stable order.

    Args:
        source: a folder (searched recursively for ``*.dcm``, ``*.dicom``, ``*.dcm.gz`` and any other file with
            the DICOM ``DICM`` preamble), one image file (DICOM, or PNG/JPG as in MIMIC-CXR-JPG), or a radmi
            manifest CSV (its ``image_path`` column; ids are kept for the output).
        full_paths: write absolute paths to the outputs; by default ``path`` is relative to the input folder
            (the folder itself, a single file's folder, or the manifest's folder), since MIMIC-CXR-style paths
            carry subject ids and the input folder's location says nothing about the image.

    In a folder, entries that are not readable regular files (dangling symbolic links, link loops, FIFOs,
    sockets, devices) are listed too, whatever their name, with ``error`` set to the reason: they are never
    opened (a FIFO would block) and end as failed rows of the output. A link to a regular file is followed.

    Returns:
        dicts with ``image_path`` (absolute path, read by the preprocessing), ``path`` (for the output:
        relative, or absolute with ``full_paths``), ``dicom_id``, ``study_id`` (the manifest's; for files, from a
        MIMIC-CXR-style ``s<digits>`` parent folder, else empty), ``index`` (input order) and, for a bad entry,
        ``error``.

    Raises:
        BundleError: the source does not exist, or a folder holds no DICOM file (nor any bad entry).
    """
    path = Path(source).expanduser()
    if not path.exists() and not path.is_symlink():
        raise BundleError("no such file or folder to predict on", path=path)
    problem = None if path.is_dir() else file_problem(path)
    if problem is not None:
        raise BundleError(f"cannot predict on it: {problem}", path=path)
    if path.is_file() and path.name.lower().endswith(MANIFEST_SUFFIXES):
        from radmi.data.manifest_schema import read_manifest_within_roots

        root = Path(os.path.abspath(path)).parent
        frame = read_manifest_within_roots(path)
        files = [Path(str(row.image_path)) for row in frame.itertuples(index=False)]
        rows = [
            {"image_path": str(file), "dicom_id": str(row.dicom_id), "study_id": str(row.study_id)}
            for file, row in zip(files, frame.itertuples(index=False), strict=True)
        ]
    elif path.is_file():
        root = Path(os.path.abspath(path)).parent
        files = [path]
        rows = [
            {"image_path": str(path.resolve()), "dicom_id": path.stem, "study_id": study_id_from_path(path)}
        ]
    else:
        root = Path(os.path.abspath(path))
        files, rows = [], []
        for entry in sorted(path.rglob("*")):
            if entry.is_dir():
                continue
            reason = file_problem(entry)  # stat only: a FIFO or a link loop is never opened
            if reason is None and not _is_dicom_candidate(entry):
                continue
            row = {"image_path": str(Path(os.path.abspath(entry))), "dicom_id": entry.stem}
            row["study_id"] = study_id_from_path(entry)
            if reason is not None:
                row["error"] = f"bad input: {reason}"
            else:
                row["image_path"] = str(entry.resolve())
            files.append(entry)
            rows.append(row)
        if not rows:
            raise BundleError(
                "the folder holds no DICOM file (*.dcm, *.dicom or extension-less DICOM)", path=path
            )
    for index, (file, row) in enumerate(zip(files, rows, strict=True)):
        row["path"] = _shown_path(file, root, full_paths)
        row["index"] = index
    return rows


def describe_error(err: BaseException) -> str:
    """One line naming why a file failed: the radmi error in the cause chain if there is one, else the root cause.

    MONAI's ``apply_transform`` wraps the transform's exception in a ``RuntimeError``; the useful message is the
    original one further down the ``__cause__`` chain.
    """
    chain = [err]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    for item in chain:
        if isinstance(item, RadmiError):
            return f"{type(item).__name__}: {item.reason}"
    root = chain[-1]
    return f"{type(root).__name__}: {root}"


class InferenceDataset(Dataset):
    """A MONAI ``Dataset`` that records a failing item's error instead of raising it.

    A successful item is the transformed dict (``image``: 1 x S x S float32 in [0, 1]) plus the bookkeeping keys
    of :func:`list_inputs`. A failed item is ``{"path", "dicom_id", "study_id", "index", "error"}`` with no
    image; :class:`InferenceCollate` keeps it out of the batch tensor and the writer lists it with its error.
    Every failure is logged at warning level with the file and the reason.
    """

    def __init__(self, data: Sequence[dict], transform: Callable | None = None) -> None:
        super().__init__(data=data, transform=transform)

    def _transform(self, index: int) -> dict[str, Any]:
        item = dict(self.data[index])
        bookkeeping = {key: item[key] for key in ("path", "dicom_id", "study_id", "index") if key in item}
        if item.get("error"):  # listed as bad by list_inputs (link loop, FIFO, ...): never opened
            logger.warning("cannot predict %s: %s", bookkeeping.get("path"), item["error"])
            return {**bookkeeping, "error": item["error"]}
        try:
            out = apply_transform(self.transform, item) if self.transform is not None else item
        except Exception as err:  # one unreadable file must not stop the others: report it and go on
            reason = describe_error(err)
            logger.warning("cannot predict %s: %s", bookkeeping.get("path"), reason)
            return {**bookkeeping, "error": reason}
        return {**out, **bookkeeping}


class InferenceCollate:
    """Collate for :class:`InferenceDataset`: stack the readable images, carry the failures beside them.

    Args:
        image_size: side S of the preprocessed square images, used for the shape of an all-failed batch.

    Returns (when called on a list of items) a dict with ``image`` (B x 1 x S x S float32, B = readable items,
    possibly 0), ``path``, ``dicom_id``, ``study_id``, ``index`` (lists of length B) and ``failed`` (a list of
    dicts with ``path``, ``dicom_id``, ``study_id``, ``index`` and ``error``).
    """

    def __init__(self, image_size: int | Sequence[int]) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size = tuple(int(s) for s in size)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        good = [item for item in items if "error" not in item]
        failed = [dict(item) for item in items if "error" in item]
        if good:
            # plain tensors: MetaTensor meta differs between files (spacing present or not) and is not needed here
            image = torch.stack([torch.as_tensor(item["image"]).as_subclass(torch.Tensor) for item in good])
        else:
            image = torch.zeros((0, 1, *self.image_size), dtype=torch.float32)
        batch: dict[str, Any] = {"image": image.float(), "failed": failed}
        for key in ("path", "dicom_id", "study_id", "index"):
            batch[key] = [item.get(key, "") for item in good]
        return batch


class SkipEmptyInferer(SimpleInferer):
    """``SimpleInferer`` that returns an empty ``0 x num_outputs`` prediction for an empty batch.

    A batch is empty when every file in it failed to load; many networks (e.g. MONAI's ResNet, which flattens
    with ``view(B, -1)``) cannot run on zero items.
    """

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.num_outputs = int(num_outputs)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.shape[0] == 0:
            return inputs.new_zeros((0, self.num_outputs))
        return super().__call__(inputs, network, *args, **kwargs)


class ProbabilityWriter:
    """Ignite handler that writes one row per input file to ``<output_dir>/<name>.csv`` and ``.json``.

    The evaluator must run with ``decollate=False`` and a sigmoid in its postprocessing, so that
    ``engine.state.output["pred"]`` is ``B x F`` probabilities for the readable files of ``engine.state.batch``.

    A row whose probabilities are not all finite is written as ``status=error`` with its reason, never as ``ok``;
    the JSON never holds a bare ``NaN``.

    CSV columns: ``path, dicom_id, study_id, status`` (``ok`` or ``error``; ``study_id`` only when some input has one:
    a manifest row or a MIMIC-CXR-style ``s<digits>`` folder), ``error``, then one column per
    finding (probability in [0, 1], empty for a failed file). The JSON holds ``findings`` (names), ``predictions``
    (one object per file with ``probabilities`` by name, or ``error``) and the counts.

    Args:
        output_dir: folder for the two files (created).
        finding_names: the F output channel names, in network output order.
        name: file name stem.
    """

    def __init__(
        self, output_dir: str | Path, finding_names: Sequence[str], name: str = "predictions"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.finding_names = list(finding_names)
        self.name = name
        self.rows: list[dict[str, Any]] = []

    @property
    def csv_path(self) -> Path:
        return self.output_dir / f"{self.name}.csv"

    @property
    def json_path(self) -> Path:
        return self.output_dir / f"{self.name}.json"

    @property
    def num_ok(self) -> int:
        return sum(row["status"] == "ok" for row in self.rows)

    @property
    def num_failed(self) -> int:
        return sum(row["status"] == "error" for row in self.rows)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine=None) -> None:
        self.rows = []

    def collect(self, engine) -> None:
        batch = engine.state.batch
        probs = engine.state.output["pred"]
        probs = torch.as_tensor(probs).detach().float().cpu()
        if probs.ndim != 2 or probs.shape != (len(batch["path"]), len(self.finding_names)):
            raise BundleError(
                f"the network gave predictions of shape {tuple(probs.shape)}; expected "
                f"({len(batch['path'])}, {len(self.finding_names)}): one probability per finding"
            )
        for i, path in enumerate(batch["path"]):
            values = [float(p) for p in probs[i]]
            if all(math.isfinite(v) for v in values):
                row = self._row(path, batch["dicom_id"][i], batch["study_id"][i], batch["index"][i], "ok", "")
                row["probabilities"] = values
            else:  # never an "ok" row with NaN: the image or the network gave non-finite output
                reason = "non-finite output: the network gave NaN/inf probabilities for this image"
                logger.warning("cannot predict %s: %s", path, reason)
                row = self._row(
                    path, batch["dicom_id"][i], batch["study_id"][i], batch["index"][i], "error", reason
                )
                row["probabilities"] = None
            self.rows.append(row)
        for item in batch["failed"]:
            row = self._row(
                item["path"],
                item.get("dicom_id", ""),
                item.get("study_id", ""),
                item["index"],
                "error",
                item["error"],
            )
            row["probabilities"] = None
            self.rows.append(row)

    @staticmethod
    def _row(path, dicom_id, study_id, index, status, error) -> dict[str, Any]:
        return {
            "index": int(index),
            "path": str(path),
            "dicom_id": str(dicom_id),
            "study_id": str(study_id),
            "status": status,
            "error": error,
        }

    def write(self, engine=None) -> None:
        self.rows.sort(key=lambda row: row["index"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # a column that is empty on every row says nothing; it is written only when some row has a study id
        ids = (
            ("path", "dicom_id", "study_id")
            if any(row["study_id"] for row in self.rows)
            else ("path", "dicom_id")
        )
        table = pd.DataFrame(
            [
                {
                    **{key: row[key] for key in (*ids, "status", "error")},
                    **dict(
                        zip(
                            self.finding_names,
                            row["probabilities"] or [None] * len(self.finding_names),
                            strict=True,
                        )
                    ),
                }
                for row in self.rows
            ],
            columns=[*ids, "status", "error", *self.finding_names],
        )
        table.to_csv(self.csv_path, index=False, float_format="%.6f")
        records = []
        for row in self.rows:
            record = {key: row[key] for key in (*ids, "status")}
            if row["probabilities"] is None:
                record["error"] = row["error"]
            else:
                record["probabilities"] = dict(zip(self.finding_names, row["probabilities"], strict=True))
            records.append(record)
        summary = {
            "findings": self.finding_names,
            "num_images": len(self.rows),
            "num_predicted": self.num_ok,
            "num_failed": self.num_failed,
            "predictions": records,
        }
        # allow_nan=False: bare NaN is not JSON; a non-finite value would be a bug here, so it must fail loudly
        self.json_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        logger.info(
            "wrote %d predictions (%d files failed) to %s and %s",
            self.num_ok,
            self.num_failed,
            self.csv_path,
            self.json_path,
        )


def progress_bar(enabled: bool = True, desc: str = "predict"):
    """An Ignite ``ProgressBar`` (tqdm) to pass among the evaluator's handlers, or a no-op one when disabled."""
    if not enabled:
        return _NoHandler()
    from ignite.handlers import ProgressBar

    return ProgressBar(persist=True, desc=desc)


class _NoHandler:
    def attach(self, engine) -> None:
        return None
