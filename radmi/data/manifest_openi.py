"""The Open-i manifest builder: ``build_openi_manifest`` for the Indiana University chest X-ray collection.

The release (NLM Open-i, CC BY-NC-ND 4.0) is a folder of report XML files (``ecgen-radiology/<n>.xml``, 3,955)
and a folder of PNG images (``NLMCXR_png/<image id>.png``, 7,470). Each XML is an NLM citation::

    <eCitation>
      <uId id="CXR1"/> ... <IUXRId id="1"/>
      <MedlineCitation><Article><Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette ... </AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract></Article></MedlineCitation>
      <MeSH><major>normal</major></MeSH>
      <parentImage id="CXR1_1_IM-0001-3001"><caption>Xray Chest PA and Lateral</caption> ...</parentImage>
      <parentImage id="CXR1_1_IM-0001-4001"> ... </parentImage>
    </eCitation>

Each ``parentImage id`` names one image, ``<id>.png``; each becomes one manifest row. The four sections are
written to ``<out folder>/<out stem>_reports/s<study_id>.txt`` as ``INDICATION: ...``, ``COMPARISON: ...``,
``FINDINGS: ...``, ``IMPRESSION: ...`` paragraphs, radmi's report layout, so ``radmi.data.reports.parse_report``
and the rest of the pipeline read them unchanged.

There are no patient ids in the release: each report is its own subject and its own study
(``subject_id`` = 10,000,000 + n, ``study_id`` = 50,000,000 + n, n = the report number ``IUXRId``). The split is
drawn per report from a hash of n (:func:`radmi.data.splits.hash_fraction`). Views come from the
figure caption when it names exactly one of PA, AP or lateral, else they are unknown (empty).

Reports without FINDINGS and IMPRESSION text, and reports that list no image, are always skipped and counted.
A malformed XML file, a missing image file, an XML or image file that is a dangling link, a link loop or a
special file (FIFO, socket, device: found from the folder listing and ``stat``, never opened), or a duplicate
report number or image id is an error by default, and is skipped, logged and counted with ``on_error="skip"``.
Report text is never logged.

The manifest's dataset roots (``M.roots.json`` beside it, see :func:`radmi.data.manifest_schema.write_manifest`)
are the images folder and the written reports folder ``<out stem>_reports``.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radmi.data.manifest_schema import DATASET_ROOTS_ATTR, MANIFEST_COLUMNS, empty_labels, write_manifest
from radmi.data.splits import hash_fraction
from radmi.errors import ManifestError
from radmi.transforms.file_checks import file_problem, open_regular_file

__all__ = [
    "OPENI_SECTIONS",
    "OPENI_TEST_FRACTION",
    "OPENI_VAL_FRACTION",
    "OpeniReport",
    "build_openi_manifest",
    "openi_report_text",
    "read_openi_report",
    "view_from_caption",
]

logger = logging.getLogger(__name__)

#: The ``AbstractText`` labels radmi keeps, in the order they are written to the report file.
OPENI_SECTIONS = ("INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION")
#: Fractions of the reports drawn (by hash) into the validation and test splits; the rest is ``train``.
OPENI_VAL_FRACTION = 0.05
OPENI_TEST_FRACTION = 0.05
_SPLIT_SALT = "radmi-openi-split"
_SUBJECT_BASE, _STUDY_BASE = 10_000_000, 50_000_000
_ON_ERROR = ("raise", "skip")

# caption words -> view; a caption naming several views (the usual "PA and Lateral") leaves the view unknown
_CAPTION_VIEWS = {
    "PA": re.compile(r"\b(?:PA|postero-?anterior)\b", re.IGNORECASE),
    "AP": re.compile(r"\b(?:AP|antero-?posterior)\b", re.IGNORECASE),
    "LATERAL": re.compile(r"\blat(?:eral)?\b", re.IGNORECASE),
}


@dataclass
class OpeniReport:
    """What radmi reads from one Open-i XML file.

    Attributes:
        file: the XML file.
        number: the report number ``IUXRId`` (else the digits of the file name).
        uid: ``uId`` (``CXR<n>``), '' when absent.
        sections: the ``OPENI_SECTIONS`` that have text, whitespace collapsed to single spaces.
        images: ``(image id, caption)`` per ``parentImage``, in file order.
        mesh_major: the ``MeSH/major`` terms.
    """

    file: Path
    number: int
    uid: str
    sections: dict[str, str] = field(default_factory=dict)
    images: list[tuple[str, str]] = field(default_factory=list)
    mesh_major: list[str] = field(default_factory=list)


def _text(element: ET.Element | None) -> str:
    """An element's whole text (nested tags included), whitespace collapsed; '' for None."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def read_openi_report(path: str | PathLike) -> OpeniReport:
    """Parse one Open-i report XML file.

    Raises:
        ManifestError: naming the file: not a regular file (a dangling link, a link loop, a FIFO, socket or
            device: never opened), not well-formed XML, or no report number (no ``IUXRId`` and no digits in the
            file name).
    """
    path = Path(path)
    problem = file_problem(path, missing="XML file not found")  # from stat alone: a FIFO is never opened
    if problem is not None:
        raise ManifestError(problem, path=path)
    try:
        with open_regular_file(path, ManifestError, missing="XML file not found") as file:
            root = ET.parse(file).getroot()
    except ET.ParseError as err:
        raise ManifestError(f"malformed XML ({err})", path=path) from err
    except OSError as err:
        raise ManifestError(f"cannot read the XML file ({err.strerror})", path=path) from err
    number_element = root.find("IUXRId")
    number_text = "" if number_element is None else number_element.get("id", "").strip()
    if not number_text.isdigit():
        number_text = "".join(ch for ch in path.stem if ch.isdigit())
    if not number_text:
        raise ManifestError("no report number: no <IUXRId id=...> and no digits in the file name", path=path)
    uid = root.find("uId")
    report = OpeniReport(file=path, number=int(number_text), uid="" if uid is None else uid.get("id", ""))
    for element in root.iter("AbstractText"):
        label = element.get("Label", "").strip().upper()
        text = _text(element)
        if label in OPENI_SECTIONS and text:
            report.sections[label] = text
    for image in root.iter("parentImage"):
        image_id = image.get("id", "").strip()
        if image_id:
            report.images.append((image_id, _text(image.find("caption"))))
    report.mesh_major = [term for term in (_text(m) for m in root.iterfind("MeSH/major")) if term]
    return report


