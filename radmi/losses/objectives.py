"""The pretraining ``loss_function`` for MONAI's ``SupervisedTrainer``: ``objective(pred: dict, targets)``.

:class:`PretrainObjective` adapts any :class:`~radmi.losses.base.ObjectiveLoss` (local MI, global MI, TVDIM, or
a new one) to the trainer: it reads the network outputs the loss declares (``loss.reads``) from ``pred``, the
study ids and identical-text keys from ``targets``, and keeps the step's estimates for logging. The recipe
declares the loss as a nested config item (``bundles/radmi_cxr_pretrain/configs/train.json``, ``objectives``);
:attr:`PretrainObjective.config` is written to ``models/objective.json`` so a run's objective is rebuilt without
the recipe. The objective owns its critic(s), so give ``objective.parameters()`` to the optimizer (usually as
its own learning-rate group). After each call ``objective.latest`` holds the step's loss and MI estimates
(nats) as floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

# importing the loss modules registers them in OBJECTIVES
from radmi.losses import global_mi, local_mi, tvdim  # noqa: F401
from radmi.losses.base import OBJECTIVES, ObjectiveLoss, qualified_name

#: The objectives radmi ships (``--objective`` names); a new ``ObjectiveLoss`` subclass adds its own.
KINDS = tuple(OBJECTIVES)


def pick_objective(objectives: Mapping[str, ObjectiveLoss | None], name: str) -> ObjectiveLoss:
    """The recipe's ``objectives[name]``; MONAI drops the disabled entries, so it is the only one left."""
    loss = objectives.get(name)
    if loss is None:
        from radmi.errors import TrainingError

        raise TrainingError(
            f"the recipe's 'objectives' has no enabled entry {name!r} (radmi's objectives: {sorted(OBJECTIVES)})"
        )
    return loss


class PretrainObjective(nn.Module):
    """Any pretraining loss, reading the network's output dict and the batch's targets.

    Args:
        kind: build the loss by name with :meth:`ObjectiveLoss.from_options` and the options below (the Python
            API; recipes pass ``loss`` instead): ``local`` (regions vs sentences; the seed paper), ``global``
            (pooled image vs report; the baseline) or ``tvdim`` (two image views + margin ranking).
        embed_dim, critic, critic_kwargs, estimator, aggregate, sentence_mode, intra_critic, intra_critic_kwargs,
            intra_estimator, margin, intra_weight, inter_weight, hardest_negative: the loss's options, each used
            by the objectives that have it (:mod:`radmi.losses.local_mi`, ``global_mi``, ``tvdim``).
        mask_identical_text: when the targets carry text keys (``sentence_keys`` B x K, ``report_key`` B, from
            :class:`radmi.transforms.text.SentenceTextKeys`), a pair whose text is identical to the anchor's is
            not a negative: an image whose report holds the anchor sentence word for word (local), or two
            identical reports (global, TVDIM's inter term). ``False`` keeps only the same-study mask.
        loss: a built :class:`~radmi.losses.base.ObjectiveLoss` (the recipe's way); ``kind`` and the options are
            then ignored.

    ``forward(pred, targets)``: ``targets`` are the study ids (B int64 tensor, or None for no same-study mask), or
    a dict with ``study_id`` (B) and optionally ``sentence_keys`` (B x K) and ``report_key`` (B); returns the
    scalar loss.
    """

    def __init__(
        self,
        kind: str | None = "local",
        embed_dim: int | None = None,
        critic: str = "dot",
        critic_kwargs: dict[str, Any] | None = None,
        estimator: str = "infonce",
        aggregate: str = "max",
        sentence_mode: str = "average",
        intra_critic: str = "dot",
        intra_critic_kwargs: dict[str, Any] | None = None,
        intra_estimator: str = "jsd",
        margin: float = 0.2,
        intra_weight: float = 1.0,
        inter_weight: float = 1.0,
        hardest_negative: bool = False,
        mask_identical_text: bool = True,
        loss: ObjectiveLoss | None = None,
    ) -> None:
        super().__init__()
        if loss is None:
            if kind not in OBJECTIVES:
                raise ValueError(f"kind must be one of {sorted(OBJECTIVES)}, got {kind!r}")
            loss = OBJECTIVES[kind].from_options(
                embed_dim,
                critic=critic,
                critic_kwargs=critic_kwargs,
                estimator=estimator,
                aggregate=aggregate,
                sentence_mode=sentence_mode,
                intra_critic=intra_critic,
                intra_critic_kwargs=intra_critic_kwargs,
                intra_estimator=intra_estimator,
                margin=margin,
                intra_weight=intra_weight,
                inter_weight=inter_weight,
                hardest_negative=hardest_negative,
            )
        if not isinstance(loss, ObjectiveLoss):
            raise TypeError(f"loss must be an ObjectiveLoss (radmi.losses.base), got {type(loss).__name__}")
        self.loss = loss
        self.mask_identical_text = bool(mask_identical_text)
        self._latest: dict[str, torch.Tensor] = {}
        #: the last step's score tensor (detached), e.g. the region x sentence maps of ``local``
        self.last_scores: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        """The loss's short name (``local``, ``global``, ``tvdim``, ...)."""
        return self.loss.kind

    @property
    def config(self) -> dict[str, Any]:
        """A MONAI config item that rebuilds this objective untrained (``models/objective.json``)."""
        return {
            "_target_": qualified_name(self),
            "loss": self.loss.config,
            "mask_identical_text": self.mask_identical_text,
        }

    @property
    def latest(self) -> dict[str, float]:
        """The last step's ``loss``, ``mi`` and per-term values, as floats (MI in nats)."""
        # converted only when read, so training steps never wait for the GPU just for logging
        return {name: float(value) for name, value in self._latest.items()}

    def _targets(self, targets: Any) -> tuple[Any, dict[str, torch.Tensor]]:
        """``(study_ids, text keys for the loss)`` from a study-id tensor/sequence or a targets dict."""
        if not isinstance(targets, dict):
            return targets, {}
        keys: dict[str, torch.Tensor] = {}
        wanted = self.loss.text_key
        if self.mask_identical_text and wanted is not None:
            # the batch names the report key in the singular (one per report)
            value = targets.get("report_key" if wanted == "report_keys" else wanted)
            if value is not None:
                keys[wanted] = value
        return targets.get("study_id"), keys

    def forward(
        self, pred: dict[str, torch.Tensor], targets: torch.Tensor | Sequence | dict | None = None
    ) -> torch.Tensor:
        """``pred``: the network's dict (docs/architecture.md); ``targets``: study ids (B) or a dict. Returns the loss."""
        from radmi.errors import TrainingError

        missing = [key for key in self.loss.reads if key not in pred]
        if missing:
            hint = " (a second augmented view: the batch needs 'image_view2')" if "image_local_view2" in missing else ""
            raise TrainingError(f"the {self.kind} objective needs network outputs {missing}{hint}")
        study_ids, keys = self._targets(targets)
        out = self.loss(*(pred[key] for key in self.loss.reads), study_ids, **keys)
        latest = {"loss": out.loss.detach(), "mi": out.mi.detach()}
        latest.update({name: value.detach() for name, value in out.terms.items() if value.dim() == 0})
        self._latest = latest
        self.last_scores = out.scores.detach()
        return out.loss
