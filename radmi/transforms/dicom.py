"""DICOM radiograph -> tensor: ``LoadXRayDicom(d)``, and ``LoadXRay(d)`` that also takes PNG/JPG.

The output is a MONAI ``MetaTensor`` of shape ``1 x rows x cols`` (float32, values in [0, 1]) where
**bright = dense**: bone and mediastinum bright, air dark. The pixel pipeline, in DICOM order, uses pydicom's
own functions:

1. decode the stored values (pydicom's pixel-data plug-ins: pylibjpeg, pyjpegls, Pillow, ...);
2. modality LUT: ``pydicom.pixels.apply_modality_lut`` (Rescale Slope/Intercept or a Modality LUT Sequence);
3. VOI: ``apply_voi_lut`` / ``apply_voi`` / ``apply_windowing``, chosen by ``voi``;
4. normalize by the range that step can output (not by the data's min/max, never by 65535):
   windowing -> pydicom's window output range (BitsStored/PixelRepresentation, after rescale);
   VOI LUT Sequence -> the LUT entries' min..max; no VOI -> the stored range (2**BitsStored) after the modality LUT;
5. MONOCHROME1 (minimum = white) is inverted exactly once: ``x -> 1 - x``.

Rows stay rows: the tensor is ``1 x Rows x Columns`` as in the DICOM file. MONAI's stock
``LoadImage(reader="PydicomReader")`` returns ``Columns x Rows`` instead (MONAI's (W, H) spatial convention),
does not invert MONOCHROME1, ignores the VOI LUT and reports spacing 1 when only ImagerPixelSpacing is present.

Speed: the file is read once. For 8- and 16-bit integer pixels, steps 2-5 are evaluated by pydicom's functions
on every *possible* value of the pixel dtype (at most 65,536), and the image is mapped through that table in one
indexing step straight to float32, so no full-size float64 copies are made. The result is identical to applying
the functions to the pixels (they are element-wise).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from radmi.transforms.dicom_decode import (
    CODEC_PACKAGES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODALITIES,
    VoiOption,
    read_dicom_header,
    read_xray_dicom,
    read_xray_dicom_header,
)
from radmi.transforms.image import LoadXRayImage, is_image_file

__all__ = [
    "CODEC_PACKAGES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODALITIES",
    "LoadXRay",
    "LoadXRayDicom",
    "LoadXRayDicomd",
    "LoadXRayd",
    "VoiOption",
    "read_dicom_header",
    "read_xray_dicom",
    "read_xray_dicom_header",
]


def _affine_from_spacing(spacing: np.ndarray) -> torch.Tensor:
    """4 x 4 affine (index -> mm) for MONAI's spatial transforms; identity when the spacing is unknown."""
    affine = torch.eye(4, dtype=torch.float64)
    if np.all(np.isfinite(spacing)) and np.all(spacing > 0):
        affine[0, 0], affine[1, 1] = float(spacing[0]), float(spacing[1])
    return affine


