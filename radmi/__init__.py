"""radmi: chest X-ray representation learning by local image-text mutual information, on MONAI."""

from radmi.errors import (
    BundleError,
    CacheError,
    DicomError,
    ImageError,
    ManifestError,
    MissingCodecError,
    ModelLoadError,
    RadmiError,
    ReportError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "CacheError",
    "DicomError",
    "ImageError",
    "ManifestError",
    "MissingCodecError",
    "ModelLoadError",
    "RadmiError",
    "ReportError",
    "TrainingError",
    "__version__",
]