def openi_report_text(sections: dict[str, str]) -> str:
    """Sections -> the report file text: one ``NAME: text`` paragraph per section, in ``OPENI_SECTIONS`` order.

    ``parse_report`` reads the names back (``indication``, ``comparison``, ``findings``, ``impression``).
    """
    return "\n\n".join(f"{name}: {sections[name]}" for name in OPENI_SECTIONS if sections.get(name)) + "\n"


def view_from_caption(caption: str) -> str:
    """``PA``, ``AP`` or ``LATERAL`` when the caption names exactly one of them, else '' (unknown)."""
    named = [view for view, pattern in _CAPTION_VIEWS.items() if pattern.search(caption)]
    return named[0] if len(named) == 1 else ""


def _image_problem(entry: os.DirEntry) -> str | None:
    """Why a listed image is not a regular file (a link going nowhere, a FIFO, ...): from the listing's file
    type, ``stat`` only for links and special files; never opened."""
    if entry.is_file(follow_symlinks=False):
        return None
    return file_problem(entry.path)


def _report_files(reports_dir: Path) -> list[Path]:
    """The ``*.xml`` files of ``reports_dir``, in numeric order of their names (1.xml, 2.xml, ..., 10.xml)."""
    files = [Path(entry.path) for entry in os.scandir(reports_dir) if entry.name.lower().endswith(".xml")]
    return sorted(files, key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.name))


class _Skips:
    """Skipped items: ``raise`` mode raises the error, ``skip`` mode logs and records it."""

    def __init__(self, on_error: str, skipped: list[dict] | None) -> None:
        self.on_error = on_error
        self.items: list[dict] = []  # this build's, for <out stem>_skipped.csv
        self.caller = skipped

    def error(self, err: ManifestError) -> None:
        """Bad data: raised in ``raise`` mode, else logged and recorded."""
        if self.on_error == "raise":
            raise err
        self.note(err.path or "", err.reason)

    def note(self, file: str | PathLike, reason: str) -> None:
        """Always skipped (not an error): logged and recorded."""
        logger.warning("skipped %s: %s", file, reason)
        item = {"file": str(file), "reason": reason}
        self.items.append(item)
        if self.caller is not None:
            self.caller.append(item)


