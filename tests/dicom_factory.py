"""Write small DICOM radiographs with known pixel values, for tests.

Everything is built with pydicom: the header as a ``FileDataset``, compression with ``Dataset.compress`` (RLE,
JPEG-LS, JPEG 2000 through the installed encoder plug-ins) and, for JPEG baseline (which pydicom cannot
encode), a Pillow-encoded JPEG encapsulated with ``pydicom.encaps.encapsulate``.

Usage::

    stored = known_pixels(rows=67, cols=45, bits_stored=12)
    ds = xray_dataset(stored, bits_stored=12, photometric="MONOCHROME1", window=(2000, 1000))
    path = write_dicom(tmp_path / "a.dcm", ds, transfer_syntax=JPEGLSLossless)
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate

#: Patient identifiers written into every file, so tests can check they never reach the meta.
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-0042-SECRET"

#: Transfer syntaxes whose encoders pydicom 3 has with the project's plug-ins, and whether they are lossless.
LOSSLESS_SYNTAXES = (uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless)


def known_pixels(
    rows: int = 67, cols: int = 45, bits_stored: int = 12, signed: bool = False, seed: int = 0
) -> np.ndarray:
    """rows x cols stored values spanning the whole BitsStored range (both ends included), int16/uint16."""
    rng = np.random.default_rng(seed)
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    values = rng.integers(low, high, size=(rows, cols), endpoint=True)
    values.flat[0], values.flat[-1] = low, high
    return values.astype(np.int16 if signed else np.uint16)


def _lut_item(data: Sequence[int], first_mapped: int, bits: int) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data) if len(data) < 2**16 else 0, int(first_mapped), int(bits)]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return item


def xray_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    bits_allocated: int | None = None,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    voi_function: str | None = None,
    voi_lut: tuple[Sequence[int], int, int] | None = None,
    modality_lut: tuple[Sequence[int], int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = (0.139, 0.143),
    view_position: str = "PA",
    modality: str = "DX",
    samples_per_pixel: int = 1,
    frames: int | None = None,
) -> FileDataset:
    """A DX radiograph header + native (uncompressed) pixel data holding exactly ``pixels``.

    Args:
        pixels: rows x cols (or frames x rows x cols, or rows x cols x 3 with ``samples_per_pixel=3``) values.
        rescale: ``(slope, intercept)``.
        window: ``(center, width)`` or a list of them (multi-valued Window Center/Width).
        voi_lut / modality_lut: ``(entries, first_mapped, bits_per_entry)`` for a VOI / Modality LUT Sequence.
        frames: write NumberOfFrames (pixels must then be frames x rows x cols).
    """
    bits_allocated = bits_allocated or (8 if bits_stored <= 8 else 16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid.generate_uid()
    ds.SeriesInstanceUID = uid.generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = modality
    ds.ViewPosition = view_position
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = photometric
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples_per_pixel > 1 else pixels.shape[-2:]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window is not None:
        pairs = [window] if np.isscalar(window[0]) else list(window)
        ds.WindowCenter = [float(c) for c, _ in pairs] if len(pairs) > 1 else float(pairs[0][0])
        ds.WindowWidth = [float(w) for _, w in pairs] if len(pairs) > 1 else float(pairs[0][1])
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        ds.VOILUTSequence = [_lut_item(*voi_lut)]
    if modality_lut is not None:
        ds.ModalityLUTSequence = [_lut_item(*modality_lut)]
        ds.ModalityLUTSequence[0].ModalityLUTType = "US"
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype[bits_allocated, signed])).tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    return ds


def sr_dataset() -> FileDataset:
    """A structured-report-like object: valid DICOM, Modality SR, no PixelData."""
    ds = xray_dataset(known_pixels(4, 4))
    for keyword in (
        "PixelData",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "SamplesPerPixel",
    ):
        delattr(ds, keyword)
    ds.Modality = "SR"
    ds.SOPClassUID = uid.BasicTextSRStorage
    return ds


def jpeg_baseline_dataset(pixels: np.ndarray, quality: int = 95, **header) -> FileDataset:
    """An 8-bit JPEG baseline (process 1) radiograph: Pillow encodes, pydicom encapsulates."""
    ds = xray_dataset(pixels.astype(np.uint8), bits_stored=8, **header)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="JPEG", quality=quality)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    return ds


def jpeg_lossless_dataset(pixels: np.ndarray, bits_stored: int = 12, **header) -> FileDataset:
    """A JPEG lossless (process 14, SV1) radiograph; the codestream comes from the test encoder."""
    from jpeg_lossless_encoder import encode_jpeg_lossless

    ds = xray_dataset(pixels, bits_stored=bits_stored, **header)
    ds.PixelData = encapsulate([encode_jpeg_lossless(pixels, precision=bits_stored)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = uid.JPEGLosslessSV1
    return ds


def jpeg_bytes(path: Path | str) -> bytes:
    """The JPEG codestream of a file written from :func:`jpeg_baseline_dataset` (to decode it with Pillow)."""
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(path)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def write_dicom(
    path: Path | str,
    ds: FileDataset,
    transfer_syntax: str | None = None,
    gzipped: bool = False,
    **compress_kwargs,
) -> Path:
    """Write ``ds`` to ``path``, compressed to ``transfer_syntax`` via ``Dataset.compress`` if given.

    ``compress_kwargs`` go to ``Dataset.compress`` (e.g. ``jls_error=2``, ``j2k_cr=[10]``). ``gzipped`` writes a
    gzip stream (as MIMIC-CXR ``.dcm.gz``).
    """
    path = Path(path)
    if transfer_syntax is not None and transfer_syntax != ds.file_meta.TransferSyntaxUID:
        ds.compress(transfer_syntax, generate_instance_uid=False, **compress_kwargs)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path
