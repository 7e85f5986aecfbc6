"""Hostile inputs for the hardening tests and the regression corpus: DICOM headers that lie, bombs, links, FIFOs.

Everything is generated (nothing binary is committed). :func:`raw_element` writes a header value exactly as
given (pydicom refuses to *assign* ``NumberOfFrames = "abc"``, but real files carry such values), so the reader
meets it as it would in a file from the wild.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

from dicom_factory import known_pixels, write_dicom, xray_dataset
from PIL import Image
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag


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
