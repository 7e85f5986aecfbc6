"""DICOM radiograph header reading and pixel decoding with pydicom and NumPy only (no torch, no MONAI).

The MONAI transforms that wrap these functions are in :mod:`radmi.transforms.dicom`, which documents the pixel
pipeline. Keeping this module free of torch and MONAI lets the manifest builders read headers without paying
for those imports (about 5-9 s on a 2-core machine).
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import struct
import zlib
from collections.abc import Sequence
from os import PathLike
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import apply_modality_lut, apply_voi, apply_voi_lut, apply_windowing
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.decoders.rle import _rle_parse_header
from pydicom.pixels.utils import _get_jpg_parameters, get_j2k_parameters

from radmi.errors import DicomError, MissingCodecError, RadmiError
from radmi.transforms.file_checks import check_inflated_size, open_regular_file, read_gzip_limited

logger = logging.getLogger(__name__)

__all__ = [
    "CODEC_PACKAGES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODALITIES",
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

#: Largest image (Rows x Columns) decoded by default: 80 Mpx. The largest detector panels are ~ 43 x 43 cm at
#: 0.1 mm (about 18 Mpx); a header declaring more is refused before any pixel is decoded.
DEFAULT_MAX_PIXELS = 80_000_000
#: Modalities read by default: projection radiography (computed, digital, "DR" as some vendors write it, and PX).
#: ``allowed_modalities=None`` accepts any; a file without a Modality tag is accepted (unknown).
DEFAULT_MODALITIES: tuple[str, ...] = ("CR", "DX", "DR", "PX")
#: What a malformed header or a failing codec raises on hostile input; each becomes a ``DicomError``.
_BAD_FILE_ERRORS = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    NotImplementedError,
    AttributeError,
    OverflowError,
    ZeroDivisionError,
    MemoryError,
    RuntimeError,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
)

_GZIP_MAGIC = b"\x1f\x8b"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# pixel dtypes up to 16 bits go through a value table; wider ones are mapped pixel by pixel
_TABLE_MAX_BYTES = 2
# compressed transfer syntaxes whose first-frame codestream header is checked against the DICOM header
_JPEG_SYNTAXES = frozenset(uid.JPEGTransferSyntaxes) | frozenset(uid.JPEGLSTransferSyntaxes)
_J2K_SYNTAXES = frozenset(uid.JPEG2000TransferSyntaxes)
_CODESTREAM_SYNTAXES = _JPEG_SYNTAXES | _J2K_SYNTAXES | {uid.RLELossless}
# bytes of the first frame read to find its codestream header: 64 KiB, then 1 MiB if the header lies further
# (JPEG APPn segments such as an ICC profile come before the SOF marker)
_HEAD_CAPS = (64 * 2**10, 2**20)
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


# --------------------------------------------------------------------------------------------- reading
def _gzip_limit(max_pixels: int | None, max_gzip_bytes: int | None) -> int:
    """Decompressed-size cap for a ``.dcm.gz`` and for a Deflated dataset: given, else 4 bytes per allowed pixel
    + 64 MiB of header (387,108,864 bytes for the default 80 Mpx)."""
    if max_gzip_bytes is not None:
        return int(max_gzip_bytes)
    return 4 * int(max_pixels or DEFAULT_MAX_PIXELS) + 64 * 2**20


class _FrameHead(NamedTuple):
    """The first bytes of the first frame of encapsulated pixel data (its codestream header is in there)."""

    data: bytes
    #: declared length of the frame's first fragment
    fragment_length: int
    #: why the encapsulation itself cannot be read (then ``data`` is empty)
    problem: str | None = None


def _read_dataset(
    path: str | PathLike,
    *,
    header_only: bool = False,
    tags: Sequence[str] | None = None,
    max_gzip_bytes: int | None = None,
) -> tuple[Dataset, _FrameHead | None]:
    """Read one DICOM file (plain or gzip-compressed) with pydicom, turning failures into ``DicomError``.

    ``header_only`` defers the pixel bytes: pydicom seeks past them (the element still shows as present); for
    a compressed transfer syntax, only the head of the first frame is read (returned with the dataset, else
    ``None``). ``tags`` reads only those header elements and stops before the pixels (a gzip file is
    decompressed only up to there). A FIFO or other special file is refused without blocking; a gzip stream,
    and the dataset of a Deflated transfer syntax file, are inflated in chunks and refused beyond
    ``max_gzip_bytes`` (default :func:`_gzip_limit`).
    """
    limit = _gzip_limit(None, max_gzip_bytes)
    with open_regular_file(path, DicomError, missing="cannot read the file: no such file") as file:
        try:
            magic = file.read(2)
            file.seek(0)
        except OSError as err:
            raise DicomError(f"cannot read the file: {err.strerror or err}", path=path) from err
        if magic != _GZIP_MAGIC:
            return _parse(file, path, header_only, limit, tags)
        if tags is not None:
            try:
                with gzip.GzipFile(fileobj=file) as stream:
                    return _parse(stream, path, header_only, limit, tags)
            except (EOFError, OSError, zlib.error) as err:
                raise DicomError(f"truncated or corrupt gzip file: {err}", path=path) from err
        # MIMIC-CXR distributions ship .dcm.gz
        data = read_gzip_limited(file, path, limit, DicomError)
    return _parse(io.BytesIO(data), path, header_only, limit)


def _parse(
    source: BinaryIO,
    path: str | PathLike,
    header_only: bool,
    max_inflated_bytes: int,
    tags: Sequence[str] | None = None,
) -> tuple[Dataset, _FrameHead | None]:
    _check_deflated_size(source, path, max_inflated_bytes)
    try:
        if tags is not None:
            return pydicom.dcmread(source, stop_before_pixels=True, specific_tags=list(tags)), None
        ds = pydicom.dcmread(source, defer_size=1024 if header_only else None)
    except InvalidDicomError as err:
        raise DicomError(
            "not a DICOM file (no 'DICM' marker after the 128-byte preamble)", path=path
        ) from err
    except Exception as err:  # pydicom raises EOFError, struct.error, ValueError, ... on cut-off files
        raise DicomError(f"truncated or corrupt DICOM file: {type(err).__name__}: {err}", path=path) from err
    return ds, (_deferred_frame_head(ds, source) if header_only else None)


def _check_deflated_size(source: BinaryIO, path: str | PathLike, max_bytes: int) -> None:
    """Refuse a Deflated Explicit VR Little Endian file whose dataset inflates past ``max_bytes``.

    pydicom inflates such a dataset whole, in memory, before anything else (a few-MB file can inflate to
    gigabytes). Here the file meta is read with pydicom's own reader and, when the transfer syntax is Deflated,
    the rest is inflated in bounded chunks only to count it (:func:`check_inflated_size`). ``source`` is left
    where it was. Anything that is not a readable file meta is left to pydicom's read to report.
    """
    start = source.tell()
    try:
        read_preamble(source, False)
        syntax = _read_file_meta_info(source).get("TransferSyntaxUID")
    except Exception:  # not DICOM, cut-off meta, corrupt gzip: pydicom's read that follows says what
        syntax = None
    if syntax == uid.DeflatedExplicitVRLittleEndian:
        try:
            check_inflated_size(
                source,
                path,
                max_bytes,
                DicomError,
                what="the deflated dataset (transfer syntax Deflated Explicit VR Little Endian)",
            )
        except (EOFError, OSError, zlib.error) as err:  # the file (or the gzip stream around it) failed
            raise DicomError(f"truncated or corrupt file: {type(err).__name__}: {err}", path=path) from err
    source.seek(start)


def _int_tag(ds: Dataset, keyword: str, default: int | None = None) -> int:
    """An integer header value; a missing (without default) or malformed one is a ``DicomError``-ready ValueError."""
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise _HeaderError(f"{keyword} is missing")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise _HeaderError(f"malformed {keyword} {str(value)[:40]!r} (not an integer)") from err


class _HeaderError(ValueError):
    """A header value radmi cannot use; re-raised as ``DicomError`` with its message as the reason."""


def _check_single_frame_greyscale(ds: Dataset, path: str | PathLike) -> None:
    """Raise ``DicomError`` unless ``ds`` holds one greyscale frame."""
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        what = f"has {other[0]} instead of integer PixelData" if other else "has no PixelData"
        raise DicomError(f"{what} (Modality {ds.get('Modality', '?')}): not an image", path=path)
    frames = _int_tag(ds, "NumberOfFrames", 1) or 1
    if frames != 1:
        raise DicomError(
            f"multi-frame image ({frames} frames); only single-frame radiographs are read", path=path
        )
    samples = _int_tag(ds, "SamplesPerPixel")  # Type 1 for images: pydicom cannot decode without it
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if samples != 1 or photometric not in _MONOCHROME:
        raise DicomError(
            f"colour image (SamplesPerPixel {samples}, PhotometricInterpretation {photometric or 'missing'}); "
            "a radiograph must be MONOCHROME1 or MONOCHROME2",
            path=path,
        )


def _pixel_data_length(ds: Dataset) -> int | None:
    """Bytes of the PixelData value as stored (deferred or read), or None when undefined (encapsulated)."""
    element = ds.get_item("PixelData", keep_deferred=True)  # deferred: never read the pixel bytes here
    value = getattr(element, "value", None)
    if isinstance(value, bytes | bytearray):
        return len(value)
    length = getattr(element, "length", None)
    if length is None or length == 0xFFFFFFFF:
        return None
    return int(length)


def _transfer_syntax(ds: Dataset) -> str | None:
    return ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None


def _is_native(ds: Dataset) -> bool:
    transfer_syntax = _transfer_syntax(ds)
    if transfer_syntax is None:
        return True  # pydicom guesses implicit/explicit little endian for files without meta
    try:
        return not uid.UID(transfer_syntax).is_compressed
    except (AttributeError, ValueError):
        return True


def _check_limits(ds: Dataset, path: str | PathLike, max_pixels: int | None) -> None:
    """Geometry from the header, checked before any pixel is decoded.

    - Rows, Columns, BitsAllocated, BitsStored present, integer and sane;
    - Rows x Columns <= ``max_pixels`` (when given): a few-KB file declaring 65500 x 65500 is refused here;
    - uncompressed transfer syntaxes: the PixelData length equals Rows x Columns x BitsAllocated / 8 (plus one
      byte of even padding). Shorter is a truncated file; longer means Rows/Columns do not describe the data
      (pydicom would only warn and return a sheared image).
    """
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    if rows < 1 or cols < 1:
        raise DicomError(f"empty image (Rows {rows}, Columns {cols})", path=path)
    if max_pixels is not None and rows * cols > max_pixels:
        raise DicomError(
            f"image of {rows} x {cols} = {rows * cols:,} pixels is larger than the limit of {max_pixels:,} "
            "pixels (max_pixels); not decoded",
            path=path,
        )
    bits_allocated = _int_tag(ds, "BitsAllocated")
    bits_stored = _int_tag(ds, "BitsStored")  # Type 1: pydicom cannot decode without it
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise DicomError(
            f"unsupported bit depth (BitsAllocated {bits_allocated}, BitsStored {bits_stored})", path=path
        )
    if not _is_native(ds):
        return
    actual = _pixel_data_length(ds)
    if actual is None:
        return
    expected = (rows * cols * bits_allocated + 7) // 8
    if actual < expected:
        raise DicomError(
            f"truncated pixel data: PixelData holds {actual:,} bytes, less than expected: Rows x Columns x "
            f"BitsAllocated ({rows} x {cols} x {bits_allocated} bits) needs {expected:,}",
            path=path,
        )
    if actual > expected + 1:
        raise DicomError(
            f"PixelData holds {actual:,} bytes but Rows x Columns x BitsAllocated ({rows} x {cols} x "
            f"{bits_allocated} bits) needs {expected:,}: Rows/Columns do not match the data",
            path=path,
        )


# --------------------------------------------------------------------------------------------- codestream headers
class _CodestreamError(ValueError):
    """The codestream header of the first frame is cut off or garbled."""


class _Codestream(NamedTuple):
    """What the first frame's codestream header declares (``None``: not in that format's header)."""

    kind: str
    rows: int | None = None
    cols: int | None = None
    components: int | None = None
    precision: int | None = None
    #: RLE only: the segment offsets of its 64-byte header
    segments: list[int] | None = None


def _frame_head_bytes(fp: BinaryIO, cap: int) -> tuple[bytes, int, bool]:
    """Up to ``cap`` bytes of the first frame from encapsulated pixel data positioned at its Basic Offset Table.

    Only single-frame images are decoded, so every fragment belongs to the first frame. Returns the bytes, the
    declared length of the first fragment, and whether the frame goes on beyond ``cap``.
    """
    # past the Basic Offset Table item without reading it (pydicom's parse_basic_offsets reads its declared
    # length into memory: 4 GiB for a forged one)
    bot = fp.read(8)
    if len(bot) < 8:
        raise ValueError("no Basic Offset Table item: the encapsulated pixel data is cut off")
    group, element, bot_length = struct.unpack("<HHL", bot)
    if (group, element) != (0xFFFE, 0xE000):
        raise ValueError(f"expected the Basic Offset Table item (FFFE,E000), found ({group:04X},{element:04X})")
    if bot_length % 4:
        raise ValueError(f"Basic Offset Table length {bot_length} is not a multiple of 4")
    fp.seek(bot_length, io.SEEK_CUR)
    head = bytearray()
    first_length: int | None = None
    while len(head) < cap:
        item = fp.read(8)
        # no sequence delimiter at the end: cut-off data (pydicom reports it when decoding)
        group, element, length = struct.unpack("<HHL", item) if len(item) == 8 else (0, 0, 0)
        if len(item) < 8 or (group, element) == (0xFFFE, 0xE0DD):
            if first_length is None:
                raise _CodestreamError("the encapsulated pixel data holds no fragment")
            return bytes(head), first_length, False
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise _CodestreamError(
                f"unexpected item ({group:04X},{element:04X}) of length {length} in the encapsulated pixel data"
            )
        first_length = length if first_length is None else first_length
        want = cap - len(head)
        chunk = fp.read(min(length, want))
        head += chunk
        if len(chunk) < min(length, want):
            return bytes(head), first_length, False  # cut off inside a fragment
        if length > want:
            return bytes(head), first_length, True
    return bytes(head), first_length or 0, True


def _read_frame_head(fp: BinaryIO, syntax: str) -> _FrameHead:
    """The head of the first frame from encapsulated pixel data at ``fp``'s position: 64 KiB, or up to 1 MiB
    when the codestream header is not found in the first 64 KiB."""
    start = fp.tell()
    head = _FrameHead(b"", 0, "the encapsulated pixel data could not be read")
    for cap in _HEAD_CAPS:
        fp.seek(start)
        try:
            data, length, cut = _frame_head_bytes(fp, cap)
        except (ValueError, struct.error, EOFError, OSError) as err:
            return _FrameHead(b"", 0, f"malformed encapsulated pixel data: {err}")
        head = _FrameHead(data, length)
        if not cut:
            return head
        try:
            _codestream_header(syntax, data)
            return head
        except _CodestreamError:
            continue  # the header may lie further in: read more
    return head


def _deferred_frame_head(ds: Dataset, source: BinaryIO) -> _FrameHead | None:
    """For a header-only read: the first frame's head, read from ``source`` where pydicom deferred PixelData."""
    syntax = _transfer_syntax(ds)
    if syntax not in _CODESTREAM_SYNTAXES or "PixelData" not in ds:
        return None
    element = ds.get_item("PixelData", keep_deferred=True)
    if getattr(element, "value", None) is not None or getattr(element, "value_tell", None) is None:
        return None  # small enough to be read: checked from the value
    try:
        source.seek(element.value_tell)
    except (OSError, ValueError) as err:
        return _FrameHead(b"", 0, f"cannot read the pixel data: {err}")
    return _read_frame_head(source, str(syntax))