def build_openi_manifest(
    reports_dir: str | PathLike,
    images_dir: str | PathLike,
    out: str | PathLike,
    image_ext: str = ".png",
    val_fraction: float = OPENI_VAL_FRACTION,
    test_fraction: float = OPENI_TEST_FRACTION,
    on_error: str = "raise",
    skipped: list[dict] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Manifest of the Open-i (Indiana University) chest X-ray collection; writes it and the report files.

    Besides ``out`` it writes ``<out stem>_reports/s<study_id>.txt`` (one report per XML, radmi's layout),
    ``<out stem>_studies.csv`` (``study_id, subject_id, xml_file, uid, images``: radmi's ids back to the
    release's) and ``<out stem>_skipped.csv`` (``file, reason`` per skipped report or image). The manifest has
    the extra column ``mesh_major`` (the report's MeSH major terms, ``;``-separated); labels are blank.

    Args:
        reports_dir: the folder of report XML files (``ecgen-radiology/``).
        images_dir: the folder of images (``NLMCXR_png/``), one ``<parentImage id><image_ext>`` each. Listed
            once; no image is opened (an image that is a dangling link, a link loop or a special file is a
            bad image with that reason, like a missing one).
        out: the manifest CSV to write.
        image_ext: the image file suffix.
        val_fraction, test_fraction: fractions of the reports drawn into ``validate`` and ``test`` (by a hash
            of the report number: stable when reports are added or removed).
        on_error: ``raise`` on the first malformed XML, missing image file or duplicate id; ``skip`` logs,
            records and drops it (a report keeps its other images).
        skipped: a list to which each skipped item is appended as ``{"file", "reason"}`` (exact counts).
        progress: show a progress bar while parsing.

    Returns:
        the manifest (absolute paths), as written to ``out``; its ``attrs["dataset_roots"]`` (the images folder
        and the reports folder written) are written beside it as ``<out stem>.roots.json``.

    Raises:
        ManifestError: a folder is missing, no usable report is found, or bad data in ``raise`` mode.
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ManifestError("val_fraction and test_fraction must be >= 0 and sum to less than 1")
    reports_dir, images_dir, out = (
        Path(reports_dir).resolve(),
        Path(images_dir).resolve(),
        Path(out).resolve(),
    )
    for folder, what in ((reports_dir, "reports (XML) folder"), (images_dir, "images folder")):
        if not folder.is_dir():
            raise ManifestError(f"{what} not found", path=folder)
    skips = _Skips(on_error, skipped)
    with os.scandir(images_dir) as listing:  # one listing instead of 7,470 stats
        images = {entry.name: entry for entry in listing}
    files = _report_files(reports_dir)
    if not files:
        raise ManifestError("no *.xml report files", path=reports_dir)

    reports: list[OpeniReport] = []
    rows: list[dict] = []
    seen_numbers: dict[int, Path] = {}
    seen_images: set[str] = set()
    for file in tqdm(files, desc="reading Open-i reports", unit=" xml", disable=not progress):
        try:
            report = read_openi_report(file)
        except ManifestError as err:
            skips.error(err)
            continue
        if not (report.sections.get("FINDINGS") or report.sections.get("IMPRESSION")):
            skips.note(file, "no FINDINGS or IMPRESSION text")
            continue
        if not report.images:
            skips.note(file, "no image (parentImage) listed")
            continue
        if report.number in seen_numbers:
            skips.error(
                ManifestError(
                    f"report number {report.number} also in {seen_numbers[report.number].name}", path=file
                )
            )
            continue
        kept = []
        for image_id, caption in report.images:
            name = image_id + image_ext
            if image_id in seen_images:
                skips.error(ManifestError(f"image id {image_id} is listed by another report", path=file))
            elif name not in images:
                skips.error(
                    ManifestError(f"image file not found (listed by {file.name})", path=images_dir / name)
                )
            elif (problem := _image_problem(images[name])) is not None:
                skips.error(ManifestError(f"{problem} (listed by {file.name})", path=images_dir / name))
            else:
                kept.append((image_id, caption))
        if not kept:
            skips.note(file, "none of its images was kept")
            continue
        seen_numbers[report.number] = file
        seen_images.update(image_id for image_id, _ in kept)
        reports.append(report)
        for image_id, caption in kept:
            rows.append({"number": report.number, "dicom_id": image_id, "view": view_from_caption(caption)})
    if not rows:
        raise ManifestError("no report with findings or impression and an existing image", path=reports_dir)

    frame = pd.DataFrame(rows)
    frame["subject_id"] = (frame["number"] + _SUBJECT_BASE).astype(str)
    frame["study_id"] = (frame["number"] + _STUDY_BASE).astype(str)
    frame["image_path"] = str(images_dir) + os.sep + frame["dicom_id"] + image_ext
    report_dir = out.parent / f"{out.stem}_reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    frame["report_path"] = str(report_dir) + os.sep + "s" + frame["study_id"] + ".txt"

    numbers = np.array([r.number for r in reports], dtype=np.int64)
    draw = hash_fraction(numbers.astype(str), _SPLIT_SALT)
    split = np.where(
        draw < test_fraction, "test", np.where(draw < test_fraction + val_fraction, "validate", "train")
    )
    frame["split"] = frame["number"].map(dict(zip(numbers.tolist(), split.tolist(), strict=True)))
    frame["mesh_major"] = frame["number"].map({r.number: ";".join(r.mesh_major) for r in reports})

    for report in reports:
        (report_dir / f"s{report.number + _STUDY_BASE}.txt").write_text(
            openi_report_text(report.sections), encoding="utf-8"
        )
    pd.DataFrame(
        {
            "study_id": numbers + _STUDY_BASE,
            "subject_id": numbers + _SUBJECT_BASE,
            "xml_file": [r.file.name for r in reports],
            "uid": [r.uid for r in reports],
            "images": frame.groupby("number").size().reindex(numbers).to_numpy(),
        }
    ).to_csv(out.parent / f"{out.stem}_studies.csv", index=False)
    pd.DataFrame(skips.items, columns=["file", "reason"]).to_csv(
        out.parent / f"{out.stem}_skipped.csv", index=False
    )

    manifest = frame.assign(**empty_labels(len(frame))).loc[:, [*MANIFEST_COLUMNS, "mesh_major"]]
    manifest.attrs[DATASET_ROOTS_ATTR] = [str(images_dir), str(report_dir)]
    write_manifest(manifest, out)
    logger.info(
        "Open-i manifest: %d images of %d reports kept; %d items skipped",
        len(manifest),
        len(reports),
        len(skips.items),
    )
    return manifest
