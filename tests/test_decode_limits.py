"""Limits checked from the header before any pixel is decoded (issue 17): Deflated datasets and codestream sizes.

- A file in the Deflated Explicit VR Little Endian transfer syntax is inflated by pydicom whole, in memory,
  before anything else; radmi first streams it through zlib in bounded chunks, counting against
  ``max_gzip_bytes``, and refuses it past the limit.
- A compressed first frame whose codestream header (JPEG SOFn, JPEG-LS SOF55, JPEG 2000 SIZ, RLE header)
  disagrees with Rows x Columns, SamplesPerPixel or ``max_pixels`` is refused before the codec is called.
"""

from __future__ import annotations

import signal
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    jpeg_baseline_dataset,
    jpeg_lossless_dataset,
    known_pixels,
    write_dicom,
    xray_dataset,
)
from hostile_factory import (
    both_raise,
    deflate_bomb,
    edit_first_frame,
    gzipped,
    jp2_with_empty_box,
    jp2_wrapped,
    run_capped,
    set_codestream_size,
    set_j2k_components,
    set_rle_segments,
    set_rows_columns,
    with_app_segments,
    write_deflated,
)
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import Decoder

from radmi.errors import DicomError
from radmi.transforms.dicom_decode import read_dicom_header, read_xray_dicom, read_xray_dicom_header
from radmi.transforms.file_checks import check_inflated_size

#: the default cap (max_gzip_bytes=None, max_pixels 80 Mpx): 4 bytes per pixel + 64 MiB
DEFAULT_LIMIT = 4 * 80_000_000 + 64 * 2**20


# ------------------------------------------------------------------------------------ Deflated transfer syntax
def test_deflate_bomb_stops_at_the_limit(tmp_path):
    path = deflate_bomb(tmp_path / "bomb.dcm", inflated_bytes=64 * 2**20)
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    both_raise(path, r"deflated dataset .* inflates to more than 1,048,576 bytes", max_gzip_bytes=2**20)
    assert time.perf_counter() - started < 10


def test_deflate_bomb_under_the_default_limit(tmp_path):
    path = deflate_bomb(tmp_path / "bomb.dcm", inflated_bytes=2 * 2**30)
    with pytest.raises(DicomError, match=f"inflates to more than {DEFAULT_LIMIT:,} bytes"):
        read_xray_dicom(path)
    with pytest.raises(DicomError, match="inflates to more than"):  # the tag reader of manifest builders too
        read_dicom_header(path, ["StudyInstanceUID"])
    # the limit follows max_pixels like the .dcm.gz limit: 4 bytes per pixel + 64 MiB
    with pytest.raises(DicomError, match=f"more than {4 * 1000 + 64 * 2**20:,} bytes"):
        read_xray_dicom_header(path, max_pixels=1000)


