"""The finding-classification recipe's parts, wired by ``bundles/radmi_cxr_findings/configs/train.json``.

The bundle config builds MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` from these pieces:

- :func:`build_classifier`: a :class:`~radmi.models.heads.FindingClassifier` on an image encoder that is
  random, or loaded from a pretraining run / ``image_encoder.pt``. ``mode="linear"`` freezes the encoder
  (``requires_grad=False`` and batch norms kept in eval mode by ``FindingClassifier.train``), so its weights
  *and* buffers come out of training bit-identical; ``mode="finetune"`` trains everything.
- :func:`trainable_parameters`: what the optimizer gets (the heads only in linear mode).
- :func:`prepare_batch`: batch dict -> ``(image B x 1 x H x W, targets dict)``.
- :class:`AllOutputsInferer`: calls ``FindingClassifier.forward_all`` so the edema head is trained too.
- :class:`FindingLoss`: masked multi-label BCE over the 14 findings (the label mask carries the uncertainty and
  blank policies) plus, optionally, 4-way cross-entropy on edema severity.
- :class:`MacroAUROC`: the validation key metric (an Ignite ``EpochMetric``).
- :func:`classification_dataset`: a split of a demo/MIMIC folder, a manifest or a prepared cache, with the
  label fraction applied to the training split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.metrics import EpochMetric
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from radmi.data.labels import CHEXPERT_LABELS
from radmi.errors import ManifestError, ModelLoadError

logger = logging.getLogger(__name__)

MODES = ("linear", "finetune")
#: ``--init`` value that starts from random weights.
RANDOM_INIT = "random"

__all__ = [
    "AllOutputsInferer",
    "FindingLoss",
    "MacroAUROC",
    "build_classifier",
    "classification_dataset",
    "data_loader",
    "evaluation_outputs",
    "prepare_batch",
    "trainable_parameters",
    "validation_score",
    "write_model_config",
]


# ------------------------------------------------------------------------------------------------ network
def build_classifier(
    init: str | Path = RANDOM_INIT,
    mode: str = "linear",
    encoder: Mapping[str, Any] | None = None,
    edema: bool = False,
    dropout: float = 0.0,
    num_labels: int = len(CHEXPERT_LABELS),
) -> nn.Module:
    """The classifier to train.

    Args:
        init: ``"random"``, a pretraining run directory, its ``models/`` folder or an ``image_encoder.pt``.
        mode: ``"linear"`` (frozen encoder, heads only) or ``"finetune"`` (everything trains).
        encoder: ``ImageEncoder`` kwargs used for ``init="random"`` (a loaded encoder keeps its own).
        edema: add the 4-way edema-severity head.
        dropout: dropout before the heads.
        num_labels: finding logits (14).

    Returns:
        ``FindingClassifier``: ``B x 1 x H x W -> B x num_labels`` logits.
    """
    from radmi.models.heads import FindingClassifier
    from radmi.models.image import ImageEncoder, load_image_encoder

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if str(init) == RANDOM_INIT:
        image_encoder = ImageEncoder(**dict(encoder or {}))
    else:
        if not Path(init).exists():
            raise ModelLoadError(
                "--init is neither 'random' nor an existing run directory or .pt file", path=init
            )
        image_encoder = load_image_encoder(init)
    return FindingClassifier(
        image_encoder,
        num_labels=num_labels,
        edema_classes=4 if edema else 0,
        dropout=dropout,
        freeze_encoder=(mode == "linear"),
    )


def trainable_parameters(network: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` (in linear mode: the heads only)."""
    return [p for p in network.parameters() if p.requires_grad]


