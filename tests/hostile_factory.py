"""Hostile inputs for the hardening tests and the regression corpus: DICOM headers that lie, bombs, links, FIFOs.

Everything is generated (nothing binary is committed). :func:`raw_element` writes a header value exactly as
given (pydicom refuses to *assign* ``NumberOfFrames = "abc"``, but real files carry such values), so the reader
meets it as it would in a file from the wild. :func:`deflate_bomb` writes a Deflated-transfer-syntax file whose
dataset inflates to any size; :func:`edit_first_frame` rewrites the codestream of a compressed file
(:func:`set_codestream_size`, :func:`jp2_wrapped`, :func:`set_rle_segments`); :func:`run_capped` loads a file in
a subprocess under an address-space limit.
"""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from dicom_factory import known_pixels, write_dicom, xray_dataset
from PIL import Image
from pydicom import uid
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.tag import Tag

from radmi.errors import DicomError
from radmi.transforms.dicom_decode import read_xray_dicom, read_xray_dicom_header

TESTS = Path(__file__).parent


def raw_element(ds: Dataset, keyword: str, value: bytes, vr: str | None = None) -> Dataset:
    """Put ``value`` (raw bytes, padded to even length) under ``keyword`` without pydicom's validation."""
    tag = Tag(tag_for_keyword(keyword))
    value = value if len(value) % 2 == 0 else value + b" "
    ds._dict[tag] = RawDataElement(tag, vr or dictionary_VR(tag), len(value), value, 0, False, True)
    return ds


def huge_declared_dicom(path: Path, rows: int = 65500, cols: int = 65500) -> Path:
    """A few-KB uncompressed DICOM whose header declares ``rows x cols`` pixels (the audit's memory bomb)."""
    ds = xray_dataset(known_pixels(rows=4, cols=4))
    ds.Rows, ds.Columns = rows, cols
    return write_dicom(path, ds)


