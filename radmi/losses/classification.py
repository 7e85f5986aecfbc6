"""The finding-classification loss (the findings recipe's ``loss``): masked multi-label BCE + edema CE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FindingLoss"]


class FindingLoss(nn.Module):
    """Masked multi-label BCE over the findings, plus ``edema_weight`` x edema-severity cross-entropy.

    The BCE is averaged over the entries whose mask is 1 (entries the uncertainty/blank policy masks out do not
    count, and do not dilute the mean). Edema CE is averaged over samples with a severity (not -1); a batch
    without any contributes 0.

    Args:
        edema_weight: weight of the edema term (used only when the network has an edema head).
        pos_weight: optional L positive-class weights for the BCE (``BCEWithLogits``' ``pos_weight``).

    Shapes: ``pred = {"findings": B x L[, "edema": B x 4]}`` (or the B x L tensor alone);
    ``targets = {"labels": B x L, "label_mask": B x L, "edema_severity": B}``. Returns a scalar.
    """

    def __init__(self, edema_weight: float = 1.0, pos_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.edema_weight = float(edema_weight)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        )

    def forward(
        self, pred: Mapping[str, torch.Tensor] | torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = pred["findings"] if isinstance(pred, Mapping) else pred
        mask = targets["label_mask"].to(logits.dtype)
        per_entry = F.binary_cross_entropy_with_logits(
            logits, targets["labels"].to(logits.dtype), pos_weight=self.pos_weight, reduction="none"
        )
        loss = (per_entry * mask).sum() / mask.sum().clamp_min(1.0)
        if isinstance(pred, Mapping) and "edema" in pred:
            severity = targets["edema_severity"].long()
            if bool((severity >= 0).any()):
                loss = loss + self.edema_weight * F.cross_entropy(pred["edema"], severity, ignore_index=-1)
            else:
                loss = loss + 0.0 * pred["edema"].sum()  # keep the head in the graph (DDP needs every grad)
        return loss
