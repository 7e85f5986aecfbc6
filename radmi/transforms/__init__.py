"""MONAI transforms for radiographs and reports; each comes as an array transform and a dictionary twin."""

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
