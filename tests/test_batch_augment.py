"""On-device batch augmentation: shapes, exact geometry and intensity, determinism, eval centre crop, resume."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from radmi.transforms.batch import RandBatchAugment, RandBatchAugmentd, centre_crop

NO_INTENSITY = {"brightness": 0.0, "contrast": 0.0, "gamma": 0.0}
NO_GEOMETRY = {"rotation": 0.0, "scale": 0.0, "translation": 0.0}


def _batch(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_train_shapes_range_and_device_dtype():
    images = _batch(5, 40)
    images[0] = 0.0
    images[1] = 1.0
    augment = RandBatchAugment(crop_size=32, rotation=15, scale=0.2, brightness=0.3, contrast=0.5, gamma=0.5)
    augment.set_random_state(3)
    out = augment(images)
    assert out.shape == (5, 1, 32, 32)
    assert out.dtype == images.dtype and out.device == images.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.isnan(out).any()


def test_eval_mode_is_exact_centre_crop():
    images = _batch(3, 37)  # odd margin: 37 - 32 = 5 -> 2 on top/left, 3 on bottom/right
    out = RandBatchAugment(crop_size=32, mode="eval")(images)
    assert torch.equal(out, images[:, :, 2:34, 2:34])
    assert torch.equal(centre_crop(images, 32), out)


def test_identity_parameters_return_the_input():
    images = _batch(3, 32)
    augment = RandBatchAugment(crop_size=32, **NO_GEOMETRY, **NO_INTENSITY)
    torch.testing.assert_close(augment(images), images, atol=1e-6, rtol=0)


def test_integer_crop_matches_slicing():
    images = _batch(6, 40)
    augment = RandBatchAugment(crop_size=24, **NO_GEOMETRY, **NO_INTENSITY)
    augment.set_random_state(7)
    augment.randomize(images)
    # pin whole-pixel offsets: bilinear sampling at pixel centres copies the pixels (up to float32
    # rounding of the normalised coordinates, about 40 * 2**-23)
    augment._params["top"] = np.array([0.0, 3, 16, 5, 9, 1])
    augment._params["left"] = np.array([16.0, 0, 2, 11, 4, 8])
    out = augment(images, randomize=False)
    for b, (top, left) in enumerate(zip(augment._params["top"], augment._params["left"], strict=True)):
        t, lf = int(top), int(left)
        torch.testing.assert_close(out[b], images[b, :, t : t + 24, lf : lf + 24], atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_is_rot90():
    images = _batch(2, 16)
    augment = RandBatchAugment(
        crop_size=16, rotation=(90.0, 90.0), scale=0.0, translation=0.0, **NO_INTENSITY
    )
    expected = torch.rot90(images, 1, (-2, -1))
    torch.testing.assert_close(augment(images), expected, atol=1e-5, rtol=0)


def test_translation_shifts_by_whole_pixels_with_zero_padding():
    images = _batch(2, 20)
    # 0.25 of a 20-px crop = 5 px: the field of view moves right, the content moves left
    augment = RandBatchAugment(
        crop_size=20, rotation=0.0, scale=0.0, translation=(0.25, 0.25), **NO_INTENSITY
    )
    out = augment(images)
    expected = torch.zeros_like(images)
    expected[:, :, :15, :15] = images[:, :, 5:, 5:]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_scale_of_a_linear_ramp_is_analytic():
    size = 16
    ramp = (torch.arange(size, dtype=torch.float32) / size).expand(size, size)[None, None].clone()
    augment = RandBatchAugment(
        crop_size=size, rotation=0.0, scale=(2.0, 2.0), translation=0.0, **NO_INTENSITY
    )
    out = augment(ramp)
    # output pixel centre j + 0.5 maps to input x = 8 + (j + 0.5 - 8) / 2; a ramp is exact under bilinear
    x_in = size / 2 + (torch.arange(size) + 0.5 - size / 2) / 2 - 0.5
    torch.testing.assert_close(out[0, 0, 5], x_in / size, atol=1e-6, rtol=0)


def test_matches_affine_grid_reference():
    images = _batch(4, 36)
    augment = RandBatchAugment(crop_size=28, rotation=20, scale=0.2, translation=0.1, **NO_INTENSITY)
    augment.set_random_state(11)
    out = augment(images)
    p = augment._params
    rows = []
    for b in range(4):  # per-sample reference through torch's own affine_grid
        cos, sin = np.cos(p["angle"][b]) / p["scale"][b], np.sin(p["angle"][b]) / p["scale"][b]
        cx = p["left"][b] + 14 + p["shift"][b, 0]
        cy = p["top"][b] + 14 + p["shift"][b, 1]
        theta = torch.tensor(
            [
                [cos * 28 / 36, -sin * 28 / 36, 2 * cx / 36 - 1],
                [sin * 28 / 36, cos * 28 / 36, 2 * cy / 36 - 1],
            ],
            dtype=torch.float32,
        )[None]
        grid = F.affine_grid(theta, [1, 1, 28, 28], align_corners=False)
        rows.append(F.grid_sample(images[b : b + 1], grid, align_corners=False))
    torch.testing.assert_close(out, torch.cat(rows), atol=1e-5, rtol=0)


def test_intensity_is_analytic():
    images = _batch(3, 16)
    gamma = RandBatchAugment(crop_size=16, **NO_GEOMETRY, brightness=0.0, contrast=0.0, gamma=(2.0, 2.0))
    torch.testing.assert_close(gamma(images), images**2, atol=1e-6, rtol=0)
    shifted = RandBatchAugment(crop_size=16, **NO_GEOMETRY, brightness=(0.25, 0.25), contrast=0.0, gamma=0.0)
    torch.testing.assert_close(shifted(images), (images + 0.25).clamp(0, 1), atol=1e-6, rtol=0)
    contrast = RandBatchAugment(crop_size=16, **NO_GEOMETRY, brightness=0.0, contrast=(2.0, 2.0), gamma=0.0)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(contrast(images), ((images - mean) * 2 + mean).clamp(0, 1), atol=1e-6, rtol=0)


def test_same_seed_same_output_and_different_seed_differs():
    images = _batch(4, 40)
    first = RandBatchAugment(crop_size=32).set_random_state(5)
    second = RandBatchAugment(crop_size=32).set_random_state(5)
    other = RandBatchAugment(crop_size=32).set_random_state(6)
    a1, a2 = first(images), first(images)
    assert torch.equal(a1, second(images)) and torch.equal(a2, second(images))
    assert not torch.equal(a1, a2)  # a new draw per call
    assert not torch.equal(a1, other(images))


def test_state_dict_resumes_the_random_stream_through_torch_save():
    images = _batch(4, 40)
    augment = RandBatchAugment(crop_size=32).set_random_state(9)
    augment(images)
    buffer = io.BytesIO()
    torch.save(augment.state_dict(), buffer)
    expected = [augment(images), augment(images)]
    buffer.seek(0)
    resumed = RandBatchAugment(crop_size=32)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert all(torch.equal(resumed(images), e) for e in expected)


def test_dict_twin_two_views_and_passthrough():
    images = MetaTensor(_batch(3, 40))
    batch = {"image": images, "study_id": torch.tensor([1, 2, 3])}
    augment = RandBatchAugmentd(keys="image", num_views=2, crop_size=32).set_random_state(1)
    out = augment(batch)
    assert out["image"].shape == out["image_view2"].shape == (3, 1, 32, 32)
    assert not torch.equal(out["image"], out["image_view2"])
    assert out["study_id"] is batch["study_id"]
    # the two views are the first two draws of the same seeded stream
    array = RandBatchAugment(crop_size=32).set_random_state(1)
    assert torch.equal(out["image"], array(images.as_tensor()))
    assert torch.equal(out["image_view2"], array(images.as_tensor()))
    augment.mode = "eval"
    out = augment(batch)
    assert torch.equal(out["image"], out["image_view2"])
    assert torch.equal(out["image"], images.as_tensor()[:, :, 4:36, 4:36])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="larger"):
        RandBatchAugment(crop_size=64)(_batch(1, 32))
    with pytest.raises(ValueError, match="B x C x H x W"):
        RandBatchAugment(crop_size=16)(torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match="mode"):
        RandBatchAugment(mode="test")
