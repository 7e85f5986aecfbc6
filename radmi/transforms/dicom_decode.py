"""DICOM radiograph header reading and pixel decoding with pydicom and NumPy only (no torch, no MONAI).

The MONAI transforms that wrap these functions are in :mod:`radmi.transforms.dicom`, which documents the pixel
pipeline. Keeping this module free of torch and MONAI lets the manifest builders read headers without paying
for those imports (about 5-9 s on a 2-core machine).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Sequence
from os import PathLike
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi, apply_voi_lut, apply_windowing
from pydicom.pixels.decoders.base import get_decoder

from radmi.errors import DicomError, MissingCodecError

__all__ = [
    "CODEC_PACKAGES",
    "VoiOption",
    "read_dicom_header",
    "read_xray_dicom",
    "read_xray_dicom_header",
]

#: ``"auto"`` | ``"none"`` | ``"first_window"`` | ``(center, width)`` in modality units (after rescale).
VoiOption = str | tuple[float, float]

#: Transfer syntax -> the pip packages that provide a decoder for it (named in ``MissingCodecError``).
CODEC_PACKAGES: dict[str, str] = {
    uid.JPEGBaseline8Bit: "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    uid.JPEGExtended12Bit: "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    uid.JPEGLossless: "pylibjpeg pylibjpeg-libjpeg",
    uid.JPEGLosslessSV1: "pylibjpeg pylibjpeg-libjpeg",
    uid.JPEGLSLossless: "pyjpegls (or pylibjpeg pylibjpeg-libjpeg)",
    uid.JPEGLSNearLossless: "pyjpegls (or pylibjpeg pylibjpeg-libjpeg)",
    uid.JPEG2000Lossless: "pylibjpeg pylibjpeg-openjpeg (or pillow)",
    uid.JPEG2000: "pylibjpeg pylibjpeg-openjpeg (or pillow)",
    uid.HTJ2KLossless: "pylibjpeg pylibjpeg-openjpeg",
    uid.HTJ2KLosslessRPCL: "pylibjpeg pylibjpeg-openjpeg",
    uid.HTJ2K: "pylibjpeg pylibjpeg-openjpeg",
    uid.RLELossless: "pylibjpeg pylibjpeg-rle",
}

_GZIP_MAGIC = b"\x1f\x8b"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# pixel dtypes up to 16 bits go through a value table; wider ones are mapped pixel by pixel
_TABLE_MAX_BYTES = 2


# --------------------------------------------------------------------------------------------- reading
def _read_dataset(
    path: str | PathLike, *, header_only: bool = False, tags: Sequence[str] | None = None
) -> Dataset:
    """Read one DICOM file (plain or gzip-compressed) with pydicom, turning failures into ``DicomError``.

    ``header_only`` defers the pixel bytes: pydicom seeks past them (the element still shows as present).
    ``tags`` reads only those header elements and stops before the pixels (a gzip file is decompressed only
    up to there).
    """
    try:
        with open(path, "rb") as file:
            if file.read(2) != _GZIP_MAGIC:
                file.seek(0)
                return _parse(file, path, header_only, tags)
            file.seek(0)
            if tags is not None:
                with gzip.GzipFile(fileobj=file) as stream:
                    return _parse(stream, path, header_only, tags)
            compressed = file.read()
    except OSError as err:
        raise DicomError(f"cannot read the file: {err.strerror or err}", path=path) from err
    try:  # MIMIC-CXR distributions ship .dcm.gz
        return _parse(io.BytesIO(gzip.decompress(compressed)), path, header_only)
    except (EOFError, OSError, zlib.error) as err:
        raise DicomError(f"truncated or corrupt gzip file: {err}", path=path) from err


def _parse(
    source: BinaryIO, path: str | PathLike, header_only: bool, tags: Sequence[str] | None = None
) -> Dataset:
    try:
        if tags is not None:
            return pydicom.dcmread(source, stop_before_pixels=True, specific_tags=list(tags))
        return pydicom.dcmread(source, defer_size=1024 if header_only else None)
    except InvalidDicomError as err:
        raise DicomError(
            "not a DICOM file (no 'DICM' marker after the 128-byte preamble)", path=path
        ) from err
    except Exception as err:  # pydicom raises EOFError, struct.error, ValueError, ... on cut-off files
        raise DicomError(f"truncated or corrupt DICOM file: {type(err).__name__}: {err}", path=path) from err


def _check_single_frame_greyscale(ds: Dataset, path: str | PathLike) -> None:
    """Raise ``DicomError`` unless ``ds`` holds one greyscale frame."""
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        what = f"has {other[0]} instead of integer PixelData" if other else "has no PixelData"
        raise DicomError(f"{what} (Modality {ds.get('Modality', '?')}): not an image", path=path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DicomError(
            f"multi-frame image ({frames} frames); only single-frame radiographs are read", path=path
        )
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if samples != 1 or photometric not in _MONOCHROME:
        raise DicomError(
            f"colour image (SamplesPerPixel {samples}, PhotometricInterpretation {photometric or 'missing'}); "
            "a radiograph must be MONOCHROME1 or MONOCHROME2",
            path=path,
        )


def _float_tuple(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in (value if isinstance(value, Sequence) else [value]))


def _xray_meta(ds: Dataset, path: str | PathLike) -> dict[str, Any]:
    """The meta keys radmi keeps: geometry, photometric and UIDs. Never patient name or ID."""
    spacing, source = np.full(2, np.nan), "none"
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):  # CR/DX usually carry only ImagerPixelSpacing
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            spacing, source = np.asarray(_float_tuple(value), dtype=np.float64), keyword
            break
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID", "") if hasattr(ds, "file_meta") else ""
    return {
        "filename_or_obj": str(path),
        "spacing": spacing,  # mm, (between rows, between columns); NaN when the file has none
        "spacing_source": source,
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "original_shape": np.asarray([int(ds.Rows), int(ds.Columns)]),
        "spatial_shape": np.asarray([int(ds.Rows), int(ds.Columns)]),
        "original_channel_dim": 0,
        "bits_stored": int(ds.get("BitsStored", ds.get("BitsAllocated", 0))),
        "view_position": str(ds.get("ViewPosition", "") or ""),
        "modality": str(ds.get("Modality", "") or ""),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "transfer_syntax_uid": str(transfer_syntax),
    }


def read_xray_dicom_header(path: str | PathLike) -> dict[str, Any]:
    """Check that ``path`` is a single-frame greyscale DICOM image without decoding its pixels.

    Cheap enough for ``radmi manifest check`` over a whole archive. A truncated *pixel* payload is only found
    by decoding (:func:`read_xray_dicom`).

    Returns:
        the meta dict of :class:`LoadXRayDicom` (spacing in mm, original shape, UIDs, ...).

    Raises:
        DicomError: not DICOM, truncated header, no PixelData, multi-frame or colour.
        MissingCodecError: no installed plug-in decodes the file's transfer syntax.
    """
    ds = _read_dataset(path, header_only=True)
    _check_single_frame_greyscale(ds, path)
    _check_codec(ds, path)
    return _xray_meta(ds, path)


def read_dicom_header(path: str | PathLike, tags: Sequence[str]) -> Dataset:
    """The named header elements of any DICOM file (plain or gzip), without reading or checking pixels.

    For indexing an archive (``radmi manifest build-folder`` reads study UIDs and views with it); unlike
    :func:`read_xray_dicom_header` it accepts non-image objects and may return patient identifiers, so callers
    must not log what it returns.

    Args:
        path: the file.
        tags: DICOM keywords to read, e.g. ``("StudyInstanceUID", "ViewPosition")``; absent ones stay absent.

    Raises:
        DicomError: naming the file, when it is unreadable, not DICOM, or cut off inside the header.
    """
    return _read_dataset(path, header_only=True, tags=tags)


# --------------------------------------------------------------------------------------------- decoding
def _check_codec(ds: Dataset, path: str | PathLike) -> None:
    """Raise ``MissingCodecError`` naming the pip package when no plug-in can decode the transfer syntax."""
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if transfer_syntax is None:
        return  # pydicom guesses the encoding of files without meta; decoding will tell
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as err:
        raise DicomError(
            f"transfer syntax {transfer_syntax} ({transfer_syntax.name}) has no pixel decoder in pydicom",
            path=path,
        ) from err
    if not decoder.is_available:
        package = CODEC_PACKAGES.get(transfer_syntax, "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        raise MissingCodecError(
            f"transfer syntax '{transfer_syntax.name}' ({transfer_syntax}) needs a pixel decoder that is not "
            f"installed; install one with: pip install {package}",
            path=path,
        )


def _decode_stored_values(ds: Dataset, path: str | PathLike) -> np.ndarray:
    """The stored pixel values, rows x cols, in the dtype pydicom decodes them to."""
    _check_codec(ds, path)
    try:
        pixels = ds.pixel_array
    except Exception as err:  # short PixelData -> ValueError, broken codestream -> RuntimeError, ...
        raise DicomError(f"cannot decode the pixel data: {type(err).__name__}: {err}", path=path) from err
    if pixels.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomError(f"decoded pixels have shape {pixels.shape}, expected (Rows, Columns)", path=path)
    return pixels


# --------------------------------------------------------------------------------------------- value pipeline
def _stored_range(ds: Dataset) -> tuple[int, int]:
    """Smallest and largest storable value given BitsStored and PixelRepresentation."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _voi_lut_output_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest entry of the first VOI LUT (the entries, not the descriptor's bit depth, which
    is often misreported, e.g. 16 for 12-bit data)."""
    first_mapped, entries = int(ds.VOILUTSequence[0].LUTDescriptor[1]), ds.VOILUTSequence[0].LUTDescriptor[0]
    data = apply_voi(np.arange(entries or 2**16) + first_mapped, ds, index=0)
    return float(data.min()), float(data.max())


def _modality_output_range(ds: Dataset) -> tuple[float, float]:
    """Range of the modality LUT's output over every storable value (low, high), as pydicom defines it."""
    if ds.get("ModalityLUTSequence"):
        item = ds.ModalityLUTSequence[0]
        data = apply_modality_lut(np.arange(item.LUTDescriptor[0] or 2**16) + int(item.LUTDescriptor[1]), ds)
        return float(data.min()), float(data.max())
    low, high = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return float(low), float(high)


