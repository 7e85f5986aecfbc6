"""Small builders shared by the bundle, download and predict tests: a tiny classification run and DICOM files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radmi.models.heads import FindingClassifier

#: Input side of the tiny run, in pixels (small so that export checks and inference stay fast).
TINY_SIZE = 64
TINY_ENCODER = {"backbone": "resnet18", "embed_dim": 16, "local_stride": 16}


def make_tiny_run(run_dir: Path, seed: int = 0) -> FindingClassifier:
    """A finished-looking classification run: models/model.pt + model.json + config.json (image size 64)."""
    torch.manual_seed(seed)
    model = FindingClassifier(dict(TINY_ENCODER))
    model.save(run_dir / "models")
    (run_dir / "config.json").write_text(json.dumps({"image_size": TINY_SIZE, "mode": "linear"}))
    return model.eval()


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12
) -> Path:
    """An uncompressed single-frame CR DICOM holding ``pixels`` (rows x cols, uint16) as stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def random_pixels(seed: int, rows: int = 96, cols: int = 80, bits_stored: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**bits_stored, size=(rows, cols), dtype=np.uint16)
