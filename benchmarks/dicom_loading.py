"""How fast does one radiograph DICOM become a [0, 1] tensor? ``LoadXRayDicom`` against two baselines.

Baselines, run on the same generated files in the same process:
- ``naive``: the straightforward pydicom pipeline on every pixel (``pixel_array`` -> ``apply_modality_lut`` ->
  ``apply_voi_lut`` -> float64 normalization -> MONOCHROME1 inversion -> float32). Same values as radmi's.
- ``monai``: MONAI's stock ``LoadImage(reader="PydicomReader")`` (for scale only: it does less — no VOI, no
  inversion — and returns the image transposed).

Files: ``--count`` synthetic CR-like radiographs, ``--rows`` x ``--cols``, 12 bits stored, MONOCHROME1, rescale and
a window, uncompressed and (``--syntax``) compressed. Prints ms per image and the ratio naive/radmi.

    OMP_NUM_THREADS=1 python benchmarks/dicom_loading.py --count 8 --rows 2500 --cols 2048
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dicom_factory import write_dicom, xray_dataset  # noqa: E402

from radmi.transforms.dicom import LoadXRayDicom  # noqa: E402

SYNTAXES = {"none": None, "rle": uid.RLELossless, "jpegls": uid.JPEGLSLossless, "j2k": uid.JPEG2000Lossless}


def naive_load(path: Path) -> np.ndarray:
    """Every step on every pixel, in float64 (what one would write first)."""
    data = path.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data))
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = (
        0.0 * ds.RescaleSlope + ds.RescaleIntercept,
        (2**ds.BitsStored - 1) * ds.RescaleSlope + ds.RescaleIntercept,
    )
    unit = np.clip((values - low) / (high - low), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return unit.astype(np.float32)


def make_files(folder: Path, count: int, rows: int, cols: int, syntax: str | None) -> list[Path]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:cols]
    body = 1500 + 1500 * np.exp(-(((y - rows / 2) / (rows / 3)) ** 2 + ((x - cols / 2) / (cols / 3)) ** 2))
    paths = []
    for i in tqdm(range(count), desc=f"writing {syntax or 'uncompressed'}", leave=False):
        stored = np.clip(body + rng.normal(0, 40, body.shape), 0, 4095).astype(np.uint16)
        ds = xray_dataset(
            stored, bits_stored=12, photometric="MONOCHROME1", rescale=(1.0, -1024.0), window=(1000.0, 2500.0)
        )
        paths.append(write_dicom(folder / f"{i}.dcm", ds, syntax))
    return paths


def time_loader(name: str, loader, paths: list[Path], repeats: int) -> float:
    """Best-of-``repeats`` mean seconds per file."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in tqdm(paths, desc=name, leave=False):
            loader(path)
        best = min(best, (time.perf_counter() - start) / len(paths))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="files per transfer syntax")
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--syntax", nargs="*", default=["none", "jpegls"], choices=sorted(SYNTAXES))
    args = parser.parse_args(argv)

    from monai.transforms import LoadImage

    warnings.filterwarnings("ignore")
    radmi_loader = LoadXRayDicom()
    monai_loader = LoadImage(reader="PydicomReader", image_only=True)
    print(f"{args.count} files of {args.rows} x {args.cols}, 12 bits stored, best of {args.repeats}")
    print(f"{'syntax':<8} {'radmi ms':>9} {'naive ms':>9} {'monai ms':>9} {'naive/radmi':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.syntax:
            folder = Path(tmp) / key
            folder.mkdir()
            paths = make_files(folder, args.count, args.rows, args.cols, SYNTAXES[key])
            np.testing.assert_array_equal(
                radmi_loader(paths[0])[0].numpy(), naive_load(paths[0])
            )  # same values
            ours = time_loader("radmi", radmi_loader, paths, args.repeats)
            naive = time_loader("naive", naive_load, paths, args.repeats)
            monai = time_loader("monai", lambda p: monai_loader(str(p)), paths, args.repeats)
            print(
                f"{key:<8} {ours * 1e3:>9.1f} {naive * 1e3:>9.1f} {monai * 1e3:>9.1f} {naive / ours:>11.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
