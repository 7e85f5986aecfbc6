"""The pretraining ``loss_function`` for MONAI's ``SupervisedTrainer``: ``objective(pred: dict, study_ids: B)``.

``pred`` is :class:`radmi.models.multimodal.ImageTextModel`'s output dict. The objective owns its critic(s),
so give ``objective.parameters()`` to the optimizer (usually as its own learning-rate group). After each call
``objective.latest`` holds the step's loss and MI estimates (nats) as floats for logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from radmi.errors import TrainingError
from radmi.losses.critics import build_critic
from radmi.losses.global_mi import GlobalMILoss
from radmi.losses.local_mi import LocalMILoss
from radmi.losses.tvdim import TVDIMLoss

KINDS = ("local", "global", "tvdim")


class PretrainObjective(nn.Module):
    """Local MI, global MI or TVDIM, reading the pretraining network's output dict.

    Args:
        kind: ``local`` (regions vs sentences; the seed paper), ``global`` (pooled image vs report; the baseline)
            or ``tvdim`` (two image views + margin ranking against the report).
        embed_dim: E, the feature size; required by the ``bilinear`` and ``concat_mlp`` critics.
        critic: the image-text critic: ``dot``, ``bilinear`` or ``concat_mlp``.
        critic_kwargs: extra arguments of that critic (e.g. ``{"temperature": 0.07}``, ``{"hidden": [1024, 512]}``).
            For ``tvdim`` with the ``dot`` critic and no kwargs, a fixed cosine (temperature 1) is used so the
            margin keeps its meaning.
        estimator: ``infonce``, ``dv`` or ``jsd`` (local and global).
        aggregate: region aggregation for ``local``: ``max``, ``mean`` or ``lse``.
        sentence_mode: ``average`` or ``sample`` for ``local``.
        intra_critic, intra_critic_kwargs: the critic between image views (``tvdim``).
        intra_estimator: ``jsd`` or ``infonce`` (``tvdim``).
        margin, intra_weight, inter_weight, hardest_negative: see :class:`~radmi.losses.tvdim.TVDIMLoss`.

    ``forward(pred, targets)``: ``targets`` are the study ids (B int64 tensor, or None for no same-study mask);
    returns the scalar loss.
    """

    def __init__(
        self,
        kind: str = "local",
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
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "tvdim" and critic == "dot" and not critic_kwargs:
            critic_kwargs = {"temperature": 1.0, "learnable_temperature": False}
        image_text_critic = build_critic(critic, embed_dim, embed_dim, **dict(critic_kwargs or {}))
        if kind == "local":
            self.loss = LocalMILoss(image_text_critic, estimator, aggregate, sentence_mode)
        elif kind == "global":
            self.loss = GlobalMILoss(image_text_critic, estimator)
        else:
            view_critic = build_critic(intra_critic, embed_dim, embed_dim, **dict(intra_critic_kwargs or {}))
            self.loss = TVDIMLoss(
                view_critic,
                image_text_critic,
                intra_estimator,
                margin,
                intra_weight,
                inter_weight,
                hardest_negative,
            )
        self._latest: dict[str, torch.Tensor] = {}
        #: the last step's score tensor (detached), e.g. the region x sentence maps of ``local``
        self.last_scores: torch.Tensor | None = None

    @property
    def latest(self) -> dict[str, float]:
        """The last step's ``loss``, ``mi`` and per-term values, as floats (MI in nats)."""
        # converted only when read, so training steps never wait for the GPU just for logging
        return {name: float(value) for name, value in self._latest.items()}

    def forward(
        self, pred: dict[str, torch.Tensor], targets: torch.Tensor | Sequence | None = None
    ) -> torch.Tensor:
        """``pred``: the network's dict (docs/architecture.md); ``targets``: study ids (B). Returns the loss."""
        study_ids = targets
        if self.kind == "local":
            out = self.loss(pred["image_local"], pred["text_sentences"], pred["sentence_mask"], study_ids)
        elif self.kind == "global":
            out = self.loss(pred["image_global"], pred["text_global"], study_ids)
        else:
            if "image_local_view2" not in pred or "image_global_view2" not in pred:
                raise TrainingError(
                    "the TVDIM objective needs a second augmented view: pass image_view2 to the network "
                    "(the batch needs an 'image_view2' key)"
                )
            out = self.loss(
                pred["image_local"],
                pred["image_global"],
                pred["image_local_view2"],
                pred["image_global_view2"],
                pred["text_global"],
                study_ids,
            )
        latest = {"loss": out.loss.detach(), "mi": out.mi.detach()}
        latest.update({name: value.detach() for name, value in out.terms.items() if value.dim() == 0})
        self._latest = latest
        self.last_scores = out.scores.detach()
        return out.loss
