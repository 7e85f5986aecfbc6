"""Mutual-information lower bounds computed from a critic's score matrix.

Every function takes ``scores: ... x B x B`` where rows are images, columns are texts (or second views) and
the positives (matching pairs) lie on the diagonal. Leading dimensions (e.g. K sentence slots, or R image
regions) are independent problems that share the batch.

- ``negatives_mask``: B x B or ... x B x B bool, True where (row i, column j) may serve as a negative pair. Pass
  ``study_ids[:, None] != study_ids[None, :]`` so that two images of the same study are never negatives of each
  other. The diagonal is always the positive and the mask's diagonal is ignored. None = every off-diagonal pair.
- ``valid``: ... x B bool, True where column j exists in that slot (e.g. report j has sentence k). Column j's
  positive counts only where valid, and invalid columns are never negatives. Rows (images) always exist.
  None = all valid.

Each returns the estimate in **nats** as a scalar float32 tensor (computed in float32 even under autocast).
With leading dimensions, per-slot estimates are averaged with weights equal to the number of valid positives
of the slot (InfoNCE: the mean over all anchors). The loss to minimize is the negated bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F


def _prepare(
    scores: torch.Tensor, negatives_mask: torch.Tensor | None, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return float32 scores, the usable-negative mask (... x B x B), valid (... x B) and the identity mask."""
    if scores.dim() < 2 or scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must be ... x B x B, got {tuple(scores.shape)}")
    scores = scores.float()
    batch = scores.shape[-1]
    eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
    if negatives_mask is None:
        negatives = ~eye
    else:
        negatives = negatives_mask.to(device=scores.device, dtype=torch.bool) & ~eye
    if valid is None:
        valid = torch.ones(scores.shape[:-1], dtype=torch.bool, device=scores.device)
    else:
        valid = valid.to(device=scores.device, dtype=torch.bool).expand(scores.shape[:-1])
    negatives = negatives.expand(scores.shape) & valid.unsqueeze(-2)  # a negative needs an existing column
    return scores, negatives, valid, eye


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``values``; entries with weight 0 are ignored even if they are not finite (0 if all are).

    No data-dependent branch, so the GPU never waits for the host here.
    """
    kept = torch.where(weights > 0, values, torch.zeros_like(values))
    return (kept * weights).sum() / weights.sum().clamp(min=1)


def infonce_bound(
    scores: torch.Tensor, negatives_mask: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018) in its per-anchor form, averaged over both directions.

    For anchor i with candidate set C_i (its positive and its usable negatives, n_i = |C_i| <= B):
    ``bound_i = log n_i - CE_i`` with ``CE_i = -S_ii + log sum_{j in C_i} exp S_ij``. The image-to-text
    direction uses the rows, the text-to-image direction the columns; the result is the mean over every valid
    anchor of both. Without a mask n_i = B, so this is log B minus the mean cross-entropy, and it can never
    exceed log B.

    Args/Returns: see the module docstring; scores ``... x B x B`` -> scalar (nats).
    """
    scores, negatives, valid, eye = _prepare(scores, negatives_mask, valid)
    positives = scores.diagonal(dim1=-2, dim2=-1)  # ... x B
    neg_inf = torch.finfo(scores.dtype).min
    row_candidates = negatives | eye  # image i against texts j
    candidate_scores = scores.masked_fill(~row_candidates, neg_inf)
    row_lse = torch.logsumexp(candidate_scores, dim=-1)
    row_bound = row_candidates.sum(-1).float().log() - (row_lse - positives)
    # text j against images i: for a valid column j its candidates are the same mask read down the column
    column_lse = torch.logsumexp(candidate_scores, dim=-2)
    column_bound = row_candidates.sum(-2).float().log() - (column_lse - positives)
    weights = valid.float()
    both = torch.stack([row_bound, column_bound])
    return _weighted_mean(both, weights.expand_as(both))


