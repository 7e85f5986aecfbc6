"""DICOM -> tensor: pixel-exact values against analytic expectations and pydicom's own decoding."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import (
    LOSSLESS_SYNTAXES,
    PATIENT_ID,
    PATIENT_NAME,
    jpeg_baseline_dataset,
    jpeg_bytes,
    jpeg_lossless_dataset,
    known_pixels,
    sr_dataset,
    write_dicom,
    xray_dataset,
)
from monai.data import MetaTensor
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels.decoders.base import get_decoder

from radmi.errors import DicomError, MissingCodecError
from radmi.transforms import dicom_decode as dicom_module
from radmi.transforms.dicom import (
    LoadXRay,
    LoadXRayd,
    LoadXRayDicom,
    LoadXRayDicomd,
    read_xray_dicom,
    read_xray_dicom_header,
)


def load(path, **kwargs) -> np.ndarray:
    image = LoadXRayDicom(**kwargs)(path)
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32 and image.ndim == 3
    return image[0].numpy()


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, scaled to [0, 1] (written out independently of pydicom)."""
    values = values.astype(np.float64)
    out = (values - (center - 0.5)) / (width - 1) + 0.5
    out[values <= center - 0.5 - (width - 1) / 2] = 0.0
    out[values > center - 0.5 + (width - 1) / 2] = 1.0
    return out


