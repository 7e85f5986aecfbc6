"""Global MI, the baseline: one pooled image vector against one report vector."""

from __future__ import annotations

from typing import Any

import torch

from radmi.losses.base import ObjectiveLoss, qualified_name
from radmi.losses.critics import Critic, build_critic
from radmi.losses.estimators import (
    MIOutput,
    both_masks,
    different_keys_mask,
    get_estimator,
    study_negatives_mask,
)


class GlobalMILoss(ObjectiveLoss):
    """MI between the image's global embedding and the report's global embedding.

    Args:
        critic: scores (image, report) pairs (:mod:`radmi.losses.critics`).
        estimator: ``infonce``, ``dv`` or ``jsd`` (:mod:`radmi.losses.estimators`).

    ``forward(image_global: B x E, text_global: B x E, study_ids: B | None, report_keys: B | None)`` returns
    :class:`~radmi.losses.estimators.MIOutput` whose ``scores`` is the B x B critic matrix (rows images). Two
    reports with the same ``report_keys`` (identical text) are not each other's negatives.
    """

    kind = "global"
    reads = ("image_global", "text_global")
    text_key = "report_keys"
    report_maps = True

    def __init__(self, critic: Critic, estimator: str = "infonce") -> None:
        super().__init__()
        self.critic = critic
        self.estimator_name = estimator
        self.estimator = get_estimator(estimator)

    def forward(
        self,
        image_global: torch.Tensor,
        text_global: torch.Tensor,
        study_ids: torch.Tensor | None = None,
        report_keys: torch.Tensor | None = None,
    ) -> MIOutput:
        scores = self.critic(image_global, text_global)  # B x B
        negatives = both_masks(study_negatives_mask(study_ids), different_keys_mask(report_keys))
        mi = self.estimator(scores, negatives)
        return MIOutput(loss=-mi, mi=mi, scores=scores, terms={})

    @classmethod
    def from_options(
        cls,
        embed_dim: int | None,
        critic: str = "dot",
        critic_kwargs: dict | None = None,
        estimator: str = "infonce",
        **_other_objectives: Any,
    ) -> GlobalMILoss:
        return cls(build_critic(critic, embed_dim, embed_dim, critic_kwargs), estimator)

    @property
    def config(self) -> dict[str, Any]:
        return {"_target_": qualified_name(self), "critic": self.critic.config, "estimator": self.estimator_name}

    def pair_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The critic on ``image_global`` Bi x E against ``text_global`` Bt x E -> Bi x Bt."""
        return self.critic(images["image_global"], texts["text_global"])
