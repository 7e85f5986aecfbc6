"""Local MI (Liao et al., MICCAI 2021): image regions against report sentences.

Every (region r of image i, sentence k of report j) pair in the batch gets a critic score. The scores of one
image are aggregated over its regions (the best-matching region counts: ``max``), which leaves one
``B x B`` image-by-report matrix per sentence slot k. The estimator then treats report j's sentence k with
image j as the positive and the other images (minus same-study ones) as negatives.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from radmi.losses.base import ObjectiveLoss, qualified_name
from radmi.losses.critics import Critic, build_critic
from radmi.losses.estimators import (
    MIOutput,
    both_masks,
    get_estimator,
    same_text_negatives_mask,
    study_negatives_mask,
)

AGGREGATES = ("max", "mean", "lse")
SENTENCE_MODES = ("average", "sample")


def aggregate_regions(scores: torch.Tensor, how: str, dim: int) -> torch.Tensor:
    """Reduce region scores over ``dim``: ``max``, ``mean`` or ``lse`` (log-mean-exp, a smooth max)."""
    if how == "max":
        return scores.amax(dim=dim)
    if how == "mean":
        return scores.mean(dim=dim)
    if how == "lse":
        return torch.logsumexp(scores, dim=dim) - math.log(scores.shape[dim])
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


def sample_sentences(
    sentences: torch.Tensor, sentence_mask: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one existing sentence per report, uniformly (the paper's variant).

    Args:
        sentences: B x K x E; sentence_mask: B x K bool.

    Returns:
        ``(sentences B x 1 x E, mask B x 1, index B)``; a report without sentences keeps slot 0, masked out.
    """
    has_any = sentence_mask.any(dim=1)
    weights = torch.where(
        has_any.unsqueeze(1), sentence_mask.float(), torch.ones_like(sentence_mask, dtype=torch.float)
    )
    index = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # B
    picked = sentences.gather(1, index.view(-1, 1, 1).expand(-1, 1, sentences.shape[-1]))
    return picked, has_any.unsqueeze(1), index