# --------------------------------------------------------------------------------------------- transforms
class LoadXRayDicom(Transform):
    """Path of a single-frame greyscale DICOM -> ``MetaTensor`` 1 x rows x cols, float32 in [0, 1], bright = dense.

    Reads ``.dcm``, ``.dcm.gz`` and extension-less files with pydicom; compressed transfer syntaxes (JPEG
    baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE) decode through pydicom's plug-ins. Rows are not
    transposed (unlike MONAI's ``PydicomReader``, which returns cols x rows).

    Meta keys (besides MONAI's ``affine``, which carries the spacing): ``filename_or_obj``; ``spacing``
    (mm between rows, mm between columns; from PixelSpacing else ImagerPixelSpacing, NaN when neither);
    ``spacing_source``; ``photometric_interpretation`` (as stored, before inversion); ``original_shape``
    (rows, cols); ``bits_stored``; ``view_position``; ``modality``; ``sop_instance_uid``;
    ``study_instance_uid``; ``transfer_syntax_uid``; ``voi_applied`` (``lut``/``window``/``none``);
    ``inverted``. Patient name and ID are never copied.

    Args:
        voi: see :func:`read_xray_dicom`.
        max_pixels: largest Rows x Columns decoded (default 80 Mpx), checked from the header first; ``None``: any.
        allowed_modalities: accepted Modality values (default CR, DX, DR, PX); ``None``: any.
        max_gzip_bytes: cap on the decompressed size of a ``.dcm.gz`` and of the dataset of a Deflated
            transfer syntax file (default from ``max_pixels``).

    Raises:
        DicomError, MissingCodecError: see :func:`read_xray_dicom`; the message names the file.
    """

    def __init__(
        self,
        voi: VoiOption = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        allowed_modalities: Sequence[str] | None = DEFAULT_MODALITIES,
        max_gzip_bytes: int | None = None,
    ) -> None:
        if isinstance(voi, str) and voi not in ("auto", "none", "first_window"):
            raise ValueError(f"voi must be 'auto', 'none', 'first_window' or (center, width), got {voi!r}")
        self.voi = voi if isinstance(voi, str) else (float(voi[0]), float(voi[1]))
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.allowed_modalities = None if allowed_modalities is None else tuple(allowed_modalities)
        self.max_gzip_bytes = max_gzip_bytes

    def __call__(self, filename: str | PathLike) -> MetaTensor:
        pixels, meta = read_xray_dicom(
            filename,
            voi=self.voi,
            max_pixels=self.max_pixels,
            allowed_modalities=self.allowed_modalities,
            max_gzip_bytes=self.max_gzip_bytes,
        )
        affine = _affine_from_spacing(meta["spacing"])
        return MetaTensor(torch.from_numpy(pixels)[None], affine=affine, meta=meta)


class LoadXRayDicomd(MapTransform):
    """Dictionary twin of :class:`LoadXRayDicom`: replaces the path under each key by the image tensor.

    Args:
        keys: the keys holding DICOM paths (default ``"image"``; copy a manifest row's ``image_path`` there).
        voi: see :func:`read_xray_dicom`.
        allow_missing_keys: don't raise if a key is absent.
        limits: ``max_pixels``, ``allowed_modalities``, ``max_gzip_bytes`` of :class:`LoadXRayDicom`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        voi: VoiOption = "auto",
        allow_missing_keys: bool = False,
        **limits: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRayDicom(voi=voi, **limits)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class LoadXRay(Transform):
    """Path -> ``MetaTensor`` 1 x H x W float32 in [0, 1], bright = dense, from DICOM or PNG/JPG by suffix.

    ``.png``, ``.jpg``, ``.jpeg`` (any case) go to :class:`~radmi.transforms.image.LoadXRayImage`; everything else
    (``.dcm``, ``.dcm.gz``, ``.dicom``, no suffix, or UID-like names such as ``1.2.840.3``) to
    :class:`LoadXRayDicom`, whose error says so when the file is not DICOM.

    Args:
        voi: passed to :class:`LoadXRayDicom` (ignored for PNG/JPG, which are already windowed).
        max_pixels: the pixel limit of both loaders (default 80 Mpx).
        allowed_modalities, max_gzip_bytes: passed to :class:`LoadXRayDicom`.
    """

    def __init__(
        self,
        voi: VoiOption = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        allowed_modalities: Sequence[str] | None = DEFAULT_MODALITIES,
        max_gzip_bytes: int | None = None,
    ) -> None:
        self.dicom_loader = LoadXRayDicom(
            voi=voi,
            max_pixels=max_pixels,
            allowed_modalities=allowed_modalities,
            max_gzip_bytes=max_gzip_bytes,
        )
        self.image_loader = LoadXRayImage(max_pixels=max_pixels)

    def __call__(self, filename: str | PathLike) -> MetaTensor:
        if is_image_file(filename):
            return self.image_loader(filename)
        return self.dicom_loader(filename)


class LoadXRayd(MapTransform):
    """Dictionary twin of :class:`LoadXRay`.

    Args:
        keys: the keys holding image paths (default ``"image"``).
        voi: passed to :class:`LoadXRayDicom`.
        allow_missing_keys: don't raise if a key is absent.
        limits: ``max_pixels``, ``allowed_modalities``, ``max_gzip_bytes`` of :class:`LoadXRay`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        voi: VoiOption = "auto",
        allow_missing_keys: bool = False,
        **limits: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRay(voi=voi, **limits)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