def _jp2_codestream_offset(data: bytes) -> int:
    """Offset of the J2K codestream inside a JP2 file: the contents of its ``jp2c`` box.

    (pydicom's ``get_j2k_parameters`` walks these boxes too, but does not return the offset and never ends on
    a box of length 0.)
    """
    offset = 0
    while offset + 8 <= len(data):
        length, box = struct.unpack_from(">L4s", data, offset)
        header = 8
        if length == 1:  # 64-bit length follows
            if offset + 16 > len(data):
                break
            length, header = struct.unpack_from(">Q", data, offset + 8)[0], 16
        if box == b"jp2c":
            return offset + header
        if length < header:  # 0 = "up to the end of the file", allowed only for the jp2c box
            raise _CodestreamError(f"malformed JP2 box {box!r} of length {length} before the codestream")
        offset += length
    raise _CodestreamError("no codestream (jp2c) box in the first bytes of the JP2 file: cut off or garbled")


def _j2k_header(data: bytes) -> _Codestream:
    """Image size and components from the SIZ marker segment (ISO/IEC 15444-1 A.5.1), JP2-wrapped or not."""
    offset = _jp2_codestream_offset(data) if data.startswith(_JP2_SIGNATURE) else 0
    if data[offset : offset + 4] != b"\xff\x4f\xff\x51":
        raise _CodestreamError(
            f"no JPEG 2000 SOC and SIZ markers at the start of the codestream (it starts "
            f"{data[offset : offset + 8].hex() or 'empty'}): garbled, or not JPEG 2000"
        )
    if len(data) < offset + 43:
        raise _CodestreamError("the JPEG 2000 SIZ marker segment is cut off")
    # SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz (4 each) ... Csiz(2) at 40, Ssiz of component 0 at 42
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">4L", data, offset + 8)
    (components,) = struct.unpack_from(">H", data, offset + 40)
    if xosiz >= xsiz or yosiz >= ysiz:
        raise _CodestreamError(
            f"the JPEG 2000 SIZ segment declares an empty image (Xsiz {xsiz}, XOsiz {xosiz}, Ysiz {ysiz}, "
            f"YOsiz {yosiz})"
        )
    precision = get_j2k_parameters(data[offset : offset + 43]).get("precision")  # SOC first: no box walk
    return _Codestream("JPEG 2000", ysiz - yosiz, xsiz - xosiz, components, precision)


