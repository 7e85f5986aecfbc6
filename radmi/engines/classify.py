"""The finding-classification recipe's parts, wired by ``bundles/radmi_cxr_findings/configs/train.json``.

The bundle config builds MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` from these pieces:

- :func:`build_classifier`: a :class:`~radmi.models.heads.FindingClassifier` on an image encoder that is
  random, or loaded from a pretraining run / ``image_encoder.pt``. ``mode="linear"`` freezes the encoder
  (``requires_grad=False`` and batch norms kept in eval mode by ``FindingClassifier.train``), so its weights
  *and* buffers come out of training bit-identical; ``mode="finetune"`` trains everything.
- :func:`trainable_parameters`: what the optimizer gets (the heads only in linear mode).
- :func:`prepare_batch`: batch dict -> ``(image B x 1 x H x W, targets dict)``.
- :class:`AllOutputsInferer`: calls ``FindingClassifier.forward_all`` so the edema head is trained too.
- :func:`classification_dataset`: a split of a demo/MIMIC folder, a manifest or a prepared cache (recognised by
  :mod:`radmi.data.source`), with the label fraction applied to the training split.
- :class:`PredictionCollector`: gathers an evaluator's outputs for ``radmi evaluate``.

The loss lives in :mod:`radmi.losses.classification` (:class:`FindingLoss`) and the validation metric in
:mod:`radmi.engines.classify_metrics` (:class:`MacroAUROC`, :func:`validation_score`); both are re-exported
here for configs written before the move.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.source import check_cache_image_size, manifest_table, open_source
from radmi.engines.classify_metrics import MacroAUROC, evaluation_outputs, validation_score
from radmi.errors import CacheError, ManifestError, ModelLoadError
from radmi.losses.classification import FindingLoss

logger = logging.getLogger(__name__)

MODES = ("linear", "finetune")
#: ``--init`` value that starts from random weights.
RANDOM_INIT = "random"

__all__ = [
    "AllOutputsInferer",
    "FindingLoss",
    "MacroAUROC",
    "PredictionCollector",
    "build_classifier",
    "classification_dataset",
    "data_loader",
    "evaluation_outputs",
    "load_manifest_table",
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
    """Run ``forward_all(inputs)`` of the classifier: ``{"findings": B x L[, "edema": B x 4]}`` logits.

    A ``DataParallel``/``DistributedDataParallel`` wrapper is looked through (``network.module``): its
    ``forward`` returns the findings logits only. The findings recipe trains in one process, so no gradient
    synchronisation is skipped by calling the wrapped module directly.
    """

    def __call__(
        self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        return getattr(network, "module", network).forward_all(inputs, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ data
def classification_transform(image_size: int = 224, uncertain: str = "ignore", blank: str = "negative"):
    """Manifest row -> sample dict: the standard image and label transforms of ``radmi.data.pipeline`` (no
    report text: the classifier never reads it)."""
    from monai.transforms import Compose

    from radmi.data.pipeline import image_transforms, label_transforms

    return Compose([*image_transforms(image_size), *label_transforms(uncertain, blank)])


#: Deprecated name of :func:`radmi.data.source.manifest_table`.
load_manifest_table = manifest_table


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
        image_size: S, the model's input side (a cache must hold images of this size: it fixed it when
            prepared).
        uncertain, blank: label policies (``radmi.data.labels``).
        label_fraction: fraction of the split's patients kept (:mod:`radmi.data.fractions`), from ``seed``.
        views: keep only these ``view`` values (e.g. ``["PA", "AP"]``); None keeps all.
        on_error: ``"raise"`` or ``"skip"`` unreadable rows (skip mode logs and counts them).
    """
    from radmi.data.fractions import subsample_label_fraction

    source = open_source(data)
    if source.is_cache:
        from radmi.data.cache import CachedDataset

        check_cache_image_size(source.path, image_size)
        dataset = CachedDataset(source.path, split=split)
        table = dataset.index
        keep = np.ones(len(table), dtype=bool)
        if views is not None and "view" in table.columns:
            keep &= table["view"].isin(list(views)).to_numpy()
        if not keep.any():  # an empty split would otherwise train or score nothing, silently
            raise CacheError(
                f"no rows in split {split!r}" + (f" with views {list(views)}" if views else "")
                + "; assign splits when building the manifest (e.g. radmi manifest folder --split-fractions "
                "0.8,0.1,0.1) and prepare the cache again",
                path=source.path,
            )
        if label_fraction < 1.0:
            kept = subsample_label_fraction(table.loc[keep], label_fraction, seed=seed, split=None)
            keep &= table.index.isin(kept.index)
        if keep.all():
            return dataset
        return torch.utils.data.Subset(dataset, np.flatnonzero(keep).tolist())

    from radmi.data.dataset import make_dataset

    table = source.manifest_table()
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
