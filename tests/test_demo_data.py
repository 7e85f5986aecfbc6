"""The synthetic demo dataset: determinism, MIMIC-CXR layout, CSVs, report/image agreement, ground-truth boxes."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from radmi.data.demo import (
    Acquisition,
    Finding,
    Patient,
    generate,
    layout,
    render,
    sentence_indices,
    write_report,
)
from radmi.data.demo import findings as F
from radmi.data.demo.dicom_writer import DicomStyle, to_stored_values
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.reports import parse_report, report_sentences
from radmi.errors import RadmiError

STUDIES, SIZE, SEED = 8, 128, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    generate(out, STUDIES, seed=SEED, size=SIZE, views="both", compress="mixed", progress=False)
    return out


def _digest(root: Path) -> dict[str, str]:
    """sha256 of the raw bytes of every file under ``root``, by relative path."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


def test_same_seed_gives_identical_bytes(dataset, tmp_path):
    again = tmp_path / "again"
    generate(again, STUDIES, seed=SEED, size=SIZE, views="both", compress="mixed", workers=2, progress=False)
    assert _digest(dataset) == _digest(again)  # also: the worker count does not change a byte


def test_other_seed_differs(dataset, tmp_path):
    other = tmp_path / "other"
    generate(other, 2, seed=SEED + 1, size=SIZE, progress=False)
    first = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str)
    assert set(pd.read_csv(other / layout.RECORD_LIST, dtype=str).dicom_id).isdisjoint(first.dicom_id)


def test_refuses_non_empty_output(dataset):
    with pytest.raises(RadmiError, match="not empty"):
        generate(dataset, 1, progress=False)


def test_layout_and_id_formats(dataset):
    records = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str)
    assert list(records.columns) == ["subject_id", "study_id", "dicom_id", "path"]
    assert records.subject_id.str.fullmatch(r"1\d{7}").all()
    assert records.study_id.str.fullmatch(r"5\d{7}").all()
    assert records.dicom_id.str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all()
    for row in records.itertuples():
        expected = f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.dcm"
        assert row.path == expected and (dataset / row.path).is_file()
        assert (dataset / f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}.txt").is_file()
    studies = records.groupby("subject_id").study_id.nunique()
    assert studies.max() >= 2  # several studies per subject
    assert records.study_id.nunique() == STUDIES


def test_root_csvs(dataset):
    metadata = pd.read_csv(dataset / layout.METADATA, dtype={"subject_id": str, "study_id": str})
    assert list(metadata.columns) == list(layout.METADATA_COLUMNS)
    assert set(metadata.ViewPosition) <= {"PA", "AP", "LATERAL", "LL"}
    assert metadata.ViewPosition.isin(["LATERAL", "LL"]).any()  # views="both" gives laterals
    split = pd.read_csv(dataset / layout.SPLIT, dtype=str)
    assert list(split.columns) == ["dicom_id", "study_id", "subject_id", "split"]
    assert set(split.split) <= {"train", "validate", "test"}
    assert (split.groupby("subject_id").split.nunique() == 1).all()  # split by subject
    chexpert = pd.read_csv(dataset / layout.CHEXPERT)
    assert list(chexpert.columns) == ["subject_id", "study_id", *CHEXPERT_LABELS]
    values = chexpert[list(CHEXPERT_LABELS)].to_numpy()
    assert np.isin(values[~np.isnan(values)], [1.0, 0.0, -1.0]).all()
    assert len(chexpert) == STUDIES
    edema = pd.read_csv(dataset / layout.EDEMA_SEVERITY)
    assert list(edema.columns) == ["subject_id", "study_id", "edema_severity"]
    assert edema.edema_severity.between(0, 3).all()
    # edema severity > 0 exactly where Edema is drawn (1 or hedged -1)
    merged = chexpert.merge(edema, on=["subject_id", "study_id"])
    assert ((merged.edema_severity > 0) == merged.Edema.isin([1.0, -1.0])).all()
    locations = pd.read_csv(dataset / layout.FINDING_LOCATIONS, dtype={"dicom_id": str})
    assert list(locations.columns) == list(layout.LOCATION_COLUMNS)
    assert set(locations.dicom_id) <= set(metadata.dicom_id)
    sizes = metadata.set_index("dicom_id")[["Rows", "Columns"]]
    joined = locations.join(sizes, on="dicom_id")
    assert ((joined.x0 >= 0) & (joined.x0 < joined.x1) & (joined.x1 <= joined.Columns)).all()
    assert ((joined.y0 >= 0) & (joined.y0 < joined.y1) & (joined.y1 <= joined.Rows)).all()


