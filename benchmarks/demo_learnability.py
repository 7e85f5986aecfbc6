"""Is the demo dataset learnable, and do its labels agree with its report text?

1. Image check: a small CNN (MONAI ResNet, 2-D, one channel) trained with full supervision on the demo
   images at 256 px, on the CPU; test AUROC per finding (scikit-learn). Target: >= 0.85 on Cardiomegaly,
   Pleural Effusion, Pneumothorax and Support Devices.
2. Text check: a simple keyword/negation labeler applied to each report's sentences
   (``radmi.data.reports.report_sentences``: FINDINGS + IMPRESSION) must agree with
   ``mimic-cxr-2.0.0-chexpert.csv.gz`` on >= 98% of the label entries (1 / 0 / -1 / blank, all 14 labels).

    OMP_NUM_THREADS=1 python benchmarks/demo_learnability.py --studies 2000 --epochs 8   # the full check
    OMP_NUM_THREADS=1 python benchmarks/demo_learnability.py --studies 200 --epochs 1    # a quick smoke run
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.networks.nets import ResNet
from monai.transforms import Compose
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from radmi.data.demo import generate, layout
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.reports import report_sentences
from radmi.transforms.dicom import LoadXRayDicomd
from radmi.transforms.image import XRayResized

TARGET_LABELS = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Support Devices")
TRAINED_LABELS = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema", "Consolidation",
    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Support Devices",
)  # fmt: skip

# ---- 2. the keyword / negation labeler -------------------------------------------------------------------
MENTIONS = {
    "Enlarged Cardiomediastinum": r"mediastin",
    "Cardiomegaly": r"cardiomegaly|heart (is|size)|cardiac silhouette",
    "Lung Lesion": r"nodule|\bmass",
    "Lung Opacity": r"opacity",
    "Edema": r"edema|vascular congestion",
    "Consolidation": r"consolidation",
    "Pneumonia": r"pneumonia",
    "Atelectasis": r"atelectasis",
    "Pneumothorax": r"pneumothorax",
    "Pleural Effusion": r"effusion",
    "Fracture": r"fracture",
    "Support Devices": r"\btube\b|catheter|central line|pacemaker",
}
NEGATION = re.compile(r"^(no|there is no)\b|\bnot\b|\bnormal\b|\bwithout\b", re.I)
UNCERTAIN = re.compile(r"may represent|could reflect|\bpossible\b|\bpossibly\b|cannot be excluded", re.I)


def label_report(text: str) -> dict[str, float]:
    """CheXpert-style labels from report text: 1 positive, -1 uncertain, 0 negated, NaN not mentioned."""
    found: dict[str, set[float]] = {name: set() for name in MENTIONS}
    for sentence in report_sentences(text):
        for name, pattern in MENTIONS.items():
            if re.search(pattern, sentence, re.I):
                value = 0.0 if NEGATION.search(sentence) else -1.0 if UNCERTAIN.search(sentence) else 1.0
                found[name].add(value)
    row = {name: float("nan") for name in CHEXPERT_LABELS}
    for name, values in found.items():
        if values:
            row[name] = 1.0 if 1.0 in values else -1.0 if -1.0 in values else 0.0
    pathologies = [v for name, v in row.items() if name not in ("No Finding", "Support Devices")]
    if not any(v in (1.0, -1.0) for v in pathologies):
        row["No Finding"] = 1.0
    return row


def labeler_agreement(root: Path) -> tuple[float, pd.Series]:
    """Share of (study, label) entries where the labeler equals the CheXpert CSV (blank == blank), per label."""
    chexpert = pd.read_csv(root / layout.CHEXPERT, dtype={"subject_id": str, "study_id": str})
    rows = []
    for study in tqdm(chexpert.itertuples(), total=len(chexpert), desc="labeling reports"):
        rows.append(label_report((root / layout.report_path(study.subject_id, study.study_id)).read_text()))
    predicted = pd.DataFrame(rows)[list(CHEXPERT_LABELS)].to_numpy()
    truth = chexpert[list(CHEXPERT_LABELS)].to_numpy()
    agree = (predicted == truth) | (np.isnan(predicted) & np.isnan(truth))
    return float(agree.mean()), pd.Series(agree.mean(axis=0), index=CHEXPERT_LABELS)


# ---- 1. the supervised image check -----------------------------------------------------------------------
def load_images(root: Path, size: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """Frontal images as an N x 1 x size x size uint8 tensor (bright = dense) and their table (split, labels)."""
    metadata = pd.read_csv(
        root / layout.METADATA, dtype={"subject_id": str, "study_id": str, "dicom_id": str}
    )
    records = pd.read_csv(root / layout.RECORD_LIST, dtype=str)[["dicom_id", "path"]]
    split = pd.read_csv(root / layout.SPLIT, dtype=str)[["dicom_id", "split"]]
    chexpert = pd.read_csv(root / layout.CHEXPERT, dtype={"subject_id": str, "study_id": str})
    table = (metadata[metadata.ViewPosition.isin(["PA", "AP"])].merge(records, on="dicom_id")
             .merge(split, on="dicom_id").merge(chexpert, on=["subject_id", "study_id"]))  # fmt: skip
    transform = Compose([LoadXRayDicomd(keys="image"), XRayResized(keys="image", size=size)])
    images = torch.empty((len(table), 1, size, size), dtype=torch.uint8)
    for i, path in enumerate(tqdm(table.path, desc="loading DICOMs")):
        image = transform({"image": str(root / path)})["image"]
        images[i] = (image.as_tensor().clamp(0, 1) * 255).round().to(torch.uint8)
    return images, table.reset_index(drop=True)


def make_network(num_labels: int) -> torch.nn.Module:
    """A small 2-D ResNet (one basic block per stage, 16-128 channels): B x 1 x 256 x 256 -> B x num_labels."""
    return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[16, 32, 64, 128], spatial_dims=2,
                  n_input_channels=1, num_classes=num_labels, conv1_t_stride=2)  # fmt: skip


def train_and_test(images, table, epochs: int, batch: int, lr: float, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    values = table[list(TRAINED_LABELS)].to_numpy(dtype=np.float64)
    targets = torch.as_tensor(np.nan_to_num(values) == 1.0, dtype=torch.float32)
    mask = torch.as_tensor(values != -1.0, dtype=torch.float32)  # U-Ignore: hedged entries do not count
    train = np.flatnonzero(table.split.isin(["train", "validate"]).to_numpy())
    test = np.flatnonzero((table.split == "test").to_numpy())
    network = make_network(len(TRAINED_LABELS))
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(train) / batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = np.random.default_rng(seed)
    with tqdm(total=steps, desc="training") as bar:
        for _ in range(epochs):
            network.train()
            order = generator.permutation(train)
            for start in range(0, len(train), batch):
                index = order[start : start + batch]
                x = images[index].float() / 255.0
                logits = network(x)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets[index], weight=mask[index]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update()
    network.eval()
    with torch.no_grad():
        scores = torch.cat([torch.sigmoid(network(images[test[i : i + 64]].float() / 255.0))
                            for i in range(0, len(test), 64)]).numpy()  # fmt: skip
    results = {}
    for j, name in enumerate(TRAINED_LABELS):
        keep = mask[test, j].numpy() > 0
        y = targets[test, j].numpy()[keep]
        results[name] = float(roc_auc_score(y, scores[keep, j])) if 0 < y.sum() < len(y) else float("nan")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="an existing demo dataset (default: generate one)")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="generation workers")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = args.data
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="radmi-learnability-")) / "data"
        generate(root, args.studies, seed=args.seed, size=args.size, views="frontal", workers=args.workers)

    agreement, per_label = labeler_agreement(root)
    print(f"labeler agreement with the CheXpert CSV: {agreement:.4f} of {len(per_label)} x studies entries "
          f"(target >= 0.98); lowest label: {per_label.idxmin()} {per_label.min():.4f}")  # fmt: skip

    start = time.perf_counter()
    images, table = load_images(root, args.size)
    results = train_and_test(images, table, args.epochs, args.batch, args.lr, args.seed)
    minutes = (time.perf_counter() - start) / 60
    print(
        f"images: {len(table)} (train+validate {int(table.split.isin(['train', 'validate']).sum())}, "
        f"test {int((table.split == 'test').sum())}); load + train + test: {minutes:.1f} min on the CPU"
    )
    for name, auc in results.items():
        mark = " (target >= 0.85)" if name in TARGET_LABELS else ""
        print(f"test AUROC {name:28s} {auc:.3f}{mark}")
    met = all(results[name] >= 0.85 for name in TARGET_LABELS) and agreement >= 0.98
    print("all targets met" if met else "some targets NOT met")


if __name__ == "__main__":
    main()