#: JPEG SOFn markers (SOF0-SOF15 without DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


def _jpeg_sof_with_fill_bytes(data: bytes) -> dict[str, int]:
    """The SOF segment's size fields, walking marker segments that may be preceded by fill bytes (ITU-T T.81
    B.1.1.2: any marker may be preceded by 0xFF); {} when there is none in ``data``."""
    if data[:2] != b"\xff\xd8":
        return {}
    offset = 2
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:
            return {}
        while offset + 1 < len(data) and data[offset + 1] == 0xFF:  # fill bytes
            offset += 1
        if offset + 9 >= len(data):
            return {}
        marker = data[offset + 1]
        if marker in _SOF_MARKERS:
            precision, height, width, components = struct.unpack_from(">BHHB", data, offset + 4)
            return {"precision": precision, "height": height, "width": width, "components": components}
        if marker == 0xDA:  # start of scan before any frame header
            return {}
        (length,) = struct.unpack_from(">H", data, offset + 2)
        offset += 2 + length
    return {}


def _codestream_header(syntax: str, data: bytes) -> _Codestream:
    """Parse the codestream header at the start of ``data`` (the first frame) for ``syntax``."""
    if syntax in _JPEG_SYNTAXES:
        kind = "JPEG-LS" if syntax in uid.JPEGLSTransferSyntaxes else "JPEG"
        info = _get_jpg_parameters(data)  # pydicom's SOFn/SOF55 parser; {} when it cannot parse
        if "height" not in info:  # its walk stops at fill bytes (0xFF runs allowed before any marker)
            info = _jpeg_sof_with_fill_bytes(data)
        if "height" not in info:
            raise _CodestreamError(
                f"no {kind} start-of-frame (SOF) segment found (the codestream starts "
                f"{data[:8].hex() or 'empty'}): cut off or garbled"
            )
        return _Codestream(kind, info["height"], info["width"], info["components"], info["precision"])
    if syntax in _J2K_SYNTAXES:
        return _j2k_header(data)
    try:
        return _Codestream("RLE", segments=_rle_parse_header(data[:64]))  # pydicom's RLE header parser
    except (ValueError, struct.error) as err:
        raise _CodestreamError(f"malformed RLE header: {err}") from err


