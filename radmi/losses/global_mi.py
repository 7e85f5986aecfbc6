"""Global MI, the baseline: one pooled image vector against one report vector."""

from __future__ import annotations

import torch
from torch import nn

from radmi.losses.critics import Critic
from radmi.losses.estimators import MIOutput, get_estimator, study_negatives_mask


class GlobalMILoss(nn.Module):
    """MI between the image's global embedding and the report's global embedding.

    Args:
        critic: scores (image, report) pairs (:mod:`radmi.losses.critics`).
        estimator: ``infonce``, ``dv`` or ``jsd`` (:mod:`radmi.losses.estimators`).

    ``forward(image_global: B x E, text_global: B x E, study_ids: B | None)`` returns
    :class:`~radmi.losses.estimators.MIOutput` whose ``scores`` is the B x B critic matrix (rows images).
    """

    def __init__(self, critic: Critic, estimator: str = "infonce") -> None:
        super().__init__()
        self.critic = critic
        self.estimator_name = estimator
        self.estimator = get_estimator(estimator)

    def forward(
        self, image_global: torch.Tensor, text_global: torch.Tensor, study_ids: torch.Tensor | None = None
    ) -> MIOutput:
        scores = self.critic(image_global, text_global)  # B x B
        mi = self.estimator(scores, study_negatives_mask(study_ids))
        return MIOutput(loss=-mi, mi=mi, scores=scores, terms={})
