"""Hostile-input hardening (issue 17): limits before decoding, every failure a radmi error naming the file."""

from __future__ import annotations

import logging
import os
import signal

import numpy as np
import pytest
from dicom_factory import known_pixels, write_dicom, xray_dataset
from hostile_factory import (
    both_raise,
    gzip_bomb,
    huge_declared_dicom,
    png_with_declared_size,
    raw_element,
    run_capped,
)
from PIL import Image
from pydicom import uid

from radmi.errors import DicomError, ImageError
from radmi.transforms.dicom_decode import read_xray_dicom, read_xray_dicom_header
from radmi.transforms.file_checks import file_problem, open_regular_file


# ------------------------------------------------------------------------------------ limits before decoding
def test_huge_declared_size_is_refused_from_the_header(tmp_path):
    path = huge_declared_dicom(tmp_path / "bomb.dcm")
    assert path.stat().st_size < 4096
    both_raise(path, "65500 x 65500 .* larger than the limit")


def test_max_pixels_is_configurable(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", xray_dataset(known_pixels(rows=40, cols=30)))
    both_raise(path, "1,200 pixels is larger than the limit of 1,000", max_pixels=1000)
    assert read_xray_dicom(path, max_pixels=1200)[0].shape == (40, 30)
    assert read_xray_dicom(path, max_pixels=None)[0].shape == (40, 30)


def test_compressed_huge_declared_size_is_refused(tmp_path):
    path = write_dicom(tmp_path / "rle.dcm", xray_dataset(known_pixels(rows=40, cols=40)), uid.RLELossless)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535
    ds.save_as(path)
    both_raise(path, "larger than the limit")


@pytest.mark.parametrize("rows_delta", [-1, 1])
def test_rows_columns_that_do_not_match_the_data_are_an_error(tmp_path, rows_delta):
    ds = xray_dataset(known_pixels(rows=40, cols=40))
    ds.Rows = 40 + rows_delta
    path = write_dicom(tmp_path / "sheared.dcm", ds)
    both_raise(path, "do not match the data" if rows_delta < 0 else "less than expected")


def test_gzip_bomb_stops_at_the_limit(tmp_path):
    path = gzip_bomb(tmp_path / "bomb.dcm.gz", decompressed_bytes=16 * 2**20)
    assert path.stat().st_size < 100_000
    both_raise(path, "decompresses to more than 1,048,576 bytes", max_gzip_bytes=2**20)


def test_rlimit_subprocess_ends_with_a_radmi_error(tmp_path):
    """Under a 2 GB address-space cap, a few-KB file declaring 65500 x 65500 ends in DicomError, not a kill.

    The pydicom/NumPy reader runs under an absolute 2 GiB RLIMIT_AS; the MONAI transform (torch maps far more
    than 2 GB of address space at import) under its import footprint + 2 GiB.
    """
    path = huge_declared_dicom(tmp_path / "bomb.dcm")
    for mode in ("decode", "transform"):
        done = run_capped(path, mode)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "radmi error:" in done.stdout and "larger than the limit" in done.stdout


# ------------------------------------------------------------------------------------ malformed headers
def test_garbage_number_of_frames(tmp_path):
    path = write_dicom(
        tmp_path / "f.dcm", raw_element(xray_dataset(known_pixels()), "NumberOfFrames", b"abc")
    )
    both_raise(path, "malformed NumberOfFrames 'abc'")


def test_garbage_spacing_becomes_unknown_with_a_warning(tmp_path, caplog):
    ds = raw_element(xray_dataset(known_pixels()), "ImagerPixelSpacing", b"abc\\def")
    path = write_dicom(tmp_path / "s.dcm", ds)
    with caplog.at_level(logging.WARNING, logger="radmi.transforms.dicom_decode"):
        _, meta = read_xray_dicom(path)
    assert np.isnan(meta["spacing"]).all() and meta["spacing_source"] == "none"
    assert "ImagerPixelSpacing" in caplog.text and "unknown" in caplog.text


@pytest.mark.parametrize("spacing", [(0.0, 0.0), (-0.1, 0.1), (0.1, float("inf"))])
def test_zero_negative_or_infinite_spacing_is_unknown(tmp_path, spacing, caplog):
    ds = xray_dataset(known_pixels(), pixel_spacing=spacing, imager_pixel_spacing=None)
    path = write_dicom(tmp_path / "s.dcm", ds)
    with caplog.at_level(logging.WARNING):
        meta = read_xray_dicom_header(path)
    assert np.isnan(meta["spacing"]).all() and meta["spacing_source"] == "none"
    assert "PixelSpacing" in caplog.text


def test_bad_pixel_spacing_falls_back_to_imager_pixel_spacing(tmp_path):
    ds = xray_dataset(known_pixels(), pixel_spacing=(0.0, 0.0), imager_pixel_spacing=(0.2, 0.2))
    meta = read_xray_dicom_header(write_dicom(tmp_path / "s.dcm", ds))
    assert meta["spacing_source"] == "ImagerPixelSpacing" and list(meta["spacing"]) == [0.2, 0.2]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("RescaleSlope", b"NaN"),
        ("RescaleIntercept", b"inf"),
        ("WindowCenter", b"nan"),
        ("WindowWidth", b"-inf"),
    ],
)
def test_non_finite_rescale_or_window_is_an_error(tmp_path, keyword, value):
    ds = xray_dataset(known_pixels(), rescale=(1.0, 0.0), window=(2000.0, 1000.0))
    path = write_dicom(tmp_path / "n.dcm", raw_element(ds, keyword, value))
    both_raise(path, f"{keyword} is not finite")


