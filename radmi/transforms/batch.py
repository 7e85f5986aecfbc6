"""Random augmentation of a whole batch on the batch's own device (GPU when training on one).

Per-sample transforms in DataLoader workers cost CPU time that a 2-core machine does not have. Here a batch
``B x C x S x S`` (float, values in [0, 1], e.g. from ``CachedDataset``) is augmented in one go:

1. a random ``crop_size`` crop, a small rotation, scale and translation, all fused into one
   ``torch.nn.functional.affine_grid`` + ``grid_sample`` call (bilinear), and
2. random gamma, contrast and brightness, then a clamp to [0, 1].

The random parameters (a few numbers per sample) are drawn on the CPU from MONAI's ``Randomizable`` numpy
generator, so a seed gives the same augmentation on every device, and ``state_dict``/``load_state_dict``
let a checkpoint resume the exact random stream. In ``mode="eval"`` the transform is a deterministic centre
crop (plain slicing, so pixels are copied exactly).

No horizontal flip on purpose: chest X-rays and their reports speak of left and right.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from radmi.random_state import load_numpy_state, numpy_state_dict

__all__ = ["RandBatchAugment", "RandBatchAugmentd", "centre_crop"]


def centre_crop(images: torch.Tensor, crop_size: int) -> torch.Tensor:
    """The central ``crop_size x crop_size`` window of ``images`` (``B x C x H x W``), a view, no resampling.

    With an odd margin the extra pixel goes to the bottom/right side, as ``monai.transforms.CenterSpatialCrop``.
    """
    height, width = images.shape[-2:]
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop_size {crop_size} is larger than the images ({height} x {width})")
    top = (height - crop_size) // 2
    left = (width - crop_size) // 2
    return images[..., top : top + crop_size, left : left + crop_size]


def _as_range(value: float | Sequence[float], centre: float) -> tuple[float, float]:
    """``0.1`` -> ``(centre - 0.1, centre + 0.1)``; a pair is taken as given."""
    if isinstance(value, (int, float)):
        return (centre - float(value), centre + float(value))
    low, high = value
    return (float(low), float(high))


class RandBatchAugment(Randomizable):
    """Random crop + small affine + intensity augmentation of a batch, on the batch's device.

    Input ``B x C x S x S`` float images in [0, 1] (``C`` is 1 for radiographs; any square or rectangular
    ``H x W`` at least ``crop_size`` works); output ``B x C x crop_size x crop_size``, same dtype and device.

    Args:
        crop_size: side of the output in pixels (e.g. 224 from a 256 cache).
        mode: ``"train"`` draws new random parameters per call; ``"eval"`` returns the exact centre crop.
        rotation: rotation range in degrees; a float ``r`` means ``[-r, r]``. A positive angle turns the
            content counter-clockwise on screen (90 degrees equals ``torch.rot90(x, 1, (-2, -1))``).
        scale: zoom range; a float ``s`` means ``[1 - s, 1 + s]`` (> 1 zooms in).
        translation: shift range as a fraction of ``crop_size``, per axis; a float ``t`` means ``[-t, t]``
            (positive moves the field of view right/down, i.e. the content left/up).
        brightness: additive offset range, in intensity units; a float ``b`` means ``[-b, b]``.
        contrast: multiplicative range about each image's mean; a float ``c`` means ``[1 - c, 1 + c]``.
        gamma: exponent range; a float ``g`` means ``[1 - g, 1 + g]``.
        padding_mode: ``grid_sample``'s handling of samples outside the image (``"zeros"`` = black, the pad
            value of the resized radiographs).
    """

    def __init__(
        self,
        crop_size: int = 224,
        mode: Literal["train", "eval"] = "train",
        rotation: float | Sequence[float] = 10.0,
        scale: float | Sequence[float] = 0.1,
        translation: float | Sequence[float] = 0.05,
        brightness: float | Sequence[float] = 0.1,
        contrast: float | Sequence[float] = 0.1,
        gamma: float | Sequence[float] = 0.1,
        padding_mode: str = "zeros",
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', not {mode!r}")
        self.crop_size = int(crop_size)
        self.mode = mode
        self.rotation = _as_range(rotation, 0.0)
        self.scale = _as_range(scale, 1.0)
        self.translation = _as_range(translation, 0.0)
        self.brightness = _as_range(brightness, 0.0)
        self.contrast = _as_range(contrast, 1.0)
        self.gamma = _as_range(gamma, 1.0)
        self.padding_mode = padding_mode
        self._params: dict[str, np.ndarray] = {}

    def randomize(self, data: torch.Tensor) -> None:
        """Draw one set of parameters per sample of ``data`` (``B x C x H x W``) into ``self._params``."""
        batch = data.shape[0]
        height, width = data.shape[-2:]
        uniform = self.R.uniform
        self._params = {
            # top-left corner of the crop, continuous pixels so sub-pixel placement is allowed too
            "top": uniform(0.0, height - self.crop_size, batch),
            "left": uniform(0.0, width - self.crop_size, batch),
            "angle": np.deg2rad(uniform(*self.rotation, batch)),
            "scale": uniform(*self.scale, batch),
            "shift": uniform(*self.translation, (batch, 2)) * self.crop_size,
            "gamma": uniform(*self.gamma, batch),
            "contrast": uniform(*self.contrast, batch),
            "brightness": uniform(*self.brightness, batch),
        }

    def _grid(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``B x crop x crop x 2`` sampling grid (x, y) in the input's normalised coordinates (align_corners=False).

        In pixels: input = crop_centre + R(angle) (output - output_centre) / scale + shift. Normalised input
        x is ``2 * x_px / W - 1`` and normalised output u is ``2 * u_px / crop - 1``, so the affine matrix
        ``theta`` (``B x 2 x 3``, output -> input) is the one below; with angle 0, scale 1, shift 0 every output
        pixel centre lands on an input pixel centre. The grid equals ``F.affine_grid(theta, ...)``, written as
        two broadcast additions because ``affine_grid`` builds a ``B x crop x crop x 3`` base grid and a bmm,
        which measured 2-3x slower on the CPU.
        """
        p = self._params
        c = self.crop_size
        cos, sin = np.cos(p["angle"]) / p["scale"], np.sin(p["angle"]) / p["scale"]
        centre_x = p["left"] + c / 2 + p["shift"][:, 0]
        centre_y = p["top"] + c / 2 + p["shift"][:, 1]
        theta = np.empty((len(cos), 2, 3), dtype=np.float64)
        theta[:, 0, 0] = cos * c / width
        theta[:, 0, 1] = -sin * c / width
        theta[:, 1, 0] = sin * c / height
        theta[:, 1, 1] = cos * c / height
        theta[:, 0, 2] = 2 * centre_x / width - 1
        theta[:, 1, 2] = 2 * centre_y / height - 1
        theta_t = torch.as_tensor(theta, dtype=torch.float32, device=device)
        u = (torch.arange(c, dtype=torch.float32, device=device) * 2 + 1) / c - 1  # output pixel centres
        grid = torch.empty((len(cos), c, c, 2), dtype=torch.float32, device=device)
        for axis in (0, 1):  # grid[b, i, j, axis] = theta[axis, 0] u_j + theta[axis, 1] u_i + theta[axis, 2]
            along_x = theta_t[:, axis, 0, None] * u + theta_t[:, axis, 2, None]
            along_y = theta_t[:, axis, 1, None] * u
            torch.add(along_x[:, None, :], along_y[:, :, None], out=grid[..., axis])
        return grid

    def __call__(self, images: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """Augment ``images`` (``B x C x H x W`` float in [0, 1]) into ``B x C x crop_size x crop_size``."""
        if isinstance(images, MetaTensor):  # plain tensors: the meta of a whole batch is not tracked here
            images = images.as_tensor()
        if images.ndim != 4:
            raise ValueError(f"expected a B x C x H x W batch, got shape {tuple(images.shape)}")
        if self.mode == "eval":
            return centre_crop(images, self.crop_size)
        height, width = images.shape[-2:]
        if self.crop_size > height or self.crop_size > width:
            raise ValueError(f"crop_size {self.crop_size} is larger than the images ({height} x {width})")
        if randomize or not self._params:
            self.randomize(images)
        if len(self._params["angle"]) != images.shape[0]:
            raise ValueError("batch size differs from the drawn parameters; call with randomize=True")
        grid = self._grid(height, width, images.device).to(images.dtype)
        out = F.grid_sample(
            images, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False
        )
        return self._intensity(out)

    def _intensity(self, images: torch.Tensor) -> torch.Tensor:
        """Gamma, then contrast about the per-image mean plus brightness (one fused op), then clamp to [0, 1].

        Bilinear samples are convex combinations of values in [0, 1] (and the zero padding), so ``pow`` never
        sees a negative number.
        """
        p = self._params
        shape = (-1,) + (1,) * (images.ndim - 1)

        def per_sample(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=images.dtype, device=images.device).view(shape)

        out = images if self.gamma == (1.0, 1.0) else images.pow_(per_sample(p["gamma"]))
        mean = out.mean(dim=tuple(range(1, out.ndim)), keepdim=True)
        contrast = per_sample(p["contrast"])
        # (x - mean) * contrast + mean + brightness == x * contrast + (mean * (1 - contrast) + brightness)
        offset = mean * (1 - contrast) + per_sample(p["brightness"])
        return torch.addcmul(offset, out, contrast).clamp_(0.0, 1.0)

    def state_dict(self) -> dict[str, object]:
        """The random generator's state as tensors and numbers (loads with ``torch.load(weights_only=True)``)."""
        return numpy_state_dict(self.R)

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore the generator saved by :meth:`state_dict`, so the next batches repeat exactly."""
        load_numpy_state(state, self.R)


class RandBatchAugmentd(MapTransform, Randomizable):
    """Dictionary twin of :class:`RandBatchAugment` for a collated batch dict.

    Each key in ``keys`` (default ``"image"``, ``B x C x H x W``) is replaced by its augmented
    ``B x C x crop_size x crop_size`` version. With ``num_views=2`` a second, independently drawn view is
    written to ``"<key>_view2"`` (TVDIM's two views of one image); in eval mode both views are the centre
    crop. Other keys pass through untouched. Keyword arguments go to :class:`RandBatchAugment`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        num_views: int = 1,
        allow_missing_keys: bool = False,
        **augment_kwargs,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if num_views not in (1, 2):
            raise ValueError(f"num_views must be 1 or 2, not {num_views}")
        self.num_views = num_views
        self.augment = RandBatchAugment(**augment_kwargs)

    @property
    def mode(self) -> str:
        return self.augment.mode

    @mode.setter
    def mode(self, value: Literal["train", "eval"]) -> None:
        self.augment.mode = value

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.augment.set_random_state(state=self.R)
        return self

    def randomize(self, data: torch.Tensor) -> None:
        self.augment.randomize(data)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        out = dict(data)
        for key in self.key_iterator(out):
            images = out[key]
            out[key] = self.augment(images)
            if self.num_views == 2:
                out[f"{key}_view2"] = self.augment(images)
        return out

    def state_dict(self) -> dict[str, object]:
        return self.augment.state_dict()

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.augment.load_state_dict(state)
