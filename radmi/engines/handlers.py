"""Ignite event handlers that pretraining adds to MONAI's ``SupervisedTrainer``.

Each one does a single job at one engine event and has MONAI's handler shape (``attach(engine)``):

- :class:`NonFiniteLossGuard` stops at the first NaN/inf loss, before any backward pass or optimizer step;
- :class:`GradientClipping` unscales (fp16) and clips the gradients right before the optimizer steps, and
  stops on non-finite gradients when no GradScaler is there to skip the step;
- :class:`SamplerResume` makes a run resumed mid-epoch start its data where the checkpoint left off;
- :class:`PretrainedModelsWriter` exports the encoders and critic into ``RUN_DIR/models/`` when training ends;
- :class:`TrainingProgressBar` is Ignite's tqdm ``ProgressBar`` showing the loss and the MI estimate.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.utils import CommonKeys
from torch import nn

from radmi.engines.distributed import ResumableSampler, is_rank_zero, unwrap
from radmi.errors import TrainingError

logger = logging.getLogger(__name__)

__all__ = [
    "GradientClipping",
    "NonFiniteLossGuard",
    "PretrainedModelsWriter",
    "SamplerResume",
    "is_step_iteration",
]


def is_step_iteration(engine: Engine) -> bool:
    """Whether this iteration ends with an optimizer step, by the same rule as ``SupervisedTrainer``.

    With ``accumulation_steps`` a > 1 the trainer steps every a-th iteration of an epoch and at the epoch's end.
    """
    acc = int(getattr(engine, "accumulation_steps", 1))
    if acc <= 1:
        return True
    epoch_length = engine.state.epoch_length
    if epoch_length is None:
        return engine.state.iteration % acc == 0
    local = (engine.state.iteration - 1) % epoch_length
    return (local + 1) % acc == 0 or (local + 1) == epoch_length


def _any_rank(flag: bool) -> bool:
    """True if ``flag`` is True on any process (so every rank stops together instead of hanging in DDP)."""
    if idist.get_world_size() == 1:
        return flag
    return bool(idist.all_reduce(torch.tensor(float(flag), device=idist.device())).item() > 0)


class NonFiniteLossGuard:
    """Raise :class:`TrainingError` as soon as the loss is NaN or inf (fires at ``LOSS_COMPLETED``).

    It runs before ``backward`` and ``optimizer.step``, so the weights still hold the last finite values and
    no checkpoint with NaN weights can be written. The message names the epoch and iteration.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = engine.state.output[CommonKeys.LOSS]
        if _any_rank(not bool(torch.isfinite(loss.detach()).all())):
            value = loss.detach().float().cpu().item() if loss.numel() == 1 else "non-finite"
            raise TrainingError(
                f"the loss is {value} at iteration {engine.state.iteration} (epoch {engine.state.epoch}); "
                "training stopped before the optimizer step, so the last checkpoint holds finite weights. "
                "Lower the learning rates, use --amp bf16 or none instead of fp16, or raise gradient clipping"
            )


class GradientClipping:
    """Clip the global gradient norm before each optimizer step (fires at ``BACKWARD_COMPLETED``).

    With a GradScaler (fp16) the gradients are unscaled first, as PyTorch's AMP recipe requires, and the scaler
    later skips a step whose gradients are inf/NaN. Without one, a non-finite gradient norm raises
    :class:`TrainingError` before it could reach the weights.

    Args:
        parameters: callable returning the parameters to clip (all trainable ones of network and objective).
        max_norm: clip to this L2 norm; ``0`` or ``None`` only checks the norm.
    """

    def __init__(
        self, parameters: Callable[[], Iterable[torch.Tensor]], max_norm: float | None = 1.0
    ) -> None:
        self.parameters = parameters
        self.max_norm = float(max_norm) if max_norm else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_step_iteration(engine):
            return
        scaler = getattr(engine, "scaler", None)
        scaling = bool(engine.amp and scaler is not None and scaler.is_enabled())
        if scaling:
            scaler.unscale_(engine.optimizer)
        params = [p for p in self.parameters() if p.grad is not None]
        if self.max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        engine.state.grad_norm = float(norm)
        if not scaling and _any_rank(not math.isfinite(float(norm))):
            raise TrainingError(
                f"the gradient norm is {float(norm)} at iteration {engine.state.iteration} "
                f"(epoch {engine.state.epoch}); training stopped before the optimizer step"
            )