def test_malformed_rescale_is_an_error(tmp_path):
    ds = xray_dataset(known_pixels(), rescale=(1.0, 0.0))
    path = write_dicom(tmp_path / "n.dcm", raw_element(ds, "RescaleSlope", b"abc"))
    both_raise(path, "malformed RescaleSlope")


@pytest.mark.parametrize("which", ["voi_lut", "modality_lut"])
def test_lut_shorter_than_its_descriptor(tmp_path, which):
    ds = xray_dataset(known_pixels(bits_stored=12), **{which: (list(range(4096)), 0, 12)})
    sequence = ds.VOILUTSequence if which == "voi_lut" else ds.ModalityLUTSequence
    sequence[0].LUTData = list(range(100))
    path = write_dicom(tmp_path / "lut.dcm", ds)
    both_raise(path, "LUT holds 100 entries, fewer than the 4096")


def test_non_finite_output_is_an_error(tmp_path, monkeypatch):
    # a pipeline that yields NaN without a non-finite header value (belt and braces behind the header checks)
    from radmi.transforms import dicom_decode

    path = write_dicom(tmp_path / "a.dcm", xray_dataset(known_pixels()))
    monkeypatch.setattr(dicom_decode, "_stored_to_unit_float32", lambda p, ds, step: np.full(p.shape, np.nan))
    with pytest.raises(DicomError, match="non-finite"):
        read_xray_dicom(path)


def test_modality_outside_radiography_is_an_error_by_default(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", xray_dataset(known_pixels(), modality="CT"))
    both_raise(path, "Modality CT is not a projection radiograph")
    assert read_xray_dicom(path, allowed_modalities=None)[0].shape == (67, 45)
    assert read_xray_dicom(path, allowed_modalities=("CT",))[0].shape == (67, 45)
    for modality in ("CR", "DX", "DR", "PX", ""):
        ok = write_dicom(
            tmp_path / f"{modality or 'none'}.dcm", xray_dataset(known_pixels(), modality=modality)
        )
        assert read_xray_dicom(ok)[1]["modality"] == modality


def test_transform_takes_the_limits(tmp_path):
    from radmi.transforms.dicom import LoadXRayd

    path = write_dicom(tmp_path / "ct.dcm", xray_dataset(known_pixels(), modality="CT"))
    with pytest.raises(DicomError, match="Modality CT"):
        LoadXRayd(keys="image")({"image": path})
    assert LoadXRayd(keys="image", allowed_modalities=None)({"image": path})["image"].shape == (1, 67, 45)
    with pytest.raises(DicomError, match="larger than the limit"):
        LoadXRayd(keys="image", max_pixels=10, allowed_modalities=None)({"image": path})


# ------------------------------------------------------------------------------------ PNG/JPG
def test_png_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    from radmi.transforms.image import read_xray_image

    path = png_with_declared_size(
        tmp_path / "big.png", 12000, 12000
    )  # 144 Mpx: over 80 Mpx, under Pillow's 2x
    with pytest.raises(ImageError, match="larger than the limit of 80,000,000") as info:
        read_xray_image(path)
    assert info.value.path == str(path)


def test_pillow_decompression_bomb_becomes_an_image_error(tmp_path):
    from radmi.transforms.image import read_xray_image

    path = png_with_declared_size(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageError, match="decompression-bomb"):
        read_xray_image(path, max_pixels=None)


def test_png_max_pixels_is_configurable(tmp_path):
    from radmi.transforms.image import LoadXRayImage

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(path)
    with pytest.raises(ImageError, match="600 pixels"):
        LoadXRayImage(max_pixels=500)(path)
    assert LoadXRayImage(max_pixels=600)(path).shape == (1, 30, 20)


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"\xff\xd8\xff\xe0" + b"\x00" * 30, b""])
def test_garbage_png_jpg_is_an_image_error(tmp_path, data):
    from radmi.transforms.image import read_xray_image

    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="cannot read the image"):
        read_xray_image(path)


# ------------------------------------------------------------------------------------ links and special files
@pytest.fixture
def special_files(tmp_path):
    fifo = tmp_path / "fifo.dcm"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.dcm"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.dcm"
    dangling.symlink_to(tmp_path / "nowhere.dcm")
    folder = tmp_path / "folder.dcm"
    folder.mkdir()
    return {"FIFO": fifo, "link loop": loop, "dangling": dangling, "folder": folder}


def _alarm(seconds: int):
    def fail(*_):
        raise TimeoutError("blocked")

    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


def test_special_files_are_named_and_never_block(special_files):
    _alarm(20)
    try:
        for kind, path in special_files.items():
            reason = file_problem(path)
            assert reason is not None and kind.split()[-1].lower() in reason.lower(), (kind, reason)
            with pytest.raises(DicomError, match=kind.split()[-1]):
                read_xray_dicom(path)
            with pytest.raises(DicomError, match=kind.split()[-1]):
                read_xray_dicom_header(path)
            with pytest.raises(ImageError):
                from radmi.transforms.image import read_xray_image

                read_xray_image(path)
    finally:
        signal.alarm(0)


def test_a_link_to_a_regular_file_is_followed(tmp_path):
    target = write_dicom(tmp_path / "a.dcm", xray_dataset(known_pixels()))
    link = tmp_path / "link.dcm"
    link.symlink_to(target)
    assert file_problem(link) is None
    with open_regular_file(link) as file:
        assert file.read(4) == target.read_bytes()[:4]
    assert read_xray_dicom(link)[0].shape == (67, 45)