def test_csvs_are_gzip(dataset):
    with gzip.open(dataset / layout.CHEXPERT, "rt") as handle:
        assert handle.readline().startswith("subject_id,study_id,No Finding")


def _location_words(finding_row) -> list[re.Pattern]:
    side, zone, label = finding_row.side, finding_row.zone, finding_row.label
    patterns = []
    if side in ("right", "left"):
        patterns.append(re.compile(side, re.I))
    elif side == "bilateral":
        patterns.append(re.compile(r"bilateral|bibasilar|both", re.I))
    if label in (F.CONSOLIDATION, F.LUNG_OPACITY, F.LUNG_LESION, F.PNEUMOTHORAX, F.EFFUSION, F.ATELECTASIS):
        zone_words = {
            "upper": r"upper|apex|apical",
            "mid": r"\bmid\b|middle",
            "lower": r"lower|base|basilar|costophrenic",
        }
        patterns.append(re.compile(zone_words[zone], re.I))
    if label == F.CARDIOMEGALY:
        patterns.append(re.compile(r"heart|cardi", re.I))
    if label == F.ENLARGED_CM:
        patterns.append(re.compile(r"mediastin", re.I))
    if label == F.EDEMA:
        patterns.append(re.compile(r"perihilar", re.I))
    return patterns


_KEYWORDS = {
    F.CARDIOMEGALY: r"cardiomegaly|heart is|cardiac silhouette",
    F.ENLARGED_CM: r"mediastinum",
    F.EFFUSION: r"pleural effusion",
    F.PNEUMOTHORAX: r"pneumothorax",
    F.CONSOLIDATION: r"consolidation",
    F.LUNG_OPACITY: r"opacity",
    F.ATELECTASIS: r"atelectasis",
    F.LUNG_LESION: r"nodule",
    F.EDEMA: r"edema|vascular congestion",
    F.SUPPORT_DEVICES: r"tube|catheter|line|pacemaker",
}


def test_report_sentence_names_each_finding_and_its_location(dataset):
    locations = pd.read_csv(dataset / layout.FINDING_LOCATIONS, dtype={"subject_id": str, "study_id": str})
    assert (locations.sentence_index >= 0).all()
    for row in locations.itertuples():
        text = (dataset / layout.report_path(row.subject_id, row.study_id)).read_text()
        sentence = report_sentences(text)[row.sentence_index]
        assert re.search(_KEYWORDS[row.label], sentence, re.I), (row.label, sentence)
        for pattern in _location_words(row):
            assert pattern.search(sentence), (row.label, row.side, row.zone, sentence)
        if row.label in (F.EFFUSION, F.PNEUMOTHORAX):
            assert F.SIZE_WORDS[row.severity] in sentence.lower()
        if row.label == F.LUNG_LESION:
            assert f"{F.nodule_diameter_cm(row.severity)} cm" in sentence


def test_reports_are_mimic_shaped_and_never_name_the_patient(dataset):
    records = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str)
    for row in records.drop_duplicates("study_id").itertuples():
        text = (dataset / layout.report_path(row.subject_id, row.study_id)).read_text()
        assert "FINAL REPORT" in text and "___" in text
        assert max(len(line) for line in text.splitlines()) <= 79
        sections = parse_report(text)
        assert sections["impression"]
        ds = pydicom.dcmread(dataset / row.path, stop_before_pixels=True)
        assert str(ds.PatientID) not in text and str(ds.PatientName).split("^")[1] not in text
        assert row.subject_id not in text


