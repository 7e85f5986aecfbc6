"""PNG/JPG radiographs -> tensors (``LoadXRayImage(d)``) and aspect-preserving square resizing (``XRayResize(d)``).

``XRayResize`` records how it moved pixels, so points can be mapped between the loaded image and the resized one
with :func:`map_to_resized` and :func:`map_to_original` (finding boxes, heat maps).

Point convention: ``N x 2`` arrays of ``(row, col)`` in continuous pixel units, where pixel ``(i, j)`` covers
``[i, i+1) x [j, j+1)``; so ``(0, 0)`` is the top-left corner of the image and a box given by pixel edges maps
exactly. The centre of pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Resize, ResizeWithPadOrCrop, Transform
from PIL import Image

from radmi.errors import ImageError, RadmiError
from radmi.transforms.file_checks import open_regular_file

__all__ = [
    "IMAGE_SUFFIXES",
    "LoadXRayImage",
    "LoadXRayImaged",
    "XRayResize",
    "XRayResized",
    "is_image_file",
    "map_to_original",
    "map_to_resized",
    "read_xray_image",
]

#: Largest image (width x height) decoded by default, as for DICOM (80 Mpx); checked before decoding.
DEFAULT_MAX_PIXELS = 80_000_000

#: File suffixes read as PNG/JPG (lower case); everything else is treated as DICOM by ``LoadXRay``.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Pillow mode -> largest value of its bit depth (what 1.0 means)
_GREY_MODE_MAX = {"1": 1, "L": 255, "I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
_COLOUR_MODES = ("RGB", "RGBA", "LA", "P", "PA")


def is_image_file(path: str | PathLike) -> bool:
    """True for ``.png``/``.jpg``/``.jpeg`` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _grey_from_colour(image: Image.Image, path: str | PathLike, tolerance: int) -> np.ndarray:
    """An RGB(A)/LA/palette image whose colour channels agree -> rows x cols float32 grey, 0..255."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    channels = np.asarray(image)
    if image.mode == "LA":
        return channels[..., 0].astype(np.float32)  # grey + alpha: the alpha is dropped
    colour = channels[..., :3]
    spread = int((colour.max(axis=-1).astype(np.int16) - colour.min(axis=-1)).max(initial=0))
    if spread > tolerance:
        raise ImageError(
            f"colour image (mode {image.mode}, channels differ by up to {spread} levels); "
            "a radiograph must be greyscale",
            path=path,
        )
    return colour.mean(axis=-1, dtype=np.float32)


def read_xray_image(
    path: str | PathLike, grey_tolerance: int = 2, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an 8- or 16-bit greyscale PNG/JPG (e.g. MIMIC-CXR-JPG, already windowed and inverted).

    Values are divided by the bit depth's largest value (255 or 65535). RGB/palette files whose colour channels
    agree within ``grey_tolerance`` levels (JPEG chroma noise) are accepted as grey (mean of the channels).
    The size in the file's header is checked against ``max_pixels`` (default 80 Mpx; ``None``: no limit) before
    any pixel is decoded; Pillow's own decompression-bomb error also becomes an ``ImageError``.

    Returns:
        ``(pixels, meta)``: pixels rows x cols float32 in [0, 1]; meta with the same keys as
        :class:`~radmi.transforms.dicom.LoadXRayDicom` (DICOM-only ones empty).

    Raises:
        ImageError: naming the file: unreadable, truncated, not an image, too large, special file, or truly
            colour.
    """
    with open_regular_file(path, ImageError, missing="image file not found") as file:
        try:
            with Image.open(file) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageError(
                        f"image of {height} x {width} = {width * height:,} pixels is larger than the limit of "
                        f"{max_pixels:,} pixels (max_pixels); not decoded",
                        path=path,
                    )
                image.load()  # decode now: truncated files fail here
                mode = image.mode
                if mode in _GREY_MODE_MAX:
                    pixels = np.asarray(image).astype(np.float32) / _GREY_MODE_MAX[mode]
                    bits = int(np.log2(_GREY_MODE_MAX[mode] + 1))
                elif mode in _COLOUR_MODES:
                    pixels = _grey_from_colour(image, path, grey_tolerance) / 255.0
                    bits = 8
                else:
                    raise ImageError(f"unsupported image mode {mode}; expected 8/16-bit greyscale", path=path)
        except RadmiError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageError(
                f"image too large (Pillow's decompression-bomb limit): {err}", path=path
            ) from err
        except MemoryError as err:
            raise ImageError("cannot read the image: not enough memory (MemoryError)", path=path) from err
        except (
            Exception
        ) as err:  # UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, ...
            raise ImageError(
                f"cannot read the image: {type(err).__name__}: {str(err)[:300]}", path=path
            ) from err
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageError(f"not a 2-D image (shape {pixels.shape})", path=path)
    if mode == "I" and pixels.max(initial=0.0) > 1.0:
        raise ImageError(
            "32-bit integer image with values above 65535; expected 8/16-bit greyscale", path=path
        )
    rows, cols = pixels.shape
    meta = {
        "filename_or_obj": str(path),
        "spacing": np.full(2, np.nan),
        "spacing_source": "none",
        "photometric_interpretation": "",
        "original_shape": np.asarray([rows, cols]),
        "spatial_shape": np.asarray([rows, cols]),
        "original_channel_dim": 0,
        "bits_stored": bits,
        "view_position": "",
        "modality": "",
        "sop_instance_uid": "",
        "study_instance_uid": "",
        "transfer_syntax_uid": "",
        "voi_applied": "none",
        "inverted": False,
    }
    return pixels.astype(np.float32, copy=False), meta