def _window_output_range(ds: Dataset) -> tuple[float, float]:
    """pydicom's ``apply_windowing`` output: below the window -> first value, above -> second value."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
    low, high = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = low * slope + intercept, high * slope + intercept  # not sorted: that is pydicom's mapping
    return float(low), float(high)


def _has_window(ds: Dataset) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _has_voi_lut(ds: Dataset) -> bool:
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]


def _resolve_voi(ds: Dataset, voi: VoiOption) -> str:
    """Which VOI step applies to this file: ``"lut"``, ``"window"`` or ``"none"``. May set an explicit window."""
    if isinstance(voi, str):
        if voi == "none":
            return "none"
        if voi == "first_window" and _has_window(ds):
            return "window"
        if voi in ("auto", "first_window"):
            return "lut" if _has_voi_lut(ds) else "window" if _has_window(ds) else "none"
        raise ValueError(f"voi must be 'auto', 'none', 'first_window' or (center, width), got {voi!r}")
    center, width = (float(v) for v in voi)
    # our private copy of the header: pydicom's apply_windowing reads the window from the dataset
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, "LINEAR"
    return "window"


def _values_to_unit(values: np.ndarray, ds: Dataset, step: str) -> np.ndarray:
    """Stored values (any shape) -> float64 in [0, 1], bright = dense, using pydicom's LUT functions."""
    out = apply_modality_lut(values, ds)
    if step == "lut":
        if out.dtype.kind == "f" and np.array_equal(out, np.round(out)):
            # integral rescale output: exact LUT indices, and no pydicom warning about float input
            out = out.astype(np.int64)
        out = apply_voi_lut(out, ds, index=0, prefer_lut=True)
        low, high = _voi_lut_output_range(ds)
    elif step == "window":
        out = apply_windowing(out, ds, index=0)
        low, high = _window_output_range(ds)
    else:
        low, high = _modality_output_range(ds)
    span = high - low
    unit = (np.asarray(out, dtype=np.float64) - low) / (span if span != 0 else 1.0)
    np.clip(unit, 0.0, 1.0, out=unit)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit  # minimum stored value is white: invert once, here and nowhere else
    return unit


