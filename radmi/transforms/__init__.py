"""MONAI transforms for radiographs and reports; each comes as an array transform and a dictionary twin.

The label and report transforms build on ``radmi.data.labels`` and ``radmi.data.reports`` (modules with no radmi
imports), and ``radmi.data``'s pipeline, datasets and manifest checker build on these transforms. Importing
``radmi.data`` first makes the order the same whichever package is imported first: ``radmi.data`` loads its
two leaf modules, then its upper modules pull in the transform submodules they name.
"""

import radmi.data  # noqa: F401  (first; see the module docstring)
from radmi.transforms.batch import RandBatchAugment, RandBatchAugmentd, centre_crop
from radmi.transforms.dicom import LoadXRay, LoadXRayd, LoadXRayDicom, LoadXRayDicomd
from radmi.transforms.image import (
    LoadXRayImage,
    LoadXRayImaged,
    XRayResize,
    XRayResized,
    map_to_original,
    map_to_resized,
)
from radmi.transforms.labels import CheXpertLabels, CheXpertLabelsd
from radmi.transforms.text import (
    LoadReport,
    LoadReportd,
    ParseReport,
    ParseReportd,
    TokenizeReport,
    TokenizeReportd,
)

__all__ = [
    "CheXpertLabels",
    "CheXpertLabelsd",
    "LoadReport",
    "LoadReportd",
    "LoadXRay",
    "LoadXRayDicom",
    "LoadXRayDicomd",
    "LoadXRayImage",
    "LoadXRayImaged",
    "LoadXRayd",
    "ParseReport",
    "ParseReportd",
    "RandBatchAugment",
    "RandBatchAugmentd",
    "TokenizeReport",
    "TokenizeReportd",
    "XRayResize",
    "XRayResized",
    "centre_crop",
    "map_to_original",
    "map_to_resized",
]