class LoadXRayImage(Transform):
    """Path of a PNG/JPG -> ``MetaTensor`` 1 x rows x cols float32 in [0, 1] (no transposition).

    Args:
        grey_tolerance: largest channel difference (in 8-bit levels) for an RGB file to count as grey.
        max_pixels: largest width x height decoded (default 80 Mpx), checked from the header; ``None``: any.
    """

    def __init__(self, grey_tolerance: int = 2, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.grey_tolerance = grey_tolerance
        self.max_pixels = None if max_pixels is None else int(max_pixels)

    def __call__(self, filename: str | PathLike) -> MetaTensor:
        pixels, meta = read_xray_image(
            filename, grey_tolerance=self.grey_tolerance, max_pixels=self.max_pixels
        )
        return MetaTensor(torch.from_numpy(pixels)[None], meta=meta)


class LoadXRayImaged(MapTransform):
    """Dictionary twin of :class:`LoadXRayImage` (keys default ``"image"``, each holding a path)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        grey_tolerance: int = 2,
        allow_missing_keys: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRayImage(grey_tolerance=grey_tolerance, max_pixels=max_pixels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


# --------------------------------------------------------------------------------------------- resizing
def _index_map(before: torch.Tensor, after: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """From MONAI's affines (output pixel-centre index -> world), the diagonal and shift of the map
    output index -> input index, for the two spatial axes."""
    relative = torch.linalg.solve(before.double(), after.double()).numpy()
    return np.diag(relative)[:2].copy(), relative[:2, -1].copy()


class XRayResize(Transform):
    """Aspect-preserving resize of a 1 x H x W image to 1 x size x size.

    ``mode="pad"``: longest side -> ``size`` (MONAI ``Resize(size_mode="longest")``), then pad the other side
    symmetrically with ``pad_value``. ``mode="crop"``: shortest side -> ``size``, then centre-crop.

    The output's meta gets ``resize_scale`` (output pixels per input pixel, per axis (row, col)) and
    ``resize_offset`` (output coordinates of the input's top-left corner (0, 0), in pixels), so that
    ``output = input * scale + offset`` for ``(row, col)`` points (see :func:`map_to_resized`). Applying
    ``XRayResize`` again composes them, so they always refer to the image as loaded. Both are read from the
    affine MONAI updates, so they match what the interpolation and padding did.

    Args:
        size: side of the square output, in pixels.
        mode: ``"pad"`` or ``"crop"``.
        interpolation: MONAI ``Resize`` mode (``"area"`` averages when shrinking; ``"bilinear"``, ...).
        pad_value: value of the padding (0 = black = air).
    """

    def __init__(
        self, size: int, mode: str = "pad", interpolation: str = "area", pad_value: float = 0.0
    ) -> None:
        if mode not in ("pad", "crop"):
            raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.size, self.mode, self.interpolation = int(size), mode, interpolation
        self.square = ResizeWithPadOrCrop((self.size, self.size), method="symmetric", value=pad_value)

    def _resizer(self, rows: int, cols: int) -> Resize:
        if self.mode == "pad":
            return Resize(self.size, size_mode="longest", mode=self.interpolation)
        scale = self.size / min(rows, cols)
        shape = (max(self.size, round(rows * scale)), max(self.size, round(cols * scale)))
        return Resize(shape, size_mode="all", mode=self.interpolation)

    def __call__(self, img: torch.Tensor | np.ndarray) -> MetaTensor:
        """img: 1 x H x W (or C x H x W) -> C x size x size MetaTensor with the resize meta."""
        image = img if isinstance(img, MetaTensor) else MetaTensor(torch.as_tensor(img))
        if image.ndim != 3:
            raise ValueError(f"expected a C x H x W image, got shape {tuple(image.shape)}")
        before = image.affine.clone()
        rows, cols = image.shape[-2:]
        resized = self.square(self._resizer(rows, cols)(image))
        diagonal, shift = _index_map(before, resized.affine)
        # MONAI's affines index pixel centres; in corner coordinates u (input) and v (output):
        # u - 0.5 = diagonal * (v - 0.5) + shift  =>  v = u / diagonal + 0.5 - (0.5 + shift) / diagonal
        scale = 1.0 / diagonal
        offset = 0.5 - (0.5 + shift) * scale
        previous_scale = np.asarray(image.meta.get("resize_scale", np.ones(2)), dtype=np.float64)
        previous_offset = np.asarray(image.meta.get("resize_offset", np.zeros(2)), dtype=np.float64)
        resized.meta["resize_scale"] = scale * previous_scale
        resized.meta["resize_offset"] = scale * previous_offset + offset
        resized.meta["resize_input_shape"] = np.asarray(
            image.meta.get("resize_input_shape", np.asarray([rows, cols])), dtype=np.int64
        )
        return resized


class XRayResized(MapTransform):
    """Dictionary twin of :class:`XRayResize` (keys default ``"image"``)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        size: int = 512,
        mode: str = "pad",
        interpolation: str = "area",
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = XRayResize(size, mode=mode, interpolation=interpolation, pad_value=pad_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer(d[key])
        return d


Points = TypeVar("Points", np.ndarray, torch.Tensor)


def _scale_offset(meta: Mapping[str, Any] | MetaTensor, like: Points) -> tuple[Points, Points]:
    meta = meta.meta if isinstance(meta, MetaTensor) else meta
    if "resize_scale" not in meta or "resize_offset" not in meta:
        raise KeyError("meta has no resize_scale/resize_offset: the image did not go through XRayResize")
    scale, offset = meta["resize_scale"], meta["resize_offset"]
    if isinstance(like, torch.Tensor):
        return (
            torch.as_tensor(scale, dtype=torch.float64).to(like.device),
            torch.as_tensor(offset, dtype=torch.float64).to(like.device),
        )
    return np.asarray(scale, dtype=np.float64), np.asarray(offset, dtype=np.float64)


def map_to_resized(points: Points, meta: Mapping[str, Any] | MetaTensor) -> Points:
    """``N x 2`` (row, col) points on the loaded image -> the same points on the resized image (float64).

    Args:
        points: N x 2 (or ... x 2) array or tensor, pixel units, corner convention (module docstring).
        meta: the resized ``MetaTensor`` or its ``.meta`` (one image, not a collated batch).
    """
    scale, offset = _scale_offset(meta, points)
    return points * scale + offset


def map_to_original(points: Points, meta: Mapping[str, Any] | MetaTensor) -> Points:
    """Inverse of :func:`map_to_resized`: points on the resized image -> points on the loaded image."""
    scale, offset = _scale_offset(meta, points)
    return (points - offset) / scale
