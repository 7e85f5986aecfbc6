"""Validation metric of the findings recipe (beside ``pretrain_metrics.py``): macro AUROC as an Ignite metric.

- :func:`evaluation_outputs`: engine output -> ``(logits B x L, [labels | mask] B x 2L)``;
- :class:`MacroAUROC`: the evaluator's key metric (an Ignite ``EpochMetric``);
- :func:`validation_score`: the early-stopping score (the evaluator's key metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.metrics import EpochMetric

__all__ = ["MacroAUROC", "evaluation_outputs", "validation_score"]


def evaluation_outputs(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Engine output -> ``(logits B x L, labels and mask side by side B x 2L)`` for :class:`MacroAUROC`."""
    pred, targets = output["pred"], output["label"]
    logits = pred["findings"] if isinstance(pred, Mapping) else pred
    return logits.detach().float(), torch.cat([targets["labels"], targets["label_mask"]], dim=1).float()


def _macro_auroc(logits: torch.Tensor, labels_and_mask: torch.Tensor) -> float:
    from radmi.eval.metrics import finding_metrics

    n_labels = logits.shape[1]
    labels, mask = labels_and_mask[:, :n_labels], labels_and_mask[:, n_labels:]
    names = [str(i) for i in range(n_labels)]
    result = finding_metrics(
        labels.cpu().numpy(), logits.cpu().numpy(), names, label_mask=mask.cpu().numpy(), n_bootstrap=0
    )
    # no label with both classes (a tiny validation split): 0.5 = chance, so early stopping still works
    return 0.5 if result.macro_auroc.value is None else float(result.macro_auroc.value)


class MacroAUROC(EpochMetric):
    """Macro AUROC over the labels that have positives and negatives among the masked-in entries.

    Reads ``output_transform(engine.state.output) -> (logits B x L, [labels | mask] B x 2L)``
    (default :func:`evaluation_outputs`). Computed once per epoch on all gathered predictions.
    """

    def __init__(self, output_transform=evaluation_outputs, device: str | torch.device = "cpu") -> None:
        super().__init__(
            _macro_auroc, output_transform=output_transform, check_compute_fn=False, device=device
        )


def validation_score(engine) -> float:
    """Early-stopping score: the evaluator's key metric (validation macro AUROC)."""
    return float(engine.state.metrics[engine.state.key_metric_name])