class SamplerResume:
    """At each epoch start, tell the sampler how far into the epoch a resumed run already is.

    Ignite keeps counting from the restored iteration but builds a fresh data iterator; without this the first
    batches of the epoch would be seen twice and the last ones never.

    Args:
        sampler: the training loader's :class:`ResumableSampler`.
        batch_size: samples per iteration in this process (the loader's batch size).
    """

    def __init__(self, sampler: ResumableSampler, batch_size: int) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        done = engine.state.iteration % engine.state.epoch_length
        if done:
            logger.info(
                "resuming epoch %d at iteration %d of %d", engine.state.epoch, done, engine.state.epoch_length
            )
        self.sampler.skip(done * self.batch_size)


class PretrainedModelsWriter:
    """Write the trained parts into ``models_dir`` when the run completes (rank 0 only).

    Files (docs/architecture.md, "Run directories"): ``image_encoder.pt`` + ``image_encoder.json``,
    ``text_encoder/`` (``save_pretrained``, with the tokenizer), ``critic.pt`` (the objective's state dict:
    its critics and any learned temperature) and ``objective.json`` (the objective as a MONAI config item,
    ``PretrainObjective.config``, so explain/grounding rebuild it without the recipe).

    Args:
        models_dir: usually ``RUN_DIR/models``.
        network: the ``ImageTextModel`` (possibly DDP-wrapped).
        objective: the ``PretrainObjective`` (possibly DDP-wrapped).
        tokenizer: name or path of the tokenizer the cache was built with, saved beside the text model.
    """

    def __init__(
        self, models_dir: str | Path, network: nn.Module, objective: nn.Module, tokenizer: str | None = None
    ):
        self.models_dir = Path(models_dir)
        self.network = network
        self.objective = objective
        self.tokenizer = tokenizer

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not is_rank_zero():
            return
        network = unwrap(self.network)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        network.image_encoder.save(self.models_dir)
        text_dir = network.text_encoder.save_pretrained(self.models_dir / "text_encoder")
        if self.tokenizer is not None:
            from radmi.models.hub import load_tokenizer

            load_tokenizer(self.tokenizer).save_pretrained(text_dir)
        objective = unwrap(self.objective)
        torch.save(objective.state_dict(), self.models_dir / "critic.pt")
        if hasattr(objective, "config"):
            (self.models_dir / "objective.json").write_text(json.dumps(objective.config, indent=2) + "\n")
            from radmi.trust import record_trusted

            record_trusted(self.models_dir / "objective.json")  # radmi wrote it (see radmi.trust)
        logger.info("wrote the pretrained encoders and critic to %s", self.models_dir)


class TrainingProgressBar(ProgressBar):
    """Ignite's tqdm ``ProgressBar`` with MONAI's one-argument ``attach(engine)``, showing loss and MI.

    Args:
        objective: the ``PretrainObjective``; its ``latest["mi"]`` (nats) is shown beside the loss.
        kwargs: ``ProgressBar`` arguments (``persist``, ``bar_format``, tqdm options).
    """

    def __init__(self, objective: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.objective = objective

    def _postfix(self, output: dict | list[dict]) -> dict[str, float]:
        loss = from_engine([CommonKeys.LOSS], first=True)(output)
        shown = {"loss": float(loss[0] if isinstance(loss, tuple) else loss)}
        if self.objective is not None and "mi" in unwrap(self.objective).latest:
            shown["mi"] = unwrap(self.objective).latest["mi"]
        return shown

    def attach(self, engine: Engine, metric_names=None, output_transform=None, **kwargs) -> None:  # type: ignore[override]
        super().attach(
            engine, metric_names=metric_names, output_transform=output_transform or self._postfix, **kwargs
        )