def _stored_to_unit_float32(pixels: np.ndarray, ds: Dataset, step: str) -> np.ndarray:
    """rows x cols stored values -> rows x cols float32 in [0, 1]."""
    if pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= _TABLE_MAX_BYTES:
        # one table entry per bit pattern of the dtype (65,536 for 16 bits): values beyond BitsStored get
        # exactly what the per-pixel path would give them
        unsigned = np.dtype(f"uint{8 * pixels.dtype.itemsize}")
        every_value = np.arange(2 ** (8 * pixels.dtype.itemsize), dtype=unsigned).view(pixels.dtype)
        table = _values_to_unit(every_value, ds, step).astype(np.float32)
        return table[pixels.view(unsigned)]
    return _values_to_unit(pixels, ds, step).astype(np.float32)


def read_xray_dicom(path: str | PathLike, voi: VoiOption = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Read one single-frame greyscale DICOM (``.dcm`` or gzip-compressed ``.dcm.gz``).

    Args:
        path: the file.
        voi: ``"auto"`` (VOI LUT Sequence if present, else the first window, else none), ``"first_window"``
            (the first Window Center/Width even if a VOI LUT Sequence exists), ``"none"``, or an explicit
            ``(center, width)`` in modality units (after Rescale Slope/Intercept), applied as a LINEAR window.

    Returns:
        ``(pixels, meta)``: pixels rows x cols float32 in [0, 1], bright = dense; meta as in :class:`LoadXRayDicom`.

    Raises:
        DicomError: not DICOM, truncated, no PixelData, multi-frame, colour, or undecodable pixels.
        MissingCodecError: no installed plug-in decodes the file's transfer syntax (names the pip package).
    """
    ds = _read_dataset(path)
    _check_single_frame_greyscale(ds, path)
    pixels = _decode_stored_values(ds, path)
    meta = _xray_meta(ds, path)
    step = _resolve_voi(ds, voi)
    try:
        unit = _stored_to_unit_float32(pixels, ds, step)
    except (
        ValueError,
        TypeError,
        NotImplementedError,
        AttributeError,
        KeyError,
    ) as err:  # malformed LUT/window
        raise DicomError(
            f"cannot apply the modality/VOI LUT: {type(err).__name__}: {err}", path=path
        ) from err
    meta["voi_applied"] = step
    meta["inverted"] = ds.PhotometricInterpretation == "MONOCHROME1"
    return unit, meta
