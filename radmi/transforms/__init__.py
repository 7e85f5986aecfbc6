"""MONAI transforms for radiographs and reports; each comes as an array transform and a dictionary twin.

The label and report transforms build on ``radmi.data.labels`` and ``radmi.data.reports`` (modules with no radmi
imports); ``radmi.data``'s pipeline, datasets and manifest checker build on these transforms. The names below
are imported on first use (:mod:`radmi.lazy_exports`), so ``radmi.transforms.dicom_decode`` (pydicom only) can
be imported without MONAI.
"""

from __future__ import annotations

from radmi.lazy_exports import lazy_exports

_EXPORTS = {
    "RandBatchAugment": "batch",
    "RandBatchAugmentd": "batch",
    "centre_crop": "batch",
    "LoadXRay": "dicom",
    "LoadXRayd": "dicom",
    "LoadXRayDicom": "dicom",
    "LoadXRayDicomd": "dicom",
    "LoadXRayImage": "image",
    "LoadXRayImaged": "image",
    "XRayResize": "image",
    "XRayResized": "image",
    "map_to_original": "image",
    "map_to_resized": "image",
    "CheXpertLabels": "labels",
    "CheXpertLabelsd": "labels",
    "LoadReport": "text",
    "LoadReportd": "text",
    "ParseReport": "text",
    "ParseReportd": "text",
    "TokenizeReport": "text",
    "TokenizeReportd": "text",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