def test_deflate_check_memory_stays_at_one_chunk(tmp_path):
    path = deflate_bomb(tmp_path / "bomb.dcm", inflated_bytes=96 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(DicomError, match="inflates to more than"):
            read_xray_dicom_header(path, max_gzip_bytes=64 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak {peak:,} bytes while counting 64 MiB"


def test_check_inflated_size_counts_without_keeping(tmp_path):
    data = bytes(range(256)) * 4096
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = compressor.compress(data) + compressor.flush()
    (tmp_path / "d").write_bytes(raw)
    with open(tmp_path / "d", "rb") as file:
        assert check_inflated_size(file, "d", len(data)) == len(data)
    with open(tmp_path / "d", "rb") as file, pytest.raises(DicomError, match=f"more than {len(data) - 1:,}"):
        check_inflated_size(file, "d", len(data) - 1, DicomError)


def test_deflate_bomb_under_an_address_space_limit_ends_in_a_radmi_error(tmp_path):
    """A 6 GiB-inflating file under a 2 GiB address-space cap: a DicomError from the limit, not a kill (nor a
    MemoryError turned into one: without the streaming check pydicom would ask zlib for the whole 6 GiB)."""
    path = deflate_bomb(tmp_path / "bomb.dcm", inflated_bytes=6 * 2**30)
    for mode in ("decode", "transform"):
        done = run_capped(path, mode)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "radmi error:" in done.stdout and "inflates to more than" in done.stdout, done.stdout


def test_gzip_holding_a_deflate_bomb_stays_bounded(tmp_path):
    path = deflate_bomb(tmp_path / "bomb.dcm.gz", inflated_bytes=64 * 2**20, gzipped=True)
    assert path.stat().st_size < 2**20  # the gzip layer itself is under the limit
    both_raise(path, r"deflated dataset .* inflates to more than 1,048,576 bytes", max_gzip_bytes=2**20)
    big = deflate_bomb(tmp_path / "big.dcm.gz", inflated_bytes=2 * 2**30, gzipped=True)
    with pytest.raises(DicomError, match="inflates to more than"):
        read_dicom_header(big, ["StudyInstanceUID"])  # the tag reader streams the gzip file


def test_deflated_dicom_still_decodes_exactly(tmp_path):
    stored = known_pixels(rows=40, cols=30)
    plain = write_dicom(tmp_path / "plain.dcm", xray_dataset(stored, window=(2000.0, 1000.0)))
    deflated = write_deflated(tmp_path / "dfl.dcm", xray_dataset(stored, window=(2000.0, 1000.0)))
    assert pydicom.dcmread(deflated).file_meta.TransferSyntaxUID == uid.DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(pydicom.dcmread(deflated).pixel_array, stored)
    expected = read_xray_dicom(plain)[0]
    for path in (deflated, write_deflated(tmp_path / "dfl.dcm.gz", xray_dataset(stored), gzipped=True)):
        unit, meta = read_xray_dicom(path, voi="first_window") if path == deflated else read_xray_dicom(path)
        if path == deflated:
            np.testing.assert_array_equal(unit, expected)
        else:
            np.testing.assert_array_equal(unit, (stored / 4095.0).astype(np.float32))
        assert meta["transfer_syntax_uid"] == uid.DeflatedExplicitVRLittleEndian
        assert read_xray_dicom_header(path)["original_shape"].tolist() == [40, 30]


def test_pydicoms_deflated_test_file_decodes_like_pydicom(tmp_path):
    path = get_testdata_file("image_dfl.dcm")
    ds = pydicom.dcmread(path)
    assert "RescaleSlope" not in ds and "WindowCenter" not in ds and ds.BitsStored == 8
    unit, _ = read_xray_dicom(path, voi="none", allowed_modalities=None)
    np.testing.assert_array_equal(unit, (ds.pixel_array / 255.0).astype(np.float32))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_broken_deflate_stream_is_a_dicom_error(tmp_path, damage):
    path = write_deflated(tmp_path / "dfl.dcm", xray_dataset(known_pixels(rows=40, cols=30)))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(data[:400] + bytes([0xFF]) * 64 + data[464:])
    both_raise(path, "deflated dataset|truncated or corrupt")


# ------------------------------------------------------------------------------------ codestream headers
@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if pydicom's pixel decoding starts: radmi's ``ds.pixel_array`` or any decoder plug-in."""
    calls: list[str] = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called: the codestream should have been refused before decoding")

        return call

    monkeypatch.setattr(Dataset, "convert_pixel_data", refuse("Dataset.convert_pixel_data"))
    monkeypatch.setattr(Decoder, "as_array", refuse("Decoder.as_array"))
    monkeypatch.setattr(Decoder, "iter_array", refuse("Decoder.iter_array"))
    return calls


def _factory_file(tmp_path: Path, kind: str) -> tuple[Path, np.ndarray | None]:
    """A greyscale single-frame compressed DICOM of 64 x 48 and its stored values (None: lossy)."""
    stored = known_pixels(rows=64, cols=48)
    if kind == "jpeg_baseline":
        pixels = known_pixels(rows=64, cols=48, bits_stored=8)
        return write_dicom(tmp_path / f"{kind}.dcm", jpeg_baseline_dataset(pixels)), None
    if kind == "jpeg_lossless":
        return write_dicom(tmp_path / f"{kind}.dcm", jpeg_lossless_dataset(stored)), stored
    syntax = {"jpeg_ls": uid.JPEGLSLossless, "j2k": uid.JPEG2000Lossless, "jp2": uid.JPEG2000Lossless}[kind]
    path = write_dicom(tmp_path / f"{kind}.dcm", xray_dataset(stored), syntax)
    if kind == "jp2":
        edit_first_frame(path, lambda frame: jp2_wrapped(frame, 64, 48))
    return path, stored


FACTORY_KINDS = ["jpeg_baseline", "jpeg_lossless", "jpeg_ls", "j2k", "jp2"]
# greyscale single-frame compressed files shipped with pydicom (NM/MR: read with allowed_modalities=None)
PYDICOM_FILES = [
    "JPEG2000.dcm",  # JPEG 2000, 1024 x 256
    "JPGExtended.dcm",  # JPEG extended 12-bit, 1024 x 256
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS, 64 x 64
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless, 64 x 64
]


@pytest.mark.parametrize("kind", FACTORY_KINDS)
def test_unmodified_compressed_files_decode_as_before(tmp_path, kind):
    path, stored = _factory_file(tmp_path, kind)
    unit, meta = read_xray_dicom(path)
    assert unit.shape == (64, 48) and read_xray_dicom_header(path)["original_shape"].tolist() == [64, 48]
    if stored is not None:
        np.testing.assert_array_equal(unit, (stored / 4095.0).astype(np.float32))
    if kind == "jp2":
        frame = next(pydicom.encaps.generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
        assert frame.startswith(b"\x00\x00\x00\x0cjP  ")


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_test_files_decode_like_pydicom(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    unit, _ = read_xray_dicom(path, voi="none", allowed_modalities=None)
    assert unit.shape == (ds.Rows, ds.Columns) == ds.pixel_array.shape
    # voi "none": the modality LUT output over its range; monotonic in the stored values
    order = np.argsort(ds.pixel_array, axis=None, kind="stable")
    assert np.all(np.diff(unit.ravel()[order]) >= 0)


def test_the_no_decoding_fixture_sees_decoding(tmp_path, no_decoding):
    path, _ = _factory_file(tmp_path, "j2k")
    with pytest.raises(DicomError, match="cannot decode the pixel data"):
        read_xray_dicom(path)
    assert no_decoding  # the patched entry point is the one radmi goes through


@pytest.mark.parametrize("kind", FACTORY_KINDS)
@pytest.mark.parametrize(("rows", "cols"), [(65, 48), (64, 47), (48, 64)])
def test_rows_columns_disagreeing_with_the_codestream(tmp_path, no_decoding, kind, rows, cols):
    path, _ = _factory_file(tmp_path, kind)
    set_rows_columns(path, rows, cols)
    both_raise(path, f"codestream declares 64 x 48 pixels .*but Rows x Columns is {rows} x {cols}")
    assert no_decoding == []


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_files_with_patched_rows_are_refused_before_decoding(tmp_path, no_decoding, name):
    ds = pydicom.dcmread(get_testdata_file(name))
    rows, cols = int(ds.Rows), int(ds.Columns)
    ds.Rows = rows // 2
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    both_raise(
        path, f"codestream declares {rows} x {cols} pixels .*Rows x Columns is {rows // 2} x {cols}",
        allowed_modalities=None,
    )  # fmt: skip
    assert no_decoding == []


@pytest.mark.parametrize("kind", FACTORY_KINDS)
def test_codestream_declaring_a_huge_size_is_refused(tmp_path, no_decoding, kind):
    path, _ = _factory_file(tmp_path, kind)
    edit_first_frame(path, lambda frame: set_codestream_size(frame, 65535, 65535))
    both_raise(
        path,
        r"codestream declares 65535 x 65535 = 4,294,836,225 pixels .*larger than the limit of 80,000,000",
    )
    assert no_decoding == []
    # within max_pixels: still a mismatch with Rows x Columns
    edit_first_frame(path, lambda frame: set_codestream_size(frame, 640, 480))
    both_raise(path, "codestream declares 640 x 480 pixels", max_pixels=10**6)
    assert no_decoding == []


@pytest.mark.parametrize("kind", ["j2k", "jp2"])
def test_codestream_with_other_components_is_refused(tmp_path, no_decoding, kind):
    path, _ = _factory_file(tmp_path, kind)
    edit_first_frame(path, lambda frame: set_j2k_components(frame, 3))
    both_raise(path, "JPEG 2000 codestream holds 3 components but SamplesPerPixel is 1")
    assert no_decoding == []


@pytest.mark.parametrize("kind", FACTORY_KINDS)
@pytest.mark.parametrize("damage", ["cut", "garbled", "empty"])
def test_truncated_or_garbled_codestream_header_is_a_dicom_error(tmp_path, no_decoding, kind, damage):
    path, _ = _factory_file(tmp_path, kind)

    def edit(frame: bytes) -> bytes:
        if damage == "cut":
            return (
                frame[: frame.index(b"\xff\x4f") + 20] if kind.startswith("j") and "2" in kind else frame[:6]
            )
        if damage == "garbled":
            return bytes(b ^ 0x5A for b in frame[:200]) + frame[200:]
        return b"\x00\x00"

    edit_first_frame(path, edit)
    both_raise(path, "cannot read the codestream header of the first frame")
    assert no_decoding == []


def test_jp2_box_of_length_zero_is_refused_not_looped_on(tmp_path, no_decoding):
    path, _ = _factory_file(tmp_path, "j2k")
    edit_first_frame(path, lambda frame: jp2_with_empty_box(frame, 64, 48))

    def hung(*_):
        raise TimeoutError("the JP2 box walk did not end")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        both_raise(path, "malformed JP2 box b'ftyp' of length 0")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert no_decoding == []


def test_jpeg_with_large_app_segments_before_the_sof_still_decodes(tmp_path, no_decoding, monkeypatch):
    path, _ = _factory_file(tmp_path, "jpeg_baseline")
    edit_first_frame(path, lambda frame: with_app_segments(frame, 3))  # SOF ~192 KiB in: past the first read
    meta = read_xray_dicom_header(path)
    assert meta["original_shape"].tolist() == [64, 48]
    set_rows_columns(path, 65, 48)
    both_raise(path, "codestream declares 64 x 48 pixels")
    assert no_decoding == []
    monkeypatch.undo()
    set_rows_columns(path, 64, 48)
    assert read_xray_dicom(path)[0].shape == (64, 48)


def test_rle_header_segments_must_match_samples_and_bits(tmp_path, no_decoding):
    path = write_dicom(tmp_path / "rle.dcm", xray_dataset(known_pixels(rows=64, cols=48)), uid.RLELossless)
    edit_first_frame(path, lambda frame: set_rle_segments(frame, 1))
    both_raise(
        path, r"RLE header declares 1 segments but SamplesPerPixel x BitsAllocated \(1 x 16 bits\) needs 2"
    )
    edit_first_frame(path, lambda frame: set_rle_segments(frame, 99))
    both_raise(path, "malformed RLE header")
    edit_first_frame(path, lambda frame: frame[:20])
    both_raise(path, "malformed RLE header")
    assert no_decoding == []


def test_rle_files_decode_as_before(tmp_path):
    stored = known_pixels(rows=64, cols=48)
    path = write_dicom(tmp_path / "rle.dcm", xray_dataset(stored), uid.RLELossless)
    np.testing.assert_array_equal(read_xray_dicom(path)[0], (stored / 4095.0).astype(np.float32))
    small = get_testdata_file("MR_small_RLE.dcm")
    assert read_xray_dicom(small, allowed_modalities=None)[0].shape == (64, 64)


def test_compressed_file_in_gzip_is_checked_too(tmp_path, no_decoding):
    path, _ = _factory_file(tmp_path, "j2k")
    set_rows_columns(path, 65, 48)
    gz = gzipped(tmp_path / "j2k.dcm.gz", path.read_bytes())
    both_raise(gz, "codestream declares 64 x 48 pixels .*Rows x Columns is 65 x 48")
    assert no_decoding == []


@pytest.mark.parametrize("kind", ["jpeg_baseline", "jpeg_lossless"])
def test_jpeg_fill_bytes_before_a_marker_are_read_not_refused(tmp_path, no_decoding, monkeypatch, kind):
    # T.81 B.1.1.2: any marker may be preceded by 0xFF fill bytes; pydicom's SOF walk stops at them
    path, stored = _factory_file(tmp_path, kind)
    edit_first_frame(path, lambda frame: frame[:2] + b"\xff" * 5 + frame[2:])  # fill bytes before the 1st marker
    assert read_xray_dicom_header(path)["original_shape"].tolist() == [64, 48]
    set_rows_columns(path, 65, 48)
    both_raise(path, "codestream declares 64 x 48 pixels")  # the size is still checked through the fill bytes
    assert no_decoding == []
    monkeypatch.undo()
    set_rows_columns(path, 64, 48)
    unit = read_xray_dicom(path)[0]
    assert unit.shape == (64, 48)
    if stored is not None:
        np.testing.assert_array_equal(unit, (stored / 4095.0).astype(np.float32))


def test_forged_basic_offset_table_length_is_not_read_into_memory(tmp_path):
    path, _ = _factory_file(tmp_path, "j2k")
    data = bytearray(path.read_bytes())
    at = data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) OB, 2 reserved, undefined length, then the BOT item
    assert data[at + 12 : at + 16] == b"\xfe\xff\x00\xe0"
    data[at + 16 : at + 20] = (0xFFFFFFF0).to_bytes(4, "little")  # a 4 GiB offset table in a few-KB file
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        for reader in (read_xray_dicom, read_xray_dicom_header):
            with pytest.raises(DicomError) as info:
                reader(path)
            assert info.value.path == str(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