# ------------------------------------------------------------------------------------ photometric and bits
@pytest.mark.parametrize("bits", [12, 15, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_stored_range_normalization_and_inversion(tmp_path, bits, photometric):
    stored = known_pixels(bits_stored=bits)
    path = write_dicom(tmp_path / "x.dcm", xray_dataset(stored, bits_stored=bits, photometric=photometric))
    expected = stored / (2.0**bits - 1)  # the BitsStored range, not 65535
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    image = load(path)
    np.testing.assert_array_equal(image, expected.astype(np.float32))
    assert image.shape == (67, 45)  # rows x cols: not transposed


def test_signed_pixels_use_the_signed_range(tmp_path):
    stored = known_pixels(bits_stored=16, signed=True)
    path = write_dicom(tmp_path / "s.dcm", xray_dataset(stored, bits_stored=16, signed=True))
    np.testing.assert_array_equal(load(path), ((stored + 32768.0) / 65535.0).astype(np.float32))


def test_rescale_slope_intercept_without_voi(tmp_path):
    stored = known_pixels(bits_stored=12)
    ds = xray_dataset(stored, bits_stored=12, rescale=(-0.5, 100.0))  # negative slope flips the value order
    path = write_dicom(tmp_path / "r.dcm", ds)
    modality = stored * -0.5 + 100.0
    low, high = 4095 * -0.5 + 100.0, 100.0
    np.testing.assert_allclose(load(path), (modality - low) / (high - low), rtol=0, atol=1e-7)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_window_after_rescale(tmp_path, photometric):
    stored = known_pixels(bits_stored=12)
    ds = xray_dataset(
        stored, bits_stored=12, rescale=(2.0, -1000.0), window=(2000.0, 3001.0), photometric=photometric
    )
    path = write_dicom(tmp_path / "w.dcm", ds)
    expected = linear_window(stored * 2.0 - 1000.0, 2000.0, 3001.0)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    image = load(path)
    np.testing.assert_allclose(image, expected, rtol=0, atol=2e-7)
    assert 0.0 < expected.mean() < 1.0 and (expected == 0).any() and (expected == 1).any()  # window bites


def test_voi_options_pick_the_right_step(tmp_path):
    stored = known_pixels(bits_stored=12)
    lut = (np.round(4000 * np.sqrt(np.arange(3000) / 2999)) + 50).astype(int)  # entries span 50..4050
    ds = xray_dataset(stored, bits_stored=12, window=[(1500, 1001), (3000, 501)], voi_lut=(lut, 500, 16))
    path = write_dicom(tmp_path / "v.dcm", ds)
    lut_values = lut[np.clip(stored.astype(int) - 500, 0, len(lut) - 1)]
    np.testing.assert_allclose(load(path, voi="auto"), (lut_values - 50) / 4000.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(load(path, voi="first_window"), linear_window(stored, 1500, 1001), atol=2e-7)
    np.testing.assert_array_equal(load(path, voi="none"), (stored / 4095.0).astype(np.float32))
    np.testing.assert_allclose(load(path, voi=(1000.0, 201.0)), linear_window(stored, 1000, 201), atol=2e-7)
    _, meta = read_xray_dicom(path, voi="first_window")
    assert meta["voi_applied"] == "window"


def test_sigmoid_window(tmp_path):
    stored = known_pixels(bits_stored=12)
    ds = xray_dataset(stored, bits_stored=12, window=(2048.0, 800.0), voi_function="SIGMOID")
    path = write_dicom(tmp_path / "sig.dcm", ds)
    expected = 1.0 / (1.0 + np.exp(-4.0 * (stored - 2048.0) / 800.0))  # PS3.3 C.11.2.1.3.1, scaled
    np.testing.assert_allclose(load(path), expected, rtol=0, atol=2e-7)


def test_modality_lut_sequence(tmp_path):
    stored = known_pixels(bits_stored=10)
    lut = np.arange(1024)[::-1] * 3 + 7  # decreasing: entries 7..3076
    path = write_dicom(
        tmp_path / "m.dcm", xray_dataset(stored, bits_stored=10, modality_lut=(lut, 0, 16))
    )  # 8 or 16 bits (PS3.3 C.11.1.1.1)
    np.testing.assert_allclose(load(path, voi="none"), (lut[stored] - 7) / (3076.0 - 7), rtol=0, atol=1e-7)


def test_table_path_equals_per_pixel_path(tmp_path, monkeypatch):
    """The stored-value table (fast path) gives the same floats as running pydicom on every pixel."""
    stored = known_pixels(bits_stored=14)
    ds = xray_dataset(
        stored, bits_stored=14, rescale=(1.5, -20.0), window=(9000, 12000), photometric="MONOCHROME1"
    )
    path = write_dicom(tmp_path / "t.dcm", ds)
    fast = load(path)
    monkeypatch.setattr(dicom_module, "_TABLE_MAX_BYTES", 0)
    np.testing.assert_array_equal(load(path), fast)


# ------------------------------------------------------------------------------------ meta
def test_meta_keys_and_privacy(tmp_path):
    stored = known_pixels(bits_stored=12)
    ds = xray_dataset(stored, photometric="MONOCHROME1", imager_pixel_spacing=(0.15, 0.2), view_position="AP")
    path = write_dicom(tmp_path / "meta.dcm", ds)
    image = LoadXRayDicom()(path)
    meta = image.meta
    np.testing.assert_array_equal(meta["spacing"], [0.15, 0.2])
    assert meta["spacing_source"] == "ImagerPixelSpacing"
    assert meta["photometric_interpretation"] == "MONOCHROME1" and meta["inverted"]
    np.testing.assert_array_equal(meta["original_shape"], [67, 45])
    assert meta["view_position"] == "AP"
    assert meta["sop_instance_uid"] == ds.SOPInstanceUID and meta["study_instance_uid"] == ds.StudyInstanceUID
    assert meta["bits_stored"] == 12 and meta["filename_or_obj"] == str(path)
    everything = repr(dict(meta))
    assert PATIENT_NAME not in everything and PATIENT_ID not in everything and "Doe" not in everything
    np.testing.assert_allclose(np.diag(image.affine.numpy())[:2], [0.15, 0.2])


def test_pixel_spacing_wins_over_imager_pixel_spacing_and_missing_is_nan(tmp_path):
    stored = known_pixels(4, 5)
    both = write_dicom(tmp_path / "b.dcm", xray_dataset(stored, pixel_spacing=(0.1, 0.1)))
    assert read_xray_dicom_header(both)["spacing_source"] == "PixelSpacing"
    np.testing.assert_array_equal(read_xray_dicom_header(both)["spacing"], [0.1, 0.1])
    none = write_dicom(tmp_path / "n.dcm", xray_dataset(stored, imager_pixel_spacing=None))
    assert np.isnan(read_xray_dicom_header(none)["spacing"]).all()


# ------------------------------------------------------------------------------------ compression
@pytest.mark.parametrize("syntax", LOSSLESS_SYNTAXES, ids=lambda s: s.keyword)
@pytest.mark.parametrize("bits", [12, 16])
def test_lossless_syntax_matches_uncompressed_twin(tmp_path, syntax, bits):
    stored = known_pixels(bits_stored=bits, seed=bits)
    plain = write_dicom(
        tmp_path / "plain.dcm", xray_dataset(stored, bits_stored=bits, photometric="MONOCHROME1")
    )
    packed = write_dicom(
        tmp_path / "packed.dcm", xray_dataset(stored, bits_stored=bits, photometric="MONOCHROME1"), syntax
    )
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(load(packed), load(plain))
    np.testing.assert_array_equal(load(plain), (1.0 - stored / (2.0**bits - 1)).astype(np.float32))


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [12, 15, 16])
def test_jpeg_lossless_process_14_matches_uncompressed_twin(tmp_path, bits, photometric):
    # pydicom has no encoder for this syntax; tests/jpeg_lossless_encoder.py writes the codestream (T.81 Annex H)
    stored = known_pixels(bits_stored=bits, seed=bits).astype(np.uint16)
    plain = write_dicom(
        tmp_path / "plain.dcm", xray_dataset(stored, bits_stored=bits, photometric=photometric)
    )
    packed = write_dicom(
        tmp_path / "jpeg_ll.dcm", jpeg_lossless_dataset(stored, bits_stored=bits, photometric=photometric)
    )
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == uid.JPEGLosslessSV1
    np.testing.assert_array_equal(load(packed), load(plain))


def test_jpeg_ls_near_lossless_error_is_bounded(tmp_path):
    stored = known_pixels(bits_stored=12)
    path = write_dicom(tmp_path / "nl.dcm", xray_dataset(stored), uid.JPEGLSNearLossless, jls_error=3)
    assert np.abs(load(path) * 4095.0 - stored).max() <= 3 + 1e-3  # NEAR=3 guarantees |error| <= 3 levels


def test_jpeg_2000_lossy_matches_pydicom_decode(tmp_path):
    stored = known_pixels(bits_stored=12)
    path = write_dicom(tmp_path / "j2k.dcm", xray_dataset(stored), uid.JPEG2000, j2k_cr=[4])
    reference = pydicom.dcmread(path).pixel_array / 4095.0
    np.testing.assert_allclose(load(path), np.clip(reference, 0, 1), rtol=0, atol=1e-7)


def test_jpeg_baseline_matches_pillow(tmp_path):
    rows, cols = np.mgrid[0:48, 0:40]
    stored = (rows * 4 + cols * 2).astype(np.uint8)  # smooth, so the JPEG stays close to it
    path = write_dicom(tmp_path / "jpg.dcm", jpeg_baseline_dataset(stored))
    pillow = np.asarray(Image.open(io.BytesIO(jpeg_bytes(path)))) / 255.0
    image = load(path)
    assert image.shape == (48, 40)
    # two IDCT implementations (pylibjpeg/libjpeg vs Pillow/libjpeg-turbo) may differ by one level
    assert np.abs(image - pillow).max() <= 1.0 / 255 + 1e-6
    assert np.abs(image * 255 - stored).max() <= 4


def test_gzipped_file_loads_like_the_plain_one(tmp_path):
    stored = known_pixels(bits_stored=12)
    plain = write_dicom(tmp_path / "a.dcm", xray_dataset(stored))
    packed = write_dicom(tmp_path / "a.dcm.gz", xray_dataset(stored), gzipped=True)
    np.testing.assert_array_equal(load(packed), load(plain))


# ------------------------------------------------------------------------------------ pydicom's files
def _pydicom_reference(name: str) -> np.ndarray:
    """pydicom's own pixel_array + modality + VOI functions, scaled by the range written out here."""
    ds = pydicom.dcmread(get_testdata_file(name))
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    signed = ds.PixelRepresentation == 1
    low, high = (
        (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
    )
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    low, high = low * slope + intercept, high * slope + intercept
    unit = np.clip((values - low) / (high - low), 0, 1)
    return 1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "JPGExtended.dcm", "JPEGLSNearLossless_16.dcm"]
)
def test_pydicom_test_files_match_pydicom_pipeline(name):
    np.testing.assert_allclose(
        load(get_testdata_file(name), allowed_modalities=None), _pydicom_reference(name), rtol=0, atol=2e-7
    )


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_pydicom_compressed_twins_of_mr_small(name):
    np.testing.assert_array_equal(
        load(get_testdata_file(name), allowed_modalities=None),
        load(get_testdata_file("MR_small.dcm"), allowed_modalities=None),
    )


# ------------------------------------------------------------------------------------ bad input
def _assert_dicom_error(path, match: str, error=DicomError, **kwargs):
    # pydicom's test files are CT, MR, NM, OT, ...: the modality check is tested on its own
    kwargs.setdefault("allowed_modalities", None)
    with pytest.raises(error, match=match) as info:
        LoadXRayDicom(**kwargs)(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file\n" * 20)
    _assert_dicom_error(path, "not a DICOM file")


def test_truncated_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", xray_dataset(known_pixels(bits_stored=12)))
    path.write_bytes(path.read_bytes()[:-400])
    _assert_dicom_error(path, "truncated|cannot decode")


def test_truncated_header(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", xray_dataset(known_pixels(bits_stored=12)))
    path.write_bytes(path.read_bytes()[:300])
    _assert_dicom_error(path, "truncated|no PixelData")


def test_truncated_gzip(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm.gz", xray_dataset(known_pixels(bits_stored=12)), gzipped=True)
    path.write_bytes(path.read_bytes()[:-50])
    _assert_dicom_error(path, "truncated")


def test_pydicom_truncated_file():
    _assert_dicom_error(get_testdata_file("MR_truncated.dcm"), "less than expected")


def test_no_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", sr_dataset())
    _assert_dicom_error(path, "no PixelData")
    with pytest.raises(DicomError, match="no PixelData"):
        read_xray_dicom_header(path)
    _assert_dicom_error(get_testdata_file("test-SR.dcm"), "no PixelData")


def test_multi_frame(tmp_path):
    frames = np.stack([known_pixels(seed=1), known_pixels(seed=2)])
    path = write_dicom(tmp_path / "mf.dcm", xray_dataset(frames, frames=2))
    _assert_dicom_error(path, "multi-frame")
    _assert_dicom_error(get_testdata_file("rtdose.dcm"), "multi-frame")


def test_colour(tmp_path):
    rgb = np.repeat(known_pixels(bits_stored=8)[..., None], 3, axis=-1)
    path = write_dicom(
        tmp_path / "rgb.dcm", xray_dataset(rgb, bits_stored=8, photometric="RGB", samples_per_pixel=3)
    )
    _assert_dicom_error(path, "colour")
    _assert_dicom_error(get_testdata_file("SC_rgb_rle.dcm"), "colour")
    _assert_dicom_error(get_testdata_file("examples_palette.dcm"), "colour")


def test_undecodable_codestream_names_the_file():
    # 12-bit lossy JPEG that neither pylibjpeg-libjpeg nor Pillow decodes
    _assert_dicom_error(get_testdata_file("JPEG-lossy.dcm"), "cannot decode the pixel data")


def test_missing_codec_names_the_package(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "j2k.dcm", xray_dataset(known_pixels()), uid.JPEG2000Lossless)
    decoder = get_decoder(uid.JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})  # as if no JPEG 2000 plug-in were installed
    _assert_dicom_error(path, "pip install pylibjpeg pylibjpeg-openjpeg", error=MissingCodecError)
    with pytest.raises(MissingCodecError):
        read_xray_dicom_header(path)


def test_bad_voi_option():
    with pytest.raises(ValueError, match="voi"):
        LoadXRayDicom(voi="brightest")


# ------------------------------------------------------------------------------------ MONAI's stock reader
def test_monai_pydicom_reader_differs_as_documented(tmp_path):
    """What docs/data.md says about MONAI's LoadImage(reader="PydicomReader"): transposed, not inverted,
    spacing 1 with only ImagerPixelSpacing."""
    from monai.transforms import LoadImage

    stored = known_pixels(bits_stored=12)
    path = write_dicom(tmp_path / "m1.dcm", xray_dataset(stored, photometric="MONOCHROME1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = LoadImage(reader="PydicomReader", image_only=True)(str(path))
    assert tuple(stock.shape) == (45, 67)  # cols x rows
    np.testing.assert_array_equal(stock.numpy(), stored.T)  # raw stored values, MONOCHROME1 not inverted
    np.testing.assert_array_equal(stock.meta["spacing"], [1.0, 1.0])
    ours = LoadXRayDicom()(path)
    assert tuple(ours.shape) == (1, 67, 45)
    np.testing.assert_array_equal(
        ours[0].numpy(), (1.0 - stock.numpy().T.astype(np.float64) / 4095.0).astype(np.float32)
    )


# ------------------------------------------------------------------------------------ dictionary and dispatcher
def test_dictionary_twin_and_dispatcher(tmp_path):
    stored = known_pixels(bits_stored=12)
    dcm = write_dicom(tmp_path / "a.dcm", xray_dataset(stored))
    bare = write_dicom(tmp_path / "1.2.840.99", xray_dataset(stored))  # UID-like name, no real suffix
    png = tmp_path / "a.png"
    Image.fromarray((stored * 16).astype(np.uint16)).save(png)
    sample = {"image": str(dcm), "report": "kept as is"}
    out = LoadXRayDicomd(keys="image")(sample)
    assert out["report"] == "kept as is" and sample["image"] == str(dcm)  # input dict not modified
    expected = (stored / 4095.0).astype(np.float32)
    np.testing.assert_array_equal(out["image"][0].numpy(), expected)
    np.testing.assert_array_equal(LoadXRay()(bare)[0].numpy(), expected)
    from_png = LoadXRayd()({"image": png})["image"]
    np.testing.assert_array_equal(from_png[0].numpy(), (stored * 16 / 65535.0).astype(np.float32))
    assert set(from_png.meta) >= set(out["image"].meta) - {"affine"}  # same keys, so mixed batches collate