def gzip_bomb(path: Path, decompressed_bytes: int) -> Path:
    """A ``.dcm.gz`` that starts like a DICOM and then inflates to ``decompressed_bytes`` of zeros (streamed)."""
    head = io.BytesIO()
    xray_dataset(known_pixels(rows=4, cols=4)).save_as(head, enforce_file_format=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    parts = [compressor.compress(head.getvalue())]
    block = bytes(2**20)
    for _ in range(decompressed_bytes // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    path.write_bytes(b"".join(parts))
    return path


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid 8-bit PNG whose IHDR is rewritten to declare ``width x height`` (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # signature (8) + length (4) + b"IHDR" (4) + width (4) + height (4) + 5 bytes + CRC (4)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def gzipped(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


# ------------------------------------------------------------------------------------ Deflated transfer syntax
def write_deflated(path: Path, ds: FileDataset, gzipped: bool = False) -> Path:
    """Write ``ds`` in the Deflated Explicit VR Little Endian transfer syntax (pydicom deflates the dataset)."""
    ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.write_bytes(gzip.compress(buffer.getvalue()) if gzipped else buffer.getvalue())
    return path


def deflate_bomb(path: Path, inflated_bytes: int, gzipped: bool = False) -> Path:
    """A Deflated DICOM, a few KB to a few MB, whose dataset inflates to about ``inflated_bytes`` (zeros).

    The inflated dataset is a real header (4 x 4 DX) whose PixelData declares ``inflated_bytes`` (at most the
    largest 32-bit length) followed by that many zero bytes. One 1 MiB block of zeros is compressed once after
    a full flush and repeated, so even a many-GB bomb takes no time to write.
    """
    ds = xray_dataset(known_pixels(rows=4, cols=4))
    ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    stream = io.BytesIO(data)
    read_preamble(stream, False)
    _read_file_meta_info(stream)
    meta_end = stream.tell()
    dataset = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
    body = dataset[: -(len(ds.PixelData) + 4)]  # up to the PixelData length field (PixelData is last)
    declared = min(inflated_bytes, 0xFFFFFFFE) & ~1
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [data[:meta_end], compressor.compress(body + struct.pack("<L", declared))]
    parts.append(compressor.flush(zlib.Z_FULL_FLUSH))
    block = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts += [block] * -(-inflated_bytes // 2**20)
    parts.append(compressor.flush())
    out = b"".join(parts)
    path.write_bytes(gzip.compress(out) if gzipped else out)
    return path


# ------------------------------------------------------------------------------------ codestreams
def edit_first_frame(path: Path, edit: Callable[[bytes], bytes]) -> Path:
    """Rewrite the (single) frame of the compressed DICOM at ``path`` with ``edit(frame) -> frame``."""
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([edit(frame)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def set_rows_columns(path: Path, rows: int, cols: int) -> Path:
    """Change Rows/Columns in the DICOM header only (the codestream keeps its own size)."""
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg_sof_offset(frame: bytes) -> int:
    offset = 2  # after SOI
    while frame[offset + 1] not in (
        *range(0xC0, 0xC4),
        *range(0xC5, 0xC8),
        *range(0xC9, 0xCC),
        0xCD,
        0xCE,
        0xCF,
        0xF7,
    ):
        offset += 2 + struct.unpack_from(">H", frame, offset + 2)[0]
    return offset


def _j2k_siz_offset(frame: bytes) -> int:
    return frame.index(b"\xff\x4f\xff\x51")  # SOC + SIZ (inside the jp2c box of a JP2 file)


def set_codestream_size(frame: bytes, rows: int, cols: int) -> bytes:
    """A JPEG/JPEG-LS (SOFn) or JPEG 2000 (SIZ) codestream rewritten to declare ``rows x cols``."""
    data = bytearray(frame)
    if frame.startswith(b"\xff\xd8"):
        struct.pack_into(">HH", data, _jpeg_sof_offset(frame) + 5, rows, cols)
    else:
        struct.pack_into(">LL", data, _j2k_siz_offset(frame) + 8, cols, rows)  # Xsiz (columns), Ysiz (rows)
    return bytes(data)


def set_j2k_components(frame: bytes, components: int) -> bytes:
    data = bytearray(frame)
    struct.pack_into(">H", data, _j2k_siz_offset(frame) + 40, components)
    return bytes(data)


def with_app_segments(frame: bytes, count: int, size: int = 65533) -> bytes:
    """A JPEG codestream with ``count`` APP15 segments of ``size`` bytes between SOI and the rest (which pushes
    the SOF marker ``count x size`` bytes further in)."""
    segment = b"\xff\xef" + struct.pack(">H", size + 2) + bytes(size)
    return frame[:2] + segment * count + frame[2:]


def jp2_wrapped(codestream: bytes, rows: int, cols: int) -> bytes:
    """A raw J2K codestream wrapped in a minimal greyscale JP2 file (signature, ftyp, jp2h, jp2c boxes)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">L", 8 + len(payload)) + kind + payload

    siz = _j2k_siz_offset(codestream)
    precision = codestream[siz + 42]
    ihdr = box(b"ihdr", struct.pack(">LLHBBBB", rows, cols, 1, precision, 7, 0, 0))
    colr = box(b"colr", struct.pack(">BBBL", 1, 0, 0, 17))  # enumerated colour space 17: greyscale
    return (
        box(b"jP  ", b"\r\n\x87\n")
        + box(b"ftyp", b"jp2 " + struct.pack(">L", 0) + b"jp2 ")
        + box(b"jp2h", ihdr + colr)
        + box(b"jp2c", codestream)
    )


def jp2_with_empty_box(codestream: bytes, rows: int, cols: int) -> bytes:
    """A JP2 file whose ``ftyp`` box declares length 0 ("up to the end"), before the codestream box: pydicom's
    ``get_j2k_parameters``, which its decoders call first, loops forever on it."""
    jp2 = jp2_wrapped(codestream, rows, cols)
    return jp2[:12] + struct.pack(">L", 0) + jp2[16:]


def set_rle_segments(frame: bytes, count: int) -> bytes:
    """An RLE frame whose 64-byte header declares ``count`` segments (the offsets are left as they are)."""
    return struct.pack("<L", count) + frame[4:]


# ------------------------------------------------------------------------------------ address-space limit
_CAPPED_LOADER = textwrap.dedent(
    """
    import resource, sys
    from radmi.errors import DicomError
    def cap(extra):
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
        limit = extra if sys.argv[1] == "decode" else vm + extra
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv[1] == "decode":
        from radmi.transforms.dicom_decode import read_xray_dicom as load
    else:
        from radmi.transforms.dicom import LoadXRayDicom
        load = LoadXRayDicom()
    cap(int(sys.argv[3]))
    try:
        load(sys.argv[2])
        print("loaded")
    except DicomError as err:
        print("radmi error:", err.reason)
    """
)


def run_capped(path: Path, mode: str, cap_bytes: int = 2 * 2**30) -> subprocess.CompletedProcess:
    """Load ``path`` in a subprocess under an address-space limit (as ``test_rlimit_subprocess_...`` does).

    ``mode="decode"``: ``read_xray_dicom`` under an absolute ``cap_bytes`` of address space; ``"transform"``:
    ``LoadXRayDicom`` under its import footprint + ``cap_bytes`` (torch maps far more than 2 GB at import).
    It prints ``radmi error: <reason>`` or ``loaded``; a kill shows as a non-zero return code.
    """
    return subprocess.run(
        [sys.executable, "-c", _CAPPED_LOADER, mode, str(path), str(cap_bytes)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=TESTS,
    )


def both_raise(path: Path, match: str, **kwargs) -> None:
    """The pixel reader and the header-only reader both refuse ``path`` with a DicomError naming it."""
    for reader in (read_xray_dicom, read_xray_dicom_header):
        with pytest.raises(DicomError, match=match) as info:
            reader(path, **kwargs)
        assert info.value.path == str(path)
