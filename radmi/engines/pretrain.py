"""Image-text pretraining on MONAI's ``SupervisedTrainer``: the builders the bundle recipe calls.

The recipe is ``bundles/radmi_cxr_pretrain/configs/train.json``; it holds every default and wires these
builders together. The pattern (docs/architecture.md, /work/shared/DESIGN.md):

- ``network`` is ``ImageTextModel``; :class:`PretrainBatch` (a MONAI ``PrepareBatch``) moves a collated batch
  to the device, augments the images there and returns ``(image, study_ids, (), text kwargs)``, so the trainer
  calls ``network(image, input_ids=..., attention_mask=..., sentence_ids=...[, image_view2=...])``;
- ``loss_function`` is ``PretrainObjective(pred, study_ids)``;
- :func:`build_trainer` returns a plain ``SupervisedTrainer`` (no subclass is needed). The recipe lists the
  training handlers (LR schedule, validation, stats, the NaN/inf guard, gradient clipping, the sampler's
  mid-epoch resume, the final model export, the progress bar); :func:`build_trainer` attaches only the
  resumable checkpoints (saver and loader), because their ``save_dict`` holds the trainer itself, which a
  config item cannot reference while the trainer is being built from that item's list.

Data: the recipe's ``cache_dir`` is :func:`radmi.data.source.resolve_cache` (a prepared cache, a manifest CSV or
a MIMIC-CXR-layout folder, e.g. demo data; the cache is prepared once into the run directory when needed).
``resolve_cache`` here is a deprecated alias of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import PrepareBatch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from radmi.engines.checkpoint import AtomicCheckpointSaver, RandomStates, latest_checkpoint
from radmi.engines.distributed import ResumableSampler, is_rank_zero, prepare_module, unwrap
from radmi.errors import TrainingError

logger = logging.getLogger(__name__)

__all__ = [
    "AMP_MODES",
    "PretrainBatch",
    "amp_settings",
    "build_optimizer",
    "build_trainer",
    "prepare_network",
    "resolve_cache",
    "train_loader",
    "val_loader",
]

AMP_MODES = ("bf16", "fp16", "none")
TEXT_KEYS = ("input_ids", "attention_mask", "sentence_ids")


# ---- data ------------------------------------------------------------------------------------------------
def resolve_cache(
    dataset_dir: str | Path,
    output_dir: str | Path,
    image_size: int = 256,
    tokenizer: str = "offline:all-MiniLM-L6-v2",
    max_length: int = 128,
    workers: int = 2,
) -> Path:
    """Deprecated alias of :func:`radmi.data.source.resolve_cache` (kept for configs that still name it)."""
    import warnings

    from radmi.data.source import resolve_cache as _resolve_cache

    warnings.warn(
        "radmi.engines.pretrain.resolve_cache is deprecated; use radmi.data.source.resolve_cache",
        DeprecationWarning,
        stacklevel=2,
    )
    return _resolve_cache(dataset_dir, output_dir, image_size, tokenizer, max_length, workers)


def check_training_rows(dataset: Dataset, batch_size: int, drop_last: bool = True) -> None:
    """Raise a :class:`TrainingError` naming the data when an epoch would have no iteration.

    An empty epoch is otherwise silent: Ignite runs zero iterations, the run "completes" and writes nothing.
    """
    rows = len(dataset)
    where = getattr(dataset, "cache_dir", None)
    split = getattr(dataset, "split", None) or "training"
    if rows == 0:
        raise TrainingError(
            f"the {split} split has no rows; assign splits when building the manifest (e.g. radmi manifest "
            "folder --split-fractions 0.8,0.1,0.1, or --split train) and prepare the cache again",
            path=where,
        )
    if drop_last and rows < batch_size:
        raise TrainingError(
            f"the {split} split has {rows} rows, fewer than one batch of {batch_size} (incomplete batches are "
            "dropped); lower batch_size (--set batch_size=N) or add data",
            path=where,
        )


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """The training ``DataLoader``: a :class:`ResumableSampler` and its own random generator.

    ``batch_size`` is the global batch; with several processes ``idist.auto_dataloader`` splits it. The
    loader's private ``torch.Generator`` keeps iterator creation from drawing on the global torch generator,
    which exact resume relies on. ``collate_fn``: e.g. ``radmi.data.cache.collate_cached``, which keeps the
    batches ``CachedDataset.__getitems__`` reads already stacked.
    """
    check_training_rows(dataset, batch_size, drop_last)
    sampler = ResumableSampler(dataset, seed=seed, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed)
    return idist.auto_dataloader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def val_loader(
    dataset: Dataset, batch_size: int, num_workers: int = 0, collate_fn: Callable | None = None
) -> DataLoader:
    """Held-out loader in a fixed order; every process evaluates the whole set (the metrics need all pairs)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
        pin_memory=idist.device().type == "cuda",
        collate_fn=collate_fn,
    )