def test_report_variants_over_many_studies():
    """Hedges, negations, IMPRESSION-only reports, addenda and header typos all occur, and parse."""
    texts, hedged = [], 0
    for i in range(600):
        rng = np.random.default_rng([1, i])
        study = F.sample_findings(rng)
        report = write_report(study, rng)
        texts.append(report.text)
        hedged += any(f.hedged for f in study.findings)
        # every finding's sentence survives wrapping, sectioning and splitting (header typos included)
        assert min(sentence_indices(report.text, report.finding_sentences), default=0) >= 0
        assert max(len(line) for line in report.text.splitlines()) <= 79
    assert hedged > 10
    assert sum(t.lstrip().startswith("ADDENDUM") for t in texts) > 3
    assert sum("FINDINGS:" not in t and "FINDNGS:" not in t for t in texts) > 10  # IMPRESSION-only
    assert sum("IMPRESSON:" in t or "FINDNGS:" in t for t in texts) > 3
    assert sum(re.search(r"\bNo pleural effusion\b", t) is not None for t in texts) > 30
    assert all(report_sentences(t) for t in texts)


def test_prevalences_are_realistic():
    counts = dict.fromkeys(F.DRAWN_LABELS, 0)
    normal, n = 0, 2000
    for i in range(n):
        study = F.sample_findings(np.random.default_rng([2, i]))
        for label in {f.label for f in study.findings}:
            counts[label] += 1
        normal += study.is_normal
    for label, count in counts.items():
        assert 0.08 <= count / n <= 0.4, (label, count / n)
    assert 0.2 <= normal / n <= 0.45


def test_loads_through_pydicom_and_monai(dataset):
    from monai.transforms import LoadImage

    records = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str)
    metadata = pd.read_csv(dataset / layout.METADATA, dtype={"dicom_id": str}).set_index("dicom_id")
    syntaxes = set()
    loader = LoadImage(reader="PydicomReader", image_only=True)
    for row in records.itertuples():
        ds = pydicom.dcmread(dataset / row.path)
        syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
        pixels = ds.pixel_array
        assert pixels.shape == (metadata.Rows[row.dicom_id], metadata.Columns[row.dicom_id])
        assert pixels.max() < 2**ds.BitsStored
        assert "ImagerPixelSpacing" in ds and "PixelSpacing" not in ds
        image = loader(str(dataset / row.path))
        # MONAI's stock reader returns (cols, rows): the transpose of the stored pixels, modality LUT applied
        np.testing.assert_allclose(np.asarray(image).squeeze().T, apply_modality_lut(pixels, ds), rtol=1e-6)
    assert len(syntaxes) >= 2  # compress="mixed" writes more than one transfer syntax


