"""TVDIM (Qin et al., 2021, "Text-enhanced Visual Deep InfoMax").

Two terms, optimized jointly:

- **intra-modality** (Deep InfoMax between two augmented views of one image): every local feature of view 1
  against the global feature of view 2, and view 2's local features against view 1's global feature,
  with the JSD or InfoNCE estimator; each region is its own positive pair.
- **inter-modality** (image against report): text is a noisy view, so instead of pushing its MI to the maximum
  a margin ranking loss only asks the matching pair to beat every negative pair by ``margin``.
"""

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
    infonce_bound,
    study_negatives_mask,
)

INTRA_ESTIMATORS = ("jsd", "infonce")
#: the inter-modality critic when the recipe asks for ``dot`` without options: a fixed cosine, so the margin
#: keeps its meaning in cosine units
FIXED_COSINE = {"temperature": 1.0, "learnable_temperature": False}


def margin_ranking_loss(
    scores: torch.Tensor,
    margin: float,
    negatives_mask: torch.Tensor | None = None,
    hardest_negative: bool = False,
) -> torch.Tensor:
    """Bidirectional hinge ranking loss on a ``B x B`` score matrix (positives on the diagonal).

    For image anchor i and negative report j: ``max(0, margin - S_ii + S_ij)``; for report anchor j and negative
    image i: ``max(0, margin - S_jj + S_ij)``. Averaged over all usable negatives (or, with ``hardest_negative``,
    the largest violation per anchor, as VSE++), then over the two directions. Returns a scalar.
    """
    scores = scores.float()
    batch = scores.shape[-1]
    eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
    negatives = ~eye if negatives_mask is None else negatives_mask.to(scores.device, torch.bool) & ~eye
    positives = scores.diagonal()
    image_anchor = torch.relu(margin - positives.unsqueeze(1) + scores)  # row i: anchor image i
    report_anchor = torch.relu(margin - positives.unsqueeze(0) + scores)  # column j: anchor report j
    zero = torch.zeros_like(scores)
    image_anchor = torch.where(negatives, image_anchor, zero)
    report_anchor = torch.where(negatives, report_anchor, zero)
    if hardest_negative:
        return 0.5 * (image_anchor.amax(dim=1).mean() + report_anchor.amax(dim=0).mean())
    count = negatives.sum().clamp(min=1)
    return 0.5 * (image_anchor.sum() + report_anchor.sum()) / count


