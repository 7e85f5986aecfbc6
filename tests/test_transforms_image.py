"""PNG/JPG loading and the aspect-preserving resize with its coordinate mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from radmi.errors import ImageError
from radmi.transforms.image import (
    LoadXRayImage,
    LoadXRayImaged,
    XRayResize,
    XRayResized,
    map_to_original,
    map_to_resized,
)


def grey_values(rows: int = 30, cols: int = 20, high: int = 255, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, high, size=(rows, cols), endpoint=True)
    values.flat[0], values.flat[-1] = 0, high
    return values


# ------------------------------------------------------------------------------------ loading
def test_png_8_bit(tmp_path):
    values = grey_values()
    Image.fromarray(values.astype(np.uint8), mode="L").save(tmp_path / "a.png")
    image = LoadXRayImage()(tmp_path / "a.png")
    assert (
        isinstance(image, MetaTensor) and image.dtype == torch.float32 and tuple(image.shape) == (1, 30, 20)
    )
    np.testing.assert_array_equal(image[0].numpy(), (values / 255.0).astype(np.float32))
    assert image.meta["bits_stored"] == 8
    np.testing.assert_array_equal(image.meta["original_shape"], [30, 20])


def test_png_16_bit_uses_the_16_bit_range(tmp_path):
    values = grey_values(high=65535)
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "a.png")
    image = LoadXRayImage()(tmp_path / "a.png")
    np.testing.assert_array_equal(image[0].numpy(), (values / 65535.0).astype(np.float32))
    assert image.meta["bits_stored"] == 16


def test_jpg_matches_pillow_decode(tmp_path):
    rows, cols = np.mgrid[0:32, 0:24]
    Image.fromarray((rows * 6 + cols * 3).astype(np.uint8), mode="L").save(tmp_path / "a.jpg", quality=90)
    decoded = np.asarray(Image.open(tmp_path / "a.jpg"))
    np.testing.assert_array_equal(
        LoadXRayImage()(tmp_path / "a.jpg")[0].numpy(), (decoded / 255.0).astype(np.float32)
    )


def test_rgb_that_is_grey_is_accepted(tmp_path):
    values = grey_values()
    rgb = np.repeat(values.astype(np.uint8)[..., None], 3, axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    out = LoadXRayImaged(keys="image")({"image": tmp_path / "rgb.png"})["image"]
    np.testing.assert_array_equal(out[0].numpy(), (values / 255.0).astype(np.float32))


def test_rgb_jpeg_of_a_grey_image_is_accepted(tmp_path):
    rows, cols = np.mgrid[0:32, 0:24]
    grey = (rows * 6 + cols * 3).astype(np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), mode="RGB").save(tmp_path / "g.jpg", quality=95)
    image = LoadXRayImage()(tmp_path / "g.jpg")[0].numpy()
    assert np.abs(image * 255 - grey).max() <= 4


def test_colour_image_raises(tmp_path):
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "red.png")
    with pytest.raises(ImageError, match="colour") as info:
        LoadXRayImage()(tmp_path / "red.png")
    assert str(tmp_path / "red.png") in str(info.value)


@pytest.mark.parametrize("content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_unreadable_or_truncated_raises(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="cannot read") as info:
        LoadXRayImage()(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_raises(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(grey_values(64, 64).astype(np.uint8), mode="L").save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cannot read"):
        LoadXRayImage()(path)


# ------------------------------------------------------------------------------------ resizing
def block_image(rows: int, cols: int, box: tuple[int, int, int, int]) -> MetaTensor:
    """1 x rows x cols zeros with ones in rows box[0]:box[1], cols box[2]:box[3]."""
    image = torch.zeros(1, rows, cols)
    image[0, box[0] : box[1], box[2] : box[3]] = 1.0
    return MetaTensor(image)


def test_pad_mode_scale_offset_and_content():
    # 40 x 20 -> longest side 10: scale 1/4, 10 x 5, then 5 columns of padding: 2 before, 3 after
    resized = XRayResize(10, mode="pad")(block_image(40, 20, (8, 16, 4, 12)))
    assert tuple(resized.shape) == (1, 10, 10)
    np.testing.assert_allclose(resized.meta["resize_scale"], [0.25, 0.25])
    np.testing.assert_allclose(resized.meta["resize_offset"], [0.0, 2.0], atol=1e-9)
    # area interpolation with a whole factor averages 4 x 4 blocks: the box lands exactly on rows 2:4, cols 3:5
    expected = torch.zeros(10, 10)
    expected[2:4, 1 + 2 : 3 + 2] = 1.0
    torch.testing.assert_close(resized[0].as_tensor(), expected)
    corners = np.array([[8.0, 4.0], [16.0, 12.0]])
    np.testing.assert_allclose(map_to_resized(corners, resized), [[2.0, 3.0], [4.0, 5.0]])


def test_crop_mode_scale_offset_and_content():
    # 40 x 20 -> shortest side 10: scale 1/2, 20 x 10, then centre crop of rows 5:15
    resized = XRayResize(10, mode="crop")(block_image(40, 20, (14, 20, 4, 8)))
    assert tuple(resized.shape) == (1, 10, 10)
    np.testing.assert_allclose(resized.meta["resize_scale"], [0.5, 0.5])
    np.testing.assert_allclose(resized.meta["resize_offset"], [-5.0, 0.0], atol=1e-9)
    expected = torch.zeros(10, 10)
    expected[7 - 5 : 10 - 5, 2:4] = 1.0
    torch.testing.assert_close(resized[0].as_tensor(), expected)


@pytest.mark.parametrize("mode", ["pad", "crop"])
@pytest.mark.parametrize("shape", [(53, 31), (31, 53), (64, 64)])
def test_mapping_round_trip(mode, shape):
    resized = XRayResize(24, mode=mode)(MetaTensor(torch.rand(1, *shape)))
    points = np.random.default_rng(1).uniform(0, min(shape), size=(50, 2))
    np.testing.assert_allclose(map_to_original(map_to_resized(points, resized.meta), resized.meta), points)
    tensor_points = torch.as_tensor(points)
    back = map_to_original(map_to_resized(tensor_points, resized), resized)
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, tensor_points)
    # the image's far corner lands on the far edge of the scaled (unpadded/uncropped) image
    far = map_to_resized(np.array([[shape[0], shape[1]]], dtype=float), resized)[0]
    near = map_to_resized(np.zeros((1, 2)), resized)[0]
    scaled = far - near
    assert (max(scaled) if mode == "pad" else min(scaled)) == pytest.approx(24)


def test_scale_and_offset_ignore_the_spacing_in_the_affine():
    """A DICOM's affine carries mm per pixel; the recorded mapping stays in pixels, the affine in mm."""
    affine = torch.diag(torch.tensor([0.2, 0.3, 1.0, 1.0], dtype=torch.float64))
    resized = XRayResize(10)(MetaTensor(torch.rand(1, 40, 20), affine=affine))
    np.testing.assert_allclose(resized.meta["resize_scale"], [0.25, 0.25])
    np.testing.assert_allclose(resized.meta["resize_offset"], [0.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(resized.pixdim.numpy(), [0.8, 1.2])


def test_resizing_twice_composes_to_the_loaded_image():
    image = MetaTensor(torch.rand(1, 40, 24))  # even padding at both sizes, so both routes agree
    once = XRayResize(10)(image)
    twice = XRayResize(10)(XRayResize(20)(image))
    np.testing.assert_allclose(twice.meta["resize_scale"], once.meta["resize_scale"])
    np.testing.assert_allclose(twice.meta["resize_offset"], once.meta["resize_offset"], atol=1e-9)
    np.testing.assert_allclose(
        once.meta["resize_offset"], [0.0, 2.0], atol=1e-9
    )  # 10 x 6, 2 columns each side
    np.testing.assert_array_equal(twice.meta["resize_input_shape"], [40, 24])


def test_dictionary_twin_keeps_loaded_meta(tmp_path):
    values = grey_values(30, 20)
    Image.fromarray(values.astype(np.uint8), mode="L").save(tmp_path / "a.png")
    sample = LoadXRayImaged()({"image": tmp_path / "a.png"})
    out = XRayResized(keys="image", size=16, mode="pad")(sample)["image"]
    assert tuple(out.shape) == (1, 16, 16)
    assert out.meta["filename_or_obj"] == str(tmp_path / "a.png")
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        XRayResize(10, mode="stretch")
    with pytest.raises(ValueError, match="C x H x W"):
        XRayResize(10)(torch.zeros(5, 5))
    with pytest.raises(KeyError, match="XRayResize"):
        map_to_original(np.zeros((1, 2)), {})