def test_loads_through_radmi_transform(dataset):
    dicom = pytest.importorskip("radmi.transforms.dicom")
    records = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str)
    transform = dicom.LoadXRayDicomd(keys="image")
    for row in records.head(6).itertuples():
        image = transform({"image": str(dataset / row.path)})["image"]
        ds = pydicom.dcmread(dataset / row.path, stop_before_pixels=True)
        assert tuple(image.shape) == (1, ds.Rows, ds.Columns)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        # bright = dense: the spine column in the middle is brighter than the image corners
        centre = float(image[0, :, ds.Columns // 2 - 2 : ds.Columns // 2 + 2].mean())
        assert centre > float(image[0, :8, :8].mean())


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_stored_values_encode_the_image(photometric):
    image = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    style = DicomStyle("CR", photometric, 12, 1.0, 0.0, False, pydicom.uid.ExplicitVRLittleEndian)
    stored = to_stored_values(image, style).astype(np.int64)
    expected = np.rint((0.03 + 0.94 * image) * 4095).astype(np.int64)
    np.testing.assert_array_equal(stored, expected if photometric == "MONOCHROME2" else 4095 - expected)


ALL_FINDINGS = [
    Finding(F.CARDIOMEGALY, "midline", "mid", 3),
    Finding(F.EFFUSION, "right", "lower", 2),
    Finding(F.PNEUMOTHORAX, "left", "upper", 2),
    Finding(F.CONSOLIDATION, "right", "upper", 3),
    Finding(F.LUNG_OPACITY, "left", "lower", 2),
    Finding(F.ATELECTASIS, "left", "lower", 2),
    Finding(F.LUNG_LESION, "right", "mid", 3),
    Finding(F.EDEMA, "bilateral", "mid", 3),
    Finding(F.SUPPORT_DEVICES, "midline", "upper", device="endotracheal tube"),
    Finding(F.SUPPORT_DEVICES, "left", "upper", device="pacemaker"),
    Finding(F.ENLARGED_CM, "midline", "upper", 2),
]


@pytest.mark.parametrize("view", ["frontal", "lateral"])
@pytest.mark.parametrize("case", range(2))
def test_finding_effect_lies_inside_its_box(view, case):
    """Image with a finding minus the same phantom without it: the change is inside the finding's box."""
    rng = np.random.default_rng([view == "lateral", case])
    patient = Patient.sample(rng)
    # strong rotation and a non-square stored size, so a box that ignored the geometry would miss
    acquisition = Acquisition(200 + 40 * case, 170, rotation=0.1 * (1 - 2 * case), zoom=0.95 + 0.1 * case,
                              shift=(0.02, -0.03), gain=1.2, noise=0.01, gradient=0.02)  # fmt: skip
    full = render(patient, ALL_FINDINGS, acquisition, view, seed=case)
    for k, finding in enumerate(ALL_FINDINGS):
        without = render(patient, ALL_FINDINGS, acquisition, view, seed=case, omit=[k])
        assert without.boxes[k] is None
        change = np.abs(full.image - without.image)
        assert change.sum() > 0, finding
        x0, y0, x1, y1 = full.boxes[k]
        inside = change[y0:y1, x0:x1].sum() / change.sum()
        assert inside > 0.97, (finding.label, inside)
        # the box is tight: the change is not spread thinly over it (a whole-image box would fail this)
        assert (x1 - x0) * (y1 - y0) < 0.6 * change.size, finding.label
        rows, cols = np.nonzero(change > 0.2 * change.max())
        assert x0 <= cols.min() and cols.max() < x1 and y0 <= rows.min() and rows.max() < y1


def test_sides_follow_radiological_convention():
    """The patient's right lung is on the image's left in a frontal view (box centre in the left half)."""
    patient = Patient.sample(np.random.default_rng(0))
    acquisition = Acquisition(200, 200, 0.0, 1.0, (0.0, 0.0), 1.2, 0.0, 0.0)
    for side, left_half in (("right", True), ("left", False)):
        box = render(patient, [Finding(F.PNEUMOTHORAX, side, "upper", 2)], acquisition, "frontal", 0).boxes[0]
        assert ((box[0] + box[2]) / 2 < 100) == left_half


def test_big_findings_are_visible_at_256_px():
    """Mean intensity change inside the box of the big findings is well above the noise level."""
    patient = Patient.sample(np.random.default_rng(3))
    acquisition = Acquisition(256, 230, 0.05, 1.0, (0.0, 0.0), 1.15, 0.01, 0.0)
    for finding in [Finding(F.CARDIOMEGALY, "midline", "mid", 1), Finding(F.EFFUSION, "left", "lower", 1),
                    Finding(F.PNEUMOTHORAX, "right", "upper", 1)]:  # fmt: skip
        full = render(patient, [finding], acquisition, "frontal", 1)
        without = render(patient, [finding], acquisition, "frontal", 1, omit=[0])
        x0, y0, x1, y1 = full.boxes[0]
        change = np.abs(full.image - without.image)[y0:y1, x0:x1]
        assert np.percentile(change, 90) > 3 * acquisition.noise, finding.label


def test_draws_boxes_into_png(dataset, tmp_path):
    from PIL import Image, ImageDraw

    locations = pd.read_csv(dataset / layout.FINDING_LOCATIONS, dtype={"dicom_id": str})
    records = pd.read_csv(dataset / layout.RECORD_LIST, dtype=str).set_index("dicom_id")
    tiles = []
    for dicom_id, rows in list(locations.groupby("dicom_id"))[:4]:
        ds = pydicom.dcmread(dataset / records.path[dicom_id])
        pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            pixels = pixels.max() - pixels
        gray = ((pixels - pixels.min()) / np.ptp(pixels) * 255).astype(np.uint8)
        tile = Image.fromarray(gray).convert("RGB")
        draw = ImageDraw.Draw(tile)
        for row in rows.itertuples():
            draw.rectangle([row.x0, row.y0, row.x1 - 1, row.y1 - 1], outline=(255, 0, 0))
        tiles.append(np.asarray(tile.resize((SIZE, SIZE))))
    sheet = Image.fromarray(np.concatenate(tiles, axis=1))
    path = tmp_path / "boxes.png"
    sheet.save(path)
    reread = np.asarray(Image.open(path))
    assert reread.shape == (SIZE, SIZE * len(tiles), 3)
    red = (reread[..., 0] == 255) & (reread[..., 1] == 0)
    assert red.any()
