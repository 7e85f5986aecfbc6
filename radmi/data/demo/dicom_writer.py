"""Writing a rendered radiograph as a DICOM file with the variety real CR/DX archives have.

Per image, drawn from the image's generator: CR or DX; MONOCHROME1 or MONOCHROME2; 12, 14 or 15 bits stored
(in 16 allocated); a Rescale Slope/Intercept; Window Center/Width and sometimes a VOI LUT Sequence;
ImagerPixelSpacing without PixelSpacing; and, with ``compress="mixed"``, RLE Lossless, JPEG-LS Lossless or
JPEG 2000 Lossless encoded by pydicom's encoders and the installed plug-ins. UIDs are derived from the seed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

# the OpenJPEG plug-in logs one INFO line per encoded tile; keep the progress bar readable
logging.getLogger("openjpeg").setLevel(logging.WARNING)

COMPRESSED_SYNTAXES = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
P_COMPRESSED = 0.45  # share of compressed files with compress="mixed"
DETECTOR_MM = 430.0  # the stored rows span about a 17-inch detector
_warned: set[str] = set()


@dataclass(frozen=True)
class DicomStyle:
    """How one image is encoded.

    Attributes:
        modality: ``"CR"`` or ``"DX"``.
        photometric: ``"MONOCHROME1"`` or ``"MONOCHROME2"``.
        bits_stored: 12, 14 or 15.
        slope, intercept: the Rescale Slope/Intercept (modality LUT).
        voi_lut_sequence: also write a VOI LUT Sequence (a gamma curve) next to the window.
        transfer_syntax: the transfer syntax UID to write.
    """

    modality: str
    photometric: str
    bits_stored: int
    slope: float
    intercept: float
    voi_lut_sequence: bool
    transfer_syntax: str

    @staticmethod
    def sample(rng: np.random.Generator, compress: str) -> DicomStyle:
        slope, intercept = [(1.0, 0.0), (1.0, -1024.0), (0.5, 0.0), (2.0, -100.0)][int(rng.integers(4))]
        # a VOI LUT table is indexed by non-negative integer modality values: only with the identity rescale
        use_lut = bool(slope == 1.0 and intercept == 0.0 and rng.random() < 0.5)
        syntax = ExplicitVRLittleEndian
        if compress == "mixed" and rng.random() < P_COMPRESSED:
            syntax = COMPRESSED_SYNTAXES[int(rng.integers(len(COMPRESSED_SYNTAXES)))]
        return DicomStyle(
            modality=str(rng.choice(["CR", "DX"])),
            photometric=str(rng.choice(["MONOCHROME1", "MONOCHROME2"], p=[0.4, 0.6])),
            bits_stored=int(rng.choice([12, 14, 15])),
            slope=slope,
            intercept=intercept,
            voi_lut_sequence=use_lut,
            transfer_syntax=syntax,
        )


def to_stored_values(image: np.ndarray, style: DicomStyle) -> np.ndarray:
    """Quantize a ``rows x cols`` image in [0, 1] (bright = dense) to stored values (uint16).

    The values span 3%..97% of the BitsStored range; MONOCHROME1 stores dense as low values.
    """
    top = 2**style.bits_stored - 1
    values = np.rint((0.03 + 0.94 * np.clip(image, 0.0, 1.0)) * top).astype(np.uint16)
    return (top - values).astype(np.uint16) if style.photometric == "MONOCHROME1" else values


def _window(style: DicomStyle) -> tuple[float, float]:
    """Window centre and width (modality units) covering the stored range used by ``to_stored_values``."""
    top = 2**style.bits_stored - 1
    low, high = 0.02 * top * style.slope + style.intercept, 0.98 * top * style.slope + style.intercept
    return round((low + high) / 2.0, 1), round(high - low, 1)


def _voi_lut_item(style: DicomStyle) -> Dataset:
    """A VOI LUT Sequence item: a gentle gamma curve over every modality value of the stored range."""
    entries = 2**style.bits_stored
    first = int(style.intercept)
    x = np.arange(entries, dtype=np.float64) / (entries - 1)
    curve = np.rint(x**0.8 * (2**16 - 1)).astype(np.uint16)
    item = Dataset()
    # a descriptor entry count of 65536 is written as 0 (DICOM PS3.3 C.11.2.1.1)
    item.LUTDescriptor = [entries if entries < 65536 else 0, first, 16]
    item.LUTExplanation = "GAMMA 0.8"
    # OW: a 15-bit table (64 KiB) is too long for an explicit-VR US element
    item.add_new(0x00283006, "OW", curve.astype("<u2").tobytes())
    return item


def _compress(ds: Dataset, pixels: np.ndarray, syntax: str) -> str:
    """Compress in place with pydicom's encoder for ``syntax``; fall back to uncompressed if unavailable."""
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        if syntax not in _warned:
            _warned.add(syntax)
            missing = "; ".join(encoder.missing_dependencies)
            warnings.warn(
                f"no encoder for {syntax.name} ({missing}); writing those files uncompressed", stacklevel=2
            )
        return ExplicitVRLittleEndian
    ds.compress(syntax, pixels, generate_instance_uid=False)  # keep the seed-derived UID
    return syntax


def build_dataset(
    pixels: np.ndarray,
    style: DicomStyle,
    *,
    seed: int,
    study_id: str,
    dicom_id: str,
    patient_name: str,
    patient_id: str,
    view_position: str,
    study_date: str,
) -> Dataset:
    """A complete DICOM dataset (with file meta) for one stored ``rows x cols`` uint16 image.

    UIDs are ``generate_uid(entropy_srcs=...)`` of the seed and the study/dicom ids, so the same seed gives
    the same UIDs. The patient name/ID are synthetic and never appear in a report.
    """
    rows, cols = pixels.shape
    sop_class = (
        ComputedRadiographyImageStorage if style.modality == "CR" else DigitalXRayImageStorageForPresentation
    )
    sop_uid = generate_uid(entropy_srcs=["radmi-demo", str(seed), dicom_id])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["radmi-demo", str(seed), "study", study_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["radmi-demo", str(seed), "series", dicom_id])
    ds.Modality = style.modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    ds.StudyID = study_id[-6:]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    # rows run toward the patient's left on a frontal view (patient's right on the viewer's left) and toward
    # posterior on a left lateral; columns run toward the feet
    ds.PatientOrientation = ["P", "F"] if view_position in ("LATERAL", "LL") else ["L", "F"]
    if style.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    spacing = round(DETECTOR_MM / rows, 4)
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = style.photometric
    ds.BitsAllocated = 16
    ds.BitsStored = style.bits_stored
    ds.HighBit = style.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = style.slope
    ds.RescaleIntercept = style.intercept
    ds.RescaleType = "US"
    center, width = _window(style)
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.VOILUTFunction = "LINEAR"
    if style.voi_lut_sequence:
        ds.VOILUTSequence = [_voi_lut_item(style)]
    ds.PixelData = pixels.astype("<u2").tobytes()
    if style.transfer_syntax != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = _compress(ds, pixels, style.transfer_syntax)
    return ds


def write_dicom(path: Path, ds: Dataset) -> None:
    """Save ``ds`` as a DICOM Part 10 file (preamble + file meta), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