def _per_slot_positive_mean(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the diagonal ``values`` over valid columns, per slot, and the count of valid positives."""
    diagonal = values.diagonal(dim1=-2, dim2=-1)
    count = valid.sum(-1).float()
    total = torch.where(valid, diagonal, torch.zeros_like(diagonal)).sum(-1)
    return total / count.clamp(min=1), count


def dv_bound(
    scores: torch.Tensor, negatives_mask: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Donsker-Varadhan (MINE, Belghazi et al. 2018): ``E_pos[T] - log E_neg[exp T]``.

    E_pos is the mean over the valid diagonal and E_neg the mean over all usable negatives of the slot; the log
    of that mean is taken as ``logsumexp - log count`` so large scores do not overflow. Slots without a
    positive or without a negative are left out.

    Args/Returns: see the module docstring; scores ``... x B x B`` -> scalar (nats).
    """
    scores, negatives, valid, _ = _prepare(scores, negatives_mask, valid)
    positive_mean, positive_count = _per_slot_positive_mean(scores, valid)
    flat_scores = scores.flatten(-2)
    flat_negatives = negatives.flatten(-2)
    negative_count = flat_negatives.sum(-1).float()
    neg_inf = torch.finfo(scores.dtype).min
    log_mean_exp = (
        torch.logsumexp(flat_scores.masked_fill(~flat_negatives, neg_inf), dim=-1)
        - negative_count.clamp(min=1).log()
    )
    weights = torch.where(negative_count > 0, positive_count, torch.zeros_like(positive_count))
    return _weighted_mean(positive_mean - log_mean_exp, weights)


def jsd_bound(
    scores: torch.Tensor, negatives_mask: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Jensen-Shannon estimator (Hjelm et al. 2019, Deep InfoMax): ``E_pos[-softplus(-T)] - E_neg[softplus(T)]``.

    It is a lower bound on a JS-divergence-based MI surrogate (its maximum is ``2 log 2`` nats, not the MI);
    it trains stably, which is why DIM and TVDIM use it.

    Args/Returns: see the module docstring; scores ``... x B x B`` -> scalar (nats).
    """
    scores, negatives, valid, _ = _prepare(scores, negatives_mask, valid)
    positive_mean, positive_count = _per_slot_positive_mean(-F.softplus(-scores), valid)
    negative_values = torch.where(negatives, F.softplus(scores), torch.zeros_like(scores)).flatten(-2)
    negative_count = negatives.flatten(-2).sum(-1).float()
    negative_mean = negative_values.sum(-1) / negative_count.clamp(min=1)
    weights = torch.where(negative_count > 0, positive_count, torch.zeros_like(positive_count))
    return _weighted_mean(positive_mean - negative_mean, weights)


#: Estimator name -> function, as named in configs.
ESTIMATORS = {"infonce": infonce_bound, "dv": dv_bound, "jsd": jsd_bound}


def get_estimator(name: str):
    """Look up an estimator by its config name (``infonce``, ``dv`` or ``jsd``)."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {name!r}") from None


class MIOutput(NamedTuple):
    """What an MI objective returns.

    Attributes:
        loss: scalar to minimize (the negated bound, plus any other weighted terms).
        mi: scalar MI estimate in nats (attached to the graph; ``detach()`` it for logging).
        scores: the objective's score tensor (see each objective for its shape), e.g. region x sentence maps.
        terms: named extra scalars or tensors (per-term estimates, sampled sentence indices, ...).
    """

    loss: torch.Tensor
    mi: torch.Tensor
    scores: torch.Tensor
    terms: dict[str, torch.Tensor]


def study_negatives_mask(study_ids: torch.Tensor | Sequence | None) -> torch.Tensor | None:
    """``B`` study ids -> ``B x B`` bool, True where two batch items come from different studies.

    Items of the same study (e.g. the PA and lateral images of one exam) share a report, so they must not be
    each other's negatives. Accepts a tensor (any shape with B elements) or a sequence of ids; None -> None.
    """
    if study_ids is None:
        return None
    if not isinstance(study_ids, torch.Tensor):
        codes: dict = {}
        study_ids = torch.tensor([codes.setdefault(str(s), len(codes)) for s in study_ids])
    study_ids = study_ids.reshape(-1)
    return study_ids.unsqueeze(0) != study_ids.unsqueeze(1)


def same_text_negatives_mask(anchor_keys: torch.Tensor, report_keys: torch.Tensor) -> torch.Tensor:
    """``K' x B x B`` bool, True where report i (rows) holds no sentence with the text of sentence k' of report j.

    A report that contains the anchor's exact sentence describes its image with that sentence, so that image is
    not a negative for the sentence (nor the sentence for that image). Keys come from the data path
    (:class:`radmi.transforms.text.SentenceTextKeys`); negative keys mark missing sentences and match nothing.

    Args:
        anchor_keys: B x K' int64, the key of each report's sentence in slot k' (the slots being estimated).
        report_keys: B x K int64, every sentence key of each report.
    """
    present = report_keys >= 0
    # B(i) x K(report i's sentences) x B(j) x K'(anchor slots)
    same = (report_keys[:, :, None, None] == anchor_keys[None, None, :, :]) & present[:, :, None, None]
    return ~same.any(dim=1).permute(2, 0, 1)


def different_keys_mask(keys: torch.Tensor | None) -> torch.Tensor | None:
    """``B`` keys (e.g. whole-report text keys) -> ``B x B`` bool, True where the two keys differ; None -> None."""
    if keys is None:
        return None
    keys = keys.reshape(-1)
    return keys.unsqueeze(0) != keys.unsqueeze(1)


def both_masks(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    """The logical AND of two broadcastable negative masks, where None means "no restriction"."""
    if first is None:
        return second
    if second is None:
        return first
    return first.to(second.device) & second