# ---- the iteration's inputs ---------------------------------------------------------------------------------
class PretrainBatch(PrepareBatch):
    """MONAI ``PrepareBatch`` for pretraining: batch dict -> ``(image, targets, (), text kwargs)``.

    Like ``PrepareBatchExtraInput`` with the text keys as keyword arguments, plus the batch augmentation run on
    the device (random in training, a centre crop for validation) and channels-last images on CUDA.

    Args:
        augment: a ``radmi.transforms.batch.RandBatchAugmentd`` (keys ``"image"``; ``num_views=2`` adds
            ``image_view2`` for TVDIM), or None to pass the cached images as they are.
        channels_last: convert ``B x 1 x H x W`` images to ``torch.channels_last`` on CUDA.
        max_sentences: K, the text encoder's sentence slots; the text keys are computed for these slots.
        outputs: the network outputs the objective reads (``loss.reads``), passed to the network so it can skip
            work nobody reads (the whole-report text pass for local MI); None: every output.

    Returns, on ``device``: ``image`` B x 1 x H x W float; the objective's targets ``{"study_id": B int64,
    "sentence_keys": B x K int64, "report_key": B int64}`` (the keys from
    :class:`radmi.transforms.text.SentenceTextKeys`, so identical texts are never compared as strings); and
    ``{"input_ids", "attention_mask", "sentence_ids"}`` B x T int64 (+ ``image_view2`` with two views).
    """

    def __init__(
        self,
        augment: Any = None,
        channels_last: bool = True,
        max_sentences: int = 16,
        outputs: Sequence[str] | None = None,
    ) -> None:
        from radmi.transforms.text import SentenceTextKeys

        self.augment = augment
        self.channels_last = channels_last
        self.text_keys = SentenceTextKeys(max_sentences)
        self.outputs = None if outputs is None else list(outputs)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict[str, torch.Tensor]]:
        def to_device(value: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(value).to(device=device, non_blocking=non_blocking, **kwargs)

        images = {"image": to_device(batchdata["image"])}
        if self.augment is not None:
            images = self.augment(images)
        if self.channels_last and torch.device(device or "cpu").type == "cuda":
            images = {k: v.contiguous(memory_format=torch.channels_last) for k, v in images.items()}
        extra = {key: to_device(batchdata[key]) for key in TEXT_KEYS}
        if "image_view2" in images:
            extra["image_view2"] = images["image_view2"]
        if self.outputs is not None:
            extra["outputs"] = self.outputs
        sentence_keys, report_key = self.text_keys(extra["input_ids"], extra["sentence_ids"])
        targets = {"study_id": to_device(batchdata["study_id"]), "sentence_keys": sentence_keys, "report_key": report_key}
        return images["image"], targets, (), extra


# ---- model, optimizer, precision ----------------------------------------------------------------------------
def prepare_network(network: nn.Module, device: torch.device | str, channels_last: bool = True) -> nn.Module:
    """Move the network to ``device`` (channels-last weights on CUDA) and wrap it in DDP when distributed."""
    if channels_last and torch.device(device).type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    return prepare_module(network, device)


def build_optimizer(
    network: nn.Module,
    objective: nn.Module,
    lr_text: float = 2e-5,
    lr_image: float = 5e-4,
    lr_critic: float = 5e-4,
    weight_decay: float = 1e-4,
) -> torch.optim.Optimizer:
    """AdamW with one parameter group per part: text encoder, image encoder, critic (the objective).

    Group names are ``"text"``, ``"image"`` and ``"critic"`` (kept in ``param_groups[i]["name"]``); a frozen
    part or one without parameters is left out.
    """
    network, objective = unwrap(network), unwrap(objective)
    groups = [
        ("text", network.text_encoder, lr_text),
        ("image", network.image_encoder, lr_image),
        ("critic", objective, lr_critic),
    ]
    known = {id(p) for _, module, _ in groups for p in module.parameters()}
    rest = [p for p in network.parameters() if id(p) not in known and p.requires_grad]
    param_groups = []
    for name, module, lr in groups:
        params = [p for p in module.parameters() if p.requires_grad]
        if name == "critic":
            params += rest  # anything the network adds besides the encoders trains like the critic
        if params:
            param_groups.append({"params": params, "lr": float(lr), "name": name})
    if not param_groups:
        raise TrainingError("nothing to train: every parameter of the network and objective is frozen")
    return idist.auto_optim(torch.optim.AdamW(param_groups, weight_decay=weight_decay))


def amp_settings(amp: str, device: torch.device | str) -> tuple[bool, dict[str, Any]]:
    """``(amp enabled, amp_kwargs)`` for ``SupervisedTrainer``/``SupervisedEvaluator``.

    ``"bf16"``/``"fp16"`` autocast on CUDA; MONAI's engines autocast with device ``"cuda"`` only, so on the CPU
    mixed precision is switched off (with a log line) rather than silently running a different recipe.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "none":
        return False, {}
    if torch.device(device).type != "cuda":
        logger.info("amp=%s needs CUDA; training in float32 on %s", amp, device)
        return False, {}
    return True, {"dtype": torch.bfloat16 if amp == "bf16" else torch.float16}


# ---- the trainer ------------------------------------------------------------------------------------------
def build_trainer(
    *,
    device: torch.device | str,
    max_epochs: int,
    train_data_loader: DataLoader,
    network: nn.Module,
    loss_function: nn.Module,
    optimizer: torch.optim.Optimizer,
    prepare_batch: PrepareBatch,
    run_dir: str | Path,
    train_handlers: Sequence | None = None,
    lr_scheduler: Any = None,
    amp: str = "none",
    accumulation_steps: int = 1,
    checkpoint_every: int = 100,
    checkpoint_keep: int = 2,
    resume: bool = False,
    epoch_length: int | None = None,
) -> SupervisedTrainer:
    """A MONAI ``SupervisedTrainer`` for image-text pretraining, with resumable checkpoints.

    Args:
        device: this process's device.
        max_epochs: epochs to train in total (a resumed run continues up to the same number).
        train_data_loader: from :func:`train_loader` (its :class:`ResumableSampler` makes resume exact).
        network: the (DDP-wrapped) ``ImageTextModel``; loss_function: the ``PretrainObjective``.
        optimizer: from :func:`build_optimizer`; lr_scheduler: stepped per iteration by an ``LrScheduleHandler``
            in ``train_handlers``, saved in checkpoints.
        prepare_batch: a :class:`PretrainBatch` in training mode.
        run_dir: checkpoints go to ``run_dir/checkpoints``.
        train_handlers: MONAI/Ignite handlers from the recipe (LR schedule, validation, stats, TensorBoard, the
            NaN/inf guard, gradient clipping, the final model export, ...).
        amp: ``"bf16"``, ``"fp16"`` (with a GradScaler) or ``"none"``.
        accumulation_steps: batches per optimizer step.
        checkpoint_every: iterations between checkpoints; checkpoint_keep: how many to keep.
        resume: continue from the newest complete checkpoint in ``run_dir/checkpoints`` if there is one.
        epoch_length: iterations per epoch (default: the loader's length).
    """
    run_dir = Path(run_dir)
    amp_on, amp_kwargs = amp_settings(amp, device)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=max_epochs,
        train_data_loader=train_data_loader,
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        epoch_length=epoch_length,
        prepare_batch=prepare_batch,
        train_handlers=train_handlers,
        amp=amp_on,
        amp_kwargs=amp_kwargs,
        # MONAI's convention: the output becomes per-sample dicts with the loss replicated, so stock handlers
        # and bundle tracking (from_engine(["loss"], first=True)) read it; the features are views, no copies
        decollate=True,
        optim_set_to_none=True,
        accumulation_steps=accumulation_steps,
    )
    if amp_on:
        # SupervisedTrainer always builds an enabled GradScaler with amp; bf16 has float32's range and needs none
        trainer.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    sampler = getattr(train_data_loader, "sampler", None)
    save_dict: dict[str, Any] = {
        "network": unwrap(network),
        "objective": unwrap(loss_function),
        "optimizer": optimizer,
        "trainer": trainer,
        "random_states": RandomStates(sampler=sampler, augment=getattr(prepare_batch, "augment", None)),
    }
    if lr_scheduler is not None:
        save_dict["lr_scheduler"] = lr_scheduler
    if amp_on and amp == "fp16":
        save_dict["scaler"] = trainer.scaler
    checkpoint_dir = run_dir / "checkpoints"
    if resume:
        from monai.handlers import CheckpointLoader

        path = latest_checkpoint(checkpoint_dir)
        if path is None:
            logger.warning("resume asked but %s holds no checkpoint; starting from scratch", checkpoint_dir)
        else:
            if is_rank_zero():
                logger.info("resuming from %s", path)
            CheckpointLoader(load_path=str(path), load_dict=save_dict, map_location=str(device)).attach(
                trainer
            )
    AtomicCheckpointSaver(
        save_dir=str(checkpoint_dir),
        save_dict=save_dict,
        epoch_level=False,
        save_interval=max(int(checkpoint_every), 1),
        n_saved=checkpoint_keep,
    ).attach(trainer)
    return trainer
