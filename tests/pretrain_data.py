"""Tiny pretraining inputs for the tests: a PNG manifest with reports, and a 1-layer BERT with MiniLM's vocabulary.

``write_tiny_manifest(root)`` writes ``root/manifest.csv`` plus 64 x 64 8-bit PNG radiographs and reports: each
image has a bright blob in one lung zone and an optionally wide heart, and its report names both, so the data is
image-text paired for real. ``write_tiny_bert(folder)`` saves a randomly initialised 1-layer BERT (hidden 32)
together with the offline MiniLM tokenizer files, so ``TextEncoder(model=folder)`` and ``load_tokenizer(folder)``
work offline and train in milliseconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from radmi.data.labels import CHEXPERT_LABELS

ZONES = {
    "right upper": (0.3, 0.3),
    "right lower": (0.7, 0.3),
    "left upper": (0.3, 0.7),
    "left lower": (0.7, 0.7),
}


def _draw(rng: np.random.Generator, size: int, zone: str, wide_heart: bool) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = 0.2 + 0.05 * rng.standard_normal((size, size))
    heart_width = 0.22 if wide_heart else 0.12
    image += 0.4 * (((rows - 0.6) / 0.15) ** 2 + ((cols - 0.5) / heart_width) ** 2 < 1)
    centre_row, centre_col = ZONES[zone]
    image += 0.5 * np.exp(-(((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * 0.06**2)))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def write_tiny_manifest(
    root: str | Path, n_train: int = 16, n_validate: int = 8, size: int = 64, seed: int = 0
) -> Path:
    """Write images, reports and ``manifest.csv`` under ``root``; one image per study, returns the manifest path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    zones = list(ZONES)
    for index in range(n_train + n_validate):
        zone = zones[index % len(zones)]
        wide_heart = bool(rng.integers(0, 2))
        study = f"{50000000 + index:08d}"
        Image.fromarray(_draw(rng, size, zone, wide_heart)).save(root / "images" / f"{study}.png")
        heart = "The heart is enlarged." if wide_heart else "The heart size is normal."
        report = f"FINDINGS: There is a nodule in the {zone} lung. {heart}\n\nIMPRESSION: Nodule in the {zone} lung.\n"
        (root / "reports" / f"s{study}.txt").write_text(report)
        row = {
            "subject_id": f"{10000000 + index:08d}",
            "study_id": study,
            "dicom_id": f"img-{index:04d}",
            "image_path": f"images/{study}.png",
            "report_path": f"reports/s{study}.txt",
            "view": "PA",
            "split": "train" if index < n_train else "validate",
        }
        row.update({label: "" for label in CHEXPERT_LABELS})
        row["Cardiomegaly"] = "1.0" if wide_heart else "0.0"
        row["edema_severity"] = ""
        rows.append(row)
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def write_tiny_bert(folder: str | Path) -> Path:
    """A 1-layer, 32-wide BERT with MiniLM's vocabulary and tokenizer files, saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    from radmi.models.hub import offline_default_path

    folder = Path(folder)
    minilm = offline_default_path()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    return folder


#: Recipe overrides that make a pretraining run take seconds on one CPU core (64 px cache, 56 px crops).
TINY_OVERRIDES = {
    "backbone": "resnet18",
    "embed_dim": 32,
    "image_size": 64,
    "crop_size": 56,
    "max_length": 32,
    "batch_size": 4,
    "val_batch_size": 8,
    "num_workers": 0,
    "prepare_workers": 1,
    "warmup_iterations": 2,
    "amp": "none",
    "progress_bar": False,
}


def prepare_tiny(root: str | Path) -> dict[str, Path]:
    """Manifest, prepared cache and tiny BERT under ``root``: ``{"manifest", "cache", "bert"}``."""
    from radmi.data.cache import prepare_cache

    root = Path(root)
    manifest = write_tiny_manifest(root / "data")
    bert = write_tiny_bert(root / "bert")
    cache = root / "cache"
    prepare_cache(manifest, cache, size=64, max_length=32, workers=1, progress=False)
    return {"manifest": manifest, "cache": cache, "bert": bert}


def set_args(overrides: dict) -> list[str]:
    """``{"k": v}`` -> ``["--set", "k=<json v>", ...]`` for ``radmi pretrain``."""
    import json

    args: list[str] = []
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


class PoisonedBatch:
    """A ``PretrainBatch`` stand-in that turns the images of its ``nan_at``-th call (1-based) into NaN."""

    def __init__(self, nan_at: int, **kwargs) -> None:
        from radmi.engines.pretrain import PretrainBatch

        self.inner = PretrainBatch(**kwargs)
        self.augment = self.inner.augment
        self.nan_at = nan_at
        self.calls = 0

    def __call__(self, batchdata, device=None, non_blocking=False, **kwargs):
        self.calls += 1
        image, targets, args, extra = self.inner(batchdata, device, non_blocking, **kwargs)
        if self.calls == self.nan_at:
            image = image * float("nan")
        return image, targets, args, extra