class TVDIMLoss(ObjectiveLoss):
    """Intra-modality DIM between two image views plus inter-modality margin ranking against the report.

    Args:
        intra_critic: scores (local feature, global feature) pairs of the two image views.
        inter_critic: scores (image global, report global) pairs; a fixed-scale cosine critic suits a margin.
        intra_estimator: ``jsd`` (DIM's choice) or ``infonce``.
        margin: the ranking margin, in the inter critic's score units.
        intra_weight, inter_weight: weights of the two terms in the loss.
        hardest_negative: rank against the hardest negative only (VSE++) instead of all negatives.

    ``forward(image_local B x E x h x w, image_global B x E, image_local_view2, image_global_view2, text_global B x E,
    study_ids B | None, report_keys B | None)`` returns :class:`~radmi.losses.estimators.MIOutput`: ``loss = -intra_weight * mi_intra +
    inter_weight * ranking``, ``mi`` = the intra-modality estimate, ``scores`` = the B x B inter-modality matrix,
    ``terms`` = ``mi_intra``, ``ranking`` and ``mi_inter`` (InfoNCE of the inter matrix, for monitoring).
    """

    kind = "tvdim"
    reads = ("image_local", "image_global", "image_local_view2", "image_global_view2", "text_global")
    text_key = "report_keys"
    image_views = 2
    region_maps = True

    def __init__(
        self,
        intra_critic: Critic,
        inter_critic: Critic,
        intra_estimator: str = "jsd",
        margin: float = 0.2,
        intra_weight: float = 1.0,
        inter_weight: float = 1.0,
        hardest_negative: bool = False,
    ) -> None:
        super().__init__()
        if intra_estimator not in INTRA_ESTIMATORS:
            raise ValueError(f"intra_estimator must be one of {INTRA_ESTIMATORS}, got {intra_estimator!r}")
        self.intra_critic = intra_critic
        self.inter_critic = inter_critic
        self.intra_estimator_name = intra_estimator
        self.intra_estimator = get_estimator(intra_estimator)
        self.margin = float(margin)
        self.intra_weight = float(intra_weight)
        self.inter_weight = float(inter_weight)
        self.hardest_negative = bool(hardest_negative)

    def local_global_mi(
        self, image_local: torch.Tensor, other_global: torch.Tensor, negatives_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """MI estimate between ``image_local`` (B x E x h x w) regions and ``other_global`` (B x E)."""
        batch, dim = image_local.shape[:2]
        regions = image_local.flatten(2).transpose(1, 2).reshape(-1, dim)  # (B R) x E
        scores = self.intra_critic(regions, other_global).view(
            batch, -1, batch
        )  # image i, region r, view-2 j
        return self.intra_estimator(scores.transpose(0, 1), negatives_mask)  # R independent B x B problems

    def forward(
        self,
        image_local: torch.Tensor,
        image_global: torch.Tensor,
        image_local_view2: torch.Tensor,
        image_global_view2: torch.Tensor,
        text_global: torch.Tensor,
        study_ids: torch.Tensor | None = None,
        report_keys: torch.Tensor | None = None,
    ) -> MIOutput:
        negatives = study_negatives_mask(study_ids)
        # identical report text: not a negative image-report pair (the image views are unaffected)
        text_negatives = both_masks(negatives, different_keys_mask(report_keys))
        mi_intra = 0.5 * (
            self.local_global_mi(image_local, image_global_view2, negatives)
            + self.local_global_mi(image_local_view2, image_global, negatives)
        )
        inter_scores = self.inter_critic(image_global, text_global)  # B x B
        ranking = margin_ranking_loss(inter_scores, self.margin, text_negatives, self.hardest_negative)
        loss = -self.intra_weight * mi_intra + self.inter_weight * ranking
        with torch.no_grad():
            mi_inter = infonce_bound(inter_scores, text_negatives)
        terms = {"mi_intra": mi_intra, "ranking": ranking, "mi_inter": mi_inter}
        return MIOutput(loss=loss, mi=mi_intra, scores=inter_scores, terms=terms)

    @classmethod
    def from_options(
        cls,
        embed_dim: int | None,
        critic: str = "dot",
        critic_kwargs: dict | None = None,
        intra_critic: str = "dot",
        intra_critic_kwargs: dict | None = None,
        intra_estimator: str = "jsd",
        margin: float = 0.2,
        intra_weight: float = 1.0,
        inter_weight: float = 1.0,
        hardest_negative: bool = False,
        **_other_objectives: Any,
    ) -> TVDIMLoss:
        inter_options = critic_kwargs or (FIXED_COSINE if critic == "dot" else {})
        return cls(
            build_critic(intra_critic, embed_dim, embed_dim, intra_critic_kwargs),
            build_critic(critic, embed_dim, embed_dim, inter_options),
            intra_estimator,
            margin,
            intra_weight,
            inter_weight,
            hardest_negative,
        )

    @property
    def config(self) -> dict[str, Any]:
        return {
            "_target_": qualified_name(self),
            "intra_critic": self.intra_critic.config,
            "inter_critic": self.inter_critic.config,
            "intra_estimator": self.intra_estimator_name,
            "margin": self.margin,
            "intra_weight": self.intra_weight,
            "inter_weight": self.inter_weight,
            "hardest_negative": self.hardest_negative,
        }

    def pair_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The inter-modality critic on ``image_global`` Bi x E against ``text_global`` Bt x E -> Bi x Bt."""
        return self.inter_critic(images["image_global"], texts["text_global"])

    @torch.no_grad()
    def sentence_maps(self, image_local: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """The image-text critic over regions x sentences: ``B x E x h x w``, ``B x K x E`` -> ``B x K x h x w``."""
        batch, _, height, width = image_local.shape
        regions = image_local.flatten(2).transpose(1, 2)  # B x R x E
        maps = self.inter_critic.paired(regions, sentences).transpose(1, 2)  # B x K x R
        return maps.reshape(batch, sentences.shape[1], height, width)