def write_model_config(network: nn.Module, models_dir: str | Path) -> Path:
    """Write ``models_dir/model.json`` (the classifier's constructor kwargs), beside the best ``model.pt``."""
    from radmi.models.heads import MODEL_CONFIG_FILE

    path = Path(models_dir) / MODEL_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(getattr(network, "module", network).config, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ batches
def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def prepare_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MONAI ``prepare_batch``: ``(image B x 1 x H x W, {"labels": B x L, "label_mask": B x L, "edema_severity": B})``.

    ``edema_severity`` is -1 where absent (and all -1 when the batch has no such key).
    """

    def move(x: torch.Tensor) -> torch.Tensor:
        return _plain(torch.as_tensor(x)).to(device=device, non_blocking=non_blocking, **kwargs)

    image = move(batchdata["image"]).float()
    labels = move(batchdata["labels"]).float()
    targets = {
        "labels": labels,
        "label_mask": move(batchdata["label_mask"]).float(),
        "edema_severity": move(batchdata["edema_severity"]).long()
        if "edema_severity" in batchdata
        else torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device),
    }
    return image, targets


class AllOutputsInferer(Inferer):
    """Run ``network.forward_all(inputs)``: ``{"findings": B x L[, "edema": B x 4]}`` logits."""

    def __call__(
        self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        module = getattr(network, "module", network)  # DistributedDataParallel
        if module is network:
            return network.forward_all(inputs, *args, **kwargs)
        return module.forward_all(inputs, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ loss
class FindingLoss(nn.Module):
    """Masked multi-label BCE over the findings, plus ``edema_weight`` x edema-severity cross-entropy.

    The BCE is averaged over the entries whose mask is 1 (entries the uncertainty/blank policy masks out do not
    count, and do not dilute the mean). Edema CE is averaged over samples with a severity (not -1); a batch
    without any contributes 0.

    Args:
        edema_weight: weight of the edema term (used only when the network has an edema head).
        pos_weight: optional L positive-class weights for the BCE (``BCEWithLogits``' ``pos_weight``).

    Shapes: ``pred = {"findings": B x L[, "edema": B x 4]}`` (or the B x L tensor alone);
    ``targets = {"labels": B x L, "label_mask": B x L, "edema_severity": B}``. Returns a scalar.
    """

    def __init__(self, edema_weight: float = 1.0, pos_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.edema_weight = float(edema_weight)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        )

    def forward(
        self, pred: Mapping[str, torch.Tensor] | torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = pred["findings"] if isinstance(pred, Mapping) else pred
        mask = targets["label_mask"].to(logits.dtype)
        per_entry = F.binary_cross_entropy_with_logits(
            logits, targets["labels"].to(logits.dtype), pos_weight=self.pos_weight, reduction="none"
        )
        loss = (per_entry * mask).sum() / mask.sum().clamp_min(1.0)
        if isinstance(pred, Mapping) and "edema" in pred:
            severity = targets["edema_severity"].long()
            if bool((severity >= 0).any()):
                loss = loss + self.edema_weight * F.cross_entropy(pred["edema"], severity, ignore_index=-1)
            else:
                loss = loss + 0.0 * pred["edema"].sum()  # keep the head in the graph (DDP needs every grad)
        return loss


# ------------------------------------------------------------------------------------------------ metric
def evaluation_outputs(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Engine output -> ``(logits B x L, labels and mask side by side B x 2L)`` for :class:`MacroAUROC`."""
    pred, targets = output["pred"], output["label"]
    logits = pred["findings"] if isinstance(pred, Mapping) else pred
    return logits.detach().float(), torch.cat([targets["labels"], targets["label_mask"]], dim=1).float()


def _macro_auroc(logits: torch.Tensor, labels_and_mask: torch.Tensor) -> float:
    from radmi.eval.metrics import finding_metrics

    n_labels = logits.shape[1]
    labels, mask = labels_and_mask[:, :n_labels], labels_and_mask[:, n_labels:]
    names = [str(i) for i in range(n_labels)]
    result = finding_metrics(
        labels.cpu().numpy(), logits.cpu().numpy(), names, label_mask=mask.cpu().numpy(), n_bootstrap=0
    )
    # no label with both classes (a tiny validation split): 0.5 = chance, so early stopping still works
    return 0.5 if result.macro_auroc.value is None else float(result.macro_auroc.value)


class MacroAUROC(EpochMetric):
    """Macro AUROC over the labels that have positives and negatives among the masked-in entries.

    Reads ``output_transform(engine.state.output) -> (logits B x L, [labels | mask] B x 2L)``
    (default :func:`evaluation_outputs`). Computed once per epoch on all gathered predictions.
    """

    def __init__(self, output_transform=evaluation_outputs, device: str | torch.device = "cpu") -> None:
        super().__init__(
            _macro_auroc, output_transform=output_transform, check_compute_fn=False, device=device
        )


def validation_score(engine) -> float:
    """Early-stopping score: the evaluator's key metric (validation macro AUROC)."""
    return float(engine.state.metrics[engine.state.key_metric_name])


# ------------------------------------------------------------------------------------------------ data
def classification_transform(image_size: int = 224, uncertain: str = "ignore", blank: str = "negative"):
    """Manifest row -> sample dict: the standard image and label transforms of ``radmi.data.pipeline`` (no
    report text: the classifier never reads it)."""
    from monai.transforms import Compose

    from radmi.data.pipeline import image_transforms, label_transforms

    return Compose([*image_transforms(image_size), *label_transforms(uncertain, blank)])


def _data_kind(data: Path) -> str:
    if data.is_dir() and (data / "cache.json").is_file():
        return "cache"
    if data.is_file():
        return "manifest"
    if data.is_dir():
        return "folder"
    raise ManifestError("no such data folder, manifest or cache", path=data)


def load_manifest_table(data: str | Path):
    """The manifest table of ``data``: a manifest CSV, or a MIMIC-CXR-layout folder (demo data included)."""
    from radmi.data import manifest as manifest_lib

    data = Path(data)
    kind = _data_kind(data)
    if kind == "manifest":
        return manifest_lib.read_manifest(data)
    if kind == "folder":
        for name in ("manifest.csv", "manifest.csv.gz"):
            if (data / name).is_file():
                return manifest_lib.read_manifest(data / name)
        return manifest_lib.build_mimic_manifest(data)
    raise ManifestError("a prepared cache has no manifest table; pass the cache itself as --data", path=data)


def classification_dataset(
    data: str | Path,
    split: str,
    image_size: int = 224,
    uncertain: str = "ignore",
    blank: str = "negative",
    label_fraction: float = 1.0,
    seed: int = 0,
    views: Sequence[str] | None = None,
    on_error: str = "raise",
):
    """One split of ``data`` as a dataset of sample dicts (``image`` 1 x S x S in [0, 1], ``labels``, ...).

    Args:
        data: a prepared cache folder (``cache.json``), a manifest CSV, or a MIMIC-CXR-layout folder.
        split: ``train``, ``validate`` or ``test``.
        image_size: S, the model's input side (ignored for a cache, which fixed it when prepared).
        uncertain, blank: label policies (``radmi.data.labels``).
        label_fraction: fraction of the split's patients kept (:mod:`radmi.data.fractions`), from ``seed``.
        views: keep only these ``view`` values (e.g. ``["PA", "AP"]``); None keeps all.
        on_error: ``"raise"`` or ``"skip"`` unreadable rows (skip mode logs and counts them).
    """
    from radmi.data.fractions import subsample_label_fraction

    data = Path(data)
    if _data_kind(data) == "cache":
        from radmi.data.cache import CachedDataset

        dataset = CachedDataset(data, split=split)
        table = dataset.index
        keep = np.ones(len(table), dtype=bool)
        if views is not None and "view" in table.columns:
            keep &= table["view"].isin(list(views)).to_numpy()
        if label_fraction < 1.0:
            kept = subsample_label_fraction(table.loc[keep], label_fraction, seed=seed, split=None)
            keep &= table.index.isin(kept.index)
        if keep.all():
            return dataset
        return torch.utils.data.Subset(dataset, np.flatnonzero(keep).tolist())

    from radmi.data.dataset import make_dataset

    table = load_manifest_table(data)
    table = table[table["split"] == split]
    if views is not None:
        table = table[table["view"].isin(list(views))]
    if label_fraction < 1.0:
        table = subsample_label_fraction(table, label_fraction, seed=seed, split=None)
    if len(table) == 0:
        raise ManifestError(
            f"no rows in split {split!r}" + (f" with views {list(views)}" if views else ""), path=data
        )
    transform = classification_transform(image_size, uncertain, blank)
    return make_dataset(table.reset_index(drop=True), transform, on_error=on_error)


def data_loader(
    dataset, batch_size: int = 16, shuffle: bool = False, seed: int = 0, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """Loader for a classification split; manifest datasets get ``ManifestDataLoader`` (counts skipped rows).

    Shuffling uses a private generator seeded with ``seed``, so a run's batch order is reproducible. A training
    (shuffled) loader drops its last batch only when that batch would hold a single sample, which batch norm
    cannot train on.
    """
    from monai.data import DataLoader

    from radmi.data.dataset import ManifestDataLoader, ManifestDataset

    generator = torch.Generator().manual_seed(int(seed))
    drop_last = bool(shuffle and len(dataset) > batch_size and len(dataset) % batch_size == 1)
    kwargs = dict(
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
    )
    if isinstance(dataset, ManifestDataset):
        return ManifestDataLoader(dataset, **kwargs)
    return DataLoader(dataset, **kwargs)


# ------------------------------------------------------------------------------------------------ evaluation
class PredictionCollector:
    """Gather an evaluator's outputs for the metrics: probabilities, labels, masks, edema, patient ids.

    Attach to a ``SupervisedEvaluator`` (``ITERATION_COMPLETED``). After ``run``, :meth:`arrays` returns numpy
    arrays: ``probabilities`` N x L (sigmoid of the logits), ``labels`` N x L, ``label_mask`` N x L,
    ``edema_severity`` N (-1 absent), ``edema_probabilities`` N x 4 (only with an edema head), ``subject_id`` N,
    ``dicom_id`` N.
    """

    def __init__(self) -> None:
        self.parts: dict[str, list] = {}

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.parts.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _add(self, key: str, value) -> None:
        self.parts.setdefault(key, []).append(value)

    def __call__(self, engine) -> None:
        pred, targets = engine.state.output["pred"], engine.state.output["label"]
        logits = pred["findings"] if isinstance(pred, Mapping) else pred
        self._add("probabilities", torch.sigmoid(logits.detach().float()).cpu().numpy())
        self._add("labels", targets["labels"].cpu().numpy())
        self._add("label_mask", targets["label_mask"].cpu().numpy())
        self._add("edema_severity", targets["edema_severity"].cpu().numpy())
        if isinstance(pred, Mapping) and "edema" in pred:
            self._add(
                "edema_probabilities", torch.softmax(pred["edema"].detach().float(), dim=1).cpu().numpy()
            )
        batch = engine.state.batch
        n = logits.shape[0]
        subject = batch.get("subject_id") if isinstance(batch, Mapping) else None
        self._add(
            "subject_id",
            np.asarray(_plain(torch.as_tensor(subject)).cpu() if subject is not None else np.full(n, -1)),
        )
        dicom = batch.get("dicom_id") if isinstance(batch, Mapping) else None
        self._add("dicom_id", np.asarray(dicom if dicom is not None else [""] * n, dtype=object))

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(values) for key, values in self.parts.items()}