def _check_codestream(
    ds: Dataset, path: str | PathLike, max_pixels: int | None, head: _FrameHead | None
) -> None:
    """The first frame's codestream header must describe the image of the DICOM header, checked before decoding.

    JPEG (SOFn: rows, columns, components), JPEG-LS (SOF55), JPEG 2000 (SIZ, also inside a JP2 file) and RLE
    (number of segments for SamplesPerPixel x BitsAllocated). A codestream declaring more than ``max_pixels``,
    another size than Rows x Columns or another number of components than SamplesPerPixel is refused before a
    codec allocates anything; so is a cut-off or garbled codestream header.
    """
    syntax = _transfer_syntax(ds)
    if syntax not in _CODESTREAM_SYNTAXES or "PixelData" not in ds:
        return
    if head is None:
        value = getattr(ds.get_item("PixelData", keep_deferred=True), "value", None)
        if not isinstance(value, bytes | bytearray):
            return  # deferred without a head: not reached (header-only reads read the head)
        head = _read_frame_head(io.BytesIO(value), str(syntax))
    if head.problem is not None:
        raise _HeaderError(f"{head.problem}; not decoded")
    try:
        stream = _codestream_header(str(syntax), head.data)
    except _CodestreamError as err:
        raise _HeaderError(
            f"cannot read the codestream header of the first frame: {err}; not decoded"
        ) from err
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    samples = _int_tag(ds, "SamplesPerPixel")
    if stream.segments is not None:
        bits_allocated = _int_tag(ds, "BitsAllocated")
        expected = samples * ((bits_allocated + 7) // 8)
        if len(stream.segments) != expected:
            raise _HeaderError(
                f"the RLE header declares {len(stream.segments)} segments but SamplesPerPixel x BitsAllocated "
                f"({samples} x {bits_allocated} bits) needs {expected}: the header does not describe the pixel "
                "data; not decoded"
            )
        offsets = stream.segments
        if offsets[0] < 64 or any(
            later <= earlier for earlier, later in zip(offsets, offsets[1:], strict=False)
        ):
            raise _HeaderError(
                f"malformed RLE header: segment offsets {offsets} do not ascend from 64; not decoded"
            )
        return
    declared = f"{stream.rows} x {stream.cols}"
    bits = f", {stream.precision}-bit" if stream.precision else ""
    if max_pixels is not None and stream.rows * stream.cols > max_pixels:
        raise DicomError(
            f"the {stream.kind} codestream declares {declared} = {stream.rows * stream.cols:,} pixels (Rows x "
            f"Columns is {rows} x {cols}), larger than the limit of {max_pixels:,} pixels (max_pixels); not "
            "decoded",
            path=path,
        )
    if (stream.rows, stream.cols) != (rows, cols):
        raise _HeaderError(
            f"the {stream.kind} codestream declares {declared} pixels ({stream.components} component(s){bits}) "
            f"but Rows x Columns is {rows} x {cols}: the header does not describe the pixel data; not decoded"
        )
    if stream.components != samples:
        raise _HeaderError(
            f"the {stream.kind} codestream holds {stream.components} components but SamplesPerPixel is "
            f"{samples}; not decoded"
        )


def _check_modality(ds: Dataset, path: str | PathLike, allowed: Sequence[str] | None) -> None:
    if allowed is None:
        return
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality not in {m.upper() for m in allowed}:
        raise DicomError(
            f"Modality {modality[:16]} is not a projection radiograph (allowed: {', '.join(allowed)}); pass "
            "allowed_modalities to read it anyway",
            path=path,
        )


def _check_finite_values(ds: Dataset, path: str | PathLike) -> None:
    """Rescale and window values must be numbers, finite: NaN or inf would give an all-NaN image."""
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword not in ds or ds.get(keyword) in (None, ""):
            continue
        raw = ds.get(keyword)
        try:
            values = _float_tuple(raw)
        except (TypeError, ValueError) as err:
            raise DicomError(f"malformed {keyword} {str(raw)[:40]!r} (not a number)", path=path) from err
        if not all(math.isfinite(v) for v in values):
            raise DicomError(f"{keyword} is not finite ({str(raw)[:40]}): the image would be NaN", path=path)


def _check_luts(ds: Dataset) -> None:
    """A Modality or VOI LUT must hold as many entries as its descriptor declares (else pydicom IndexErrors)."""
    for keyword, name in (("ModalityLUTSequence", "Modality LUT"), ("VOILUTSequence", "VOI LUT")):
        sequence = ds.get(keyword)
        if not sequence:
            continue
        item = sequence[0]
        if "LUTDescriptor" not in item or "LUTData" not in item:
            continue
        descriptor = item.LUTDescriptor
        if len(descriptor) != 3:
            raise _HeaderError(f"malformed {name} descriptor {list(descriptor)[:5]} (needs 3 values)")
        declared = int(descriptor[0]) or 2**16
        data = item.LUTData
        available = len(data) // 2 if isinstance(data, bytes | bytearray) else len(data)
        if available < declared:
            raise _HeaderError(
                f"{name} holds {available} entries, fewer than the {declared} its descriptor declares"
            )


def _check_xray(
    ds: Dataset,
    path: str | PathLike,
    max_pixels: int | None,
    allowed_modalities: Sequence[str] | None,
    frame_head: _FrameHead | None = None,
) -> None:
    """Every check that needs no decoding: structure, limits, codestream header, modality, finite rescale/window."""
    try:
        _check_single_frame_greyscale(ds, path)
        _check_limits(ds, path, max_pixels)
        _check_codestream(ds, path, max_pixels, frame_head)
        _check_modality(ds, path, allowed_modalities)
        _check_finite_values(ds, path)
        _check_luts(ds)
    except _HeaderError as err:
        raise DicomError(str(err), path=path) from err


def _float_tuple(value: Any) -> tuple[float, ...]:
    items = value if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
    return tuple(float(v) for v in items)


def _spacing(ds: Dataset, path: str | PathLike) -> tuple[np.ndarray, str]:
    """(rows, cols) spacing in mm and its source tag; NaN and ``"none"`` when absent or unusable.

    A zero, negative, non-finite or malformed value is logged as a warning and treated as unknown (the next
    tag is tried): some real files carry PixelSpacing 0.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):  # CR/DX usually carry only ImagerPixelSpacing
        if keyword not in ds:
            continue
        value: Any = None
        try:
            value = ds.get(keyword)
            if value is None or value == "":
                continue
            spacing = np.asarray(_float_tuple(value), dtype=np.float64)
        except (TypeError, ValueError):
            spacing = np.empty(0)
        if spacing.shape == (2,) and np.all(np.isfinite(spacing)) and np.all(spacing > 0):
            return spacing, keyword
        logger.warning(
            "%s: %s %r is not two positive numbers; spacing treated as unknown",
            path,
            keyword,
            str(value)[:40],
        )
    return np.full(2, np.nan), "none"


def _xray_meta(ds: Dataset, path: str | PathLike) -> dict[str, Any]:
    """The meta keys radmi keeps: geometry, photometric and UIDs. Never patient name or ID."""
    spacing, source = _spacing(ds, path)
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID", "") if hasattr(ds, "file_meta") else ""
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    return {
        "filename_or_obj": str(path),
        "spacing": spacing,  # mm, (between rows, between columns); NaN when the file has none (or a bad one)
        "spacing_source": source,
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "original_shape": np.asarray([rows, cols]),
        "spatial_shape": np.asarray([rows, cols]),
        "original_channel_dim": 0,
        "bits_stored": _int_tag(ds, "BitsStored", _int_tag(ds, "BitsAllocated", 0)),
        "view_position": str(ds.get("ViewPosition", "") or ""),
        "modality": str(ds.get("Modality", "") or ""),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "transfer_syntax_uid": str(transfer_syntax),
    }


def _as_dicom_error(path: str | PathLike, what: str, err: BaseException) -> DicomError:
    if isinstance(err, MemoryError):
        return DicomError(f"{what}: not enough memory (MemoryError)", path=path)
    return DicomError(f"{what}: {type(err).__name__}: {str(err)[:300]}", path=path)


def read_xray_dicom_header(
    path: str | PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    allowed_modalities: Sequence[str] | None = DEFAULT_MODALITIES,
    max_gzip_bytes: int | None = None,
) -> dict[str, Any]:
    """Check that ``path`` is a single-frame greyscale DICOM radiograph without decoding its pixels.

    Cheap enough for ``radmi manifest check`` over a whole archive: every check of :func:`read_xray_dicom` that
    needs no decoding runs (structure, ``max_pixels``, declared size against the PixelData length for
    uncompressed files or against the first frame's codestream header for compressed ones, which reads at most
    64 KiB of it (1 MiB when its header lies further in), modality, finite rescale/window, codec). A compressed
    codestream broken beyond its header is only found by decoding.

    Returns:
        the meta dict of :class:`LoadXRayDicom` (spacing in mm, original shape, UIDs, ...).

    Raises:
        DicomError: naming the file and the reason, for every way the file can be bad.
        MissingCodecError: no installed plug-in decodes the file's transfer syntax.
    """
    ds, head = _read_dataset(path, header_only=True, max_gzip_bytes=_gzip_limit(max_pixels, max_gzip_bytes))
    try:
        _check_xray(ds, path, max_pixels, allowed_modalities, head)
        _check_codec(ds, path)
        return _xray_meta(ds, path)
    except RadmiError:
        raise
    except _BAD_FILE_ERRORS as err:
        raise _as_dicom_error(path, "malformed DICOM header", err) from err


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
    return _read_dataset(path, header_only=True, tags=tags)[0]


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
        raise _as_dicom_error(path, "cannot decode the pixel data", err) from err
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


def read_xray_dicom(
    path: str | PathLike,
    voi: VoiOption = "auto",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    allowed_modalities: Sequence[str] | None = DEFAULT_MODALITIES,
    max_gzip_bytes: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one single-frame greyscale DICOM (``.dcm`` or gzip-compressed ``.dcm.gz``).

    Args:
        path: the file.
        voi: ``"auto"`` (VOI LUT Sequence if present, else the first window, else none), ``"first_window"``
            (the first Window Center/Width even if a VOI LUT Sequence exists), ``"none"``, or an explicit
            ``(center, width)`` in modality units (after Rescale Slope/Intercept), applied as a LINEAR window.
        max_pixels: largest Rows x Columns decoded (default 80 Mpx), checked from the header before any pixel
            is decoded; ``None``: no limit.
        allowed_modalities: the Modality values accepted (default CR, DX, DR, PX; a missing Modality is
            accepted); ``None``: any.
        max_gzip_bytes: cap on the decompressed size of a ``.dcm.gz`` and on the inflated dataset of a file in
            the Deflated Explicit VR Little Endian transfer syntax (default 4 bytes per allowed pixel + 64 MiB),
            enforced while streaming, before pydicom parses anything.

    Returns:
        ``(pixels, meta)``: pixels rows x cols float32 in [0, 1], bright = dense; meta as in :class:`LoadXRayDicom`.

    Raises:
        DicomError: naming the file, for every way it can be bad: not DICOM, truncated, no PixelData,
            multi-frame, colour, too large (declared, inflated or in the codestream header), size mismatch
            (PixelData length or codestream header against Rows x Columns), modality, malformed header values,
            non-finite rescale/window or output, undecodable pixels.
        MissingCodecError: no installed plug-in decodes the file's transfer syntax (names the pip package).
    """
    if isinstance(voi, str) and voi not in ("auto", "none", "first_window"):
        raise ValueError(f"voi must be 'auto', 'none', 'first_window' or (center, width), got {voi!r}")
    ds, _ = _read_dataset(path, max_gzip_bytes=_gzip_limit(max_pixels, max_gzip_bytes))
    try:
        _check_xray(ds, path, max_pixels, allowed_modalities)
        meta = _xray_meta(ds, path)
        pixels = _decode_stored_values(ds, path)
    except RadmiError:
        raise
    except _BAD_FILE_ERRORS as err:
        raise _as_dicom_error(path, "malformed DICOM header", err) from err
    try:
        step = _resolve_voi(ds, voi)
        unit = _stored_to_unit_float32(pixels, ds, step)
    except _BAD_FILE_ERRORS as err:  # malformed LUT/window: a LUT shorter than its descriptor -> IndexError
        raise _as_dicom_error(path, "cannot apply the modality/VOI LUT", err) from err
    if not np.isfinite(unit).all():
        raise DicomError(
            "the pixel pipeline gave non-finite values (NaN/inf): malformed rescale, window or LUT", path=path
        )
    meta["voi_applied"] = step
    meta["inverted"] = ds.PhotometricInterpretation == "MONOCHROME1"
    return unit, meta