class LocalMILoss(ObjectiveLoss):
    """Local image-sentence MI objective.

    Args:
        critic: scores region/sentence pairs (:mod:`radmi.losses.critics`).
        estimator: ``infonce``, ``dv`` or ``jsd`` (:mod:`radmi.losses.estimators`).
        aggregate: how region scores are reduced per image: ``max`` (the paper), ``mean`` or ``lse``.
        sentence_mode: ``average`` — estimate for every sentence slot and average over existing sentences;
            ``sample`` — one random sentence per report per step (the paper's variant; cheaper).

    ``forward(image_local: B x E x h x w, sentences: B x K x E, sentence_mask: B x K bool, study_ids: B | None,
    sentence_keys: B x K int64 | None)`` returns :class:`~radmi.losses.estimators.MIOutput` with ``scores`` = the
    critic map of each report's own sentences over its own image's regions, ``B x K' x h x w`` (K' = K, or 1
    when sampling; ``terms["sentence_index"]`` then holds the sampled slot per report). With ``sentence_keys``
    (:class:`radmi.transforms.text.SentenceTextKeys`), an image whose report contains the anchor sentence's exact
    text is not a negative for it (:func:`~radmi.losses.estimators.same_text_negatives_mask`).
    """

    kind = "local"
    reads = ("image_local", "text_sentences", "sentence_mask")
    text_key = "sentence_keys"
    region_maps = True

    def __init__(
        self,
        critic: Critic,
        estimator: str = "infonce",
        aggregate: str = "max",
        sentence_mode: str = "average",
    ) -> None:
        super().__init__()
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if sentence_mode not in SENTENCE_MODES:
            raise ValueError(f"sentence_mode must be one of {SENTENCE_MODES}, got {sentence_mode!r}")
        self.critic = critic
        self.estimator_name = estimator
        self.estimator = get_estimator(estimator)
        self.aggregate = aggregate
        self.sentence_mode = sentence_mode

    def forward(
        self,
        image_local: torch.Tensor,
        sentences: torch.Tensor,
        sentence_mask: torch.Tensor,
        study_ids: torch.Tensor | None = None,
        sentence_keys: torch.Tensor | None = None,
    ) -> MIOutput:
        batch, dim, height, width = image_local.shape
        terms: dict[str, torch.Tensor] = {}
        anchor_keys = sentence_keys
        if self.sentence_mode == "sample":
            sentences, sentence_mask, terms["sentence_index"] = sample_sentences(sentences, sentence_mask)
            if sentence_keys is not None:
                anchor_keys = sentence_keys.gather(1, terms["sentence_index"].unsqueeze(1))
        negatives = study_negatives_mask(study_ids)
        if sentence_keys is not None:
            negatives = both_masks(negatives, same_text_negatives_mask(anchor_keys, sentence_keys))
        slots = sentences.shape[1]
        regions = image_local.flatten(2).transpose(1, 2)  # B x R x E
        grid = self.critic(regions.reshape(-1, dim), sentences.reshape(-1, sentences.shape[-1]))
        grid = grid.view(batch, height * width, batch, slots)  # image i, region r, report j, slot k
        per_slot = aggregate_regions(grid, self.aggregate, dim=1).permute(
            2, 0, 1
        )  # K x B(images) x B(reports)
        mi = self.estimator(per_slot, negatives, sentence_mask.transpose(0, 1))
        # the matching pairs (image b, report b): R x K x B on the diagonal -> B x K x h x w
        score_map = grid.diagonal(dim1=0, dim2=2).permute(2, 1, 0).reshape(batch, slots, height, width)
        return MIOutput(loss=-mi, mi=mi, scores=score_map, terms=terms)

    @classmethod
    def from_options(
        cls,
        embed_dim: int | None,
        critic: str = "dot",
        critic_kwargs: dict | None = None,
        estimator: str = "infonce",
        aggregate: str = "max",
        sentence_mode: str = "average",
        **_other_objectives: Any,
    ) -> LocalMILoss:
        return cls(build_critic(critic, embed_dim, embed_dim, critic_kwargs), estimator, aggregate, sentence_mode)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "_target_": qualified_name(self),
            "critic": self.critic.config,
            "estimator": self.estimator_name,
            "aggregate": self.aggregate,
            "sentence_mode": self.sentence_mode,
        }

    @torch.no_grad()
    def score_map(self, image_local: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """Critic scores of each report's sentences over its own image: ``B x K x h x w`` (for heat maps)."""
        batch, _, height, width = image_local.shape
        regions = image_local.flatten(2).transpose(1, 2)  # B x R x E
        scores = self.critic.paired(regions, sentences)  # B x R x K
        return scores.transpose(1, 2).reshape(batch, sentences.shape[1], height, width)

    def sentence_maps(self, image_local: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        return self.score_map(image_local, sentences)

    def pair_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every (region, sentence) pair scored, reduced over regions as in training, then averaged over each
        report's existing sentences: ``image_local`` Bi x E x h x w, ``text_sentences`` Bt x K x E,
        ``sentence_mask`` Bt x K -> Bi x Bt."""
        local, sentences, mask = images["image_local"], texts["text_sentences"], texts["sentence_mask"]
        n_images, dim = local.shape[:2]
        n_texts, slots = sentences.shape[:2]
        regions = local.flatten(2).transpose(1, 2).reshape(-1, dim)  # (Bi R) x E
        grid = self.critic(regions, sentences.reshape(-1, sentences.shape[-1]))
        grid = grid.view(n_images, -1, n_texts, slots)  # image, region, report, slot
        per_sentence = aggregate_regions(grid, self.aggregate, dim=1)  # Bi x Bt x K
        weights = mask.to(per_sentence.dtype).unsqueeze(0)  # 1 x Bt x K
        return (per_sentence * weights).sum(-1) / weights.sum(-1).clamp(min=1)
