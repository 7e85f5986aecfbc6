"""Validation metrics for pretraining, as Ignite metrics fed by MONAI's ``SupervisedEvaluator``.

The evaluator's output is ``{"pred": <ImageTextModel feature dict>, "label": the objective's targets}`` (the
study ids, B, or :class:`radmi.engines.pretrain.PretrainBatch`'s dict of study ids and text keys); both metrics read
that pair through the default ``output_transform`` (``monai.handlers.from_engine(["pred", "label"])``).

- :class:`HeldOutMI`: the objective's MI lower bound (nats) on held-out batches, averaged weighted by batch size.
- :class:`ReportRetrieval`: image -> report retrieval over the WHOLE held-out set (not within a batch): every
  image is scored against every report with the objective's own critic (:func:`report_scores`), and recall@k
  is the share of images whose report ranks in the top k. Chance level is k / N for N held-out images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import from_engine
from torch import nn

from radmi.engines.distributed import unwrap

__all__ = ["HeldOutMI", "ReportRetrieval", "report_scores", "retrieval_ranks"]

PairScores = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]

#: Feature keys that describe the image side / the report side of a pair.
IMAGE_KEYS = ("image_global", "image_local")
TEXT_KEYS = ("text_tokens", "text_sentences", "sentence_mask", "text_global")


def _pred_and_label() -> Callable:
    return from_engine(["pred", "label"])


class HeldOutMI(Metric):
    """Mean MI lower bound (nats) of the objective on held-out batches.

    Args:
        objective: the pretraining ``PretrainObjective``; calling it as in training updates its ``latest``
            (a dict of floats, MI in nats) and ``estimate_key`` names the one reported.
        estimate_key: which estimate to report (default ``"mi"``, the objective's headline bound; for TVDIM
            that is the intra-modality term, ``"mi_inter"`` the image-report InfoNCE).
    """

    def __init__(
        self, objective: nn.Module, estimate_key: str = "mi", output_transform: Callable | None = None
    ) -> None:
        self.objective = objective
        self.estimate_key = estimate_key
        super().__init__(output_transform=output_transform or _pred_and_label())

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = 0.0
        self._count = 0

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        pred, targets = output
        objective = unwrap(self.objective)
        with torch.no_grad():
            objective(pred, targets)
        batch = int(next(iter(pred.values())).shape[0])
        self._sum += objective.latest[self.estimate_key] * batch
        self._count += batch

    def compute(self) -> float:
        return self._sum / max(self._count, 1)


def retrieval_ranks(
    score_fn: PairScores, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor], chunk: int = 64
) -> torch.Tensor:
    """0-based rank of each image's own report among all N reports (N, int64), scored in chunks.

    ``score_fn(image_part, text_part)`` returns the ``Bi x Bt`` scores of every image of one chunk against every
    report of another. Ties count against the true report (a constant critic gets the worst rank, not the best).
    """
    count = next(iter(images.values())).shape[0]
    ranks = torch.empty(count, dtype=torch.long)
    for start in range(0, count, chunk):
        rows = slice(start, min(start + chunk, count))
        image_part = {k: v[rows] for k, v in images.items()}
        scores = torch.cat(
            [
                score_fn(image_part, {k: v[c : c + chunk] for k, v in texts.items()}).float().cpu()
                for c in range(0, count, chunk)
            ],
            dim=1,
        )  # chunk x N
        own = scores[torch.arange(scores.shape[0]), torch.arange(rows.start, rows.stop)]
        ranks[rows] = (scores >= own[:, None]).sum(dim=1) - 1
    return ranks


class ReportRetrieval(Metric):
    """Image -> report recall@k over the whole held-out set, scored with the objective's critic.

    Args:
        objective: the ``PretrainObjective`` whose critic scores the pairs (:func:`report_scores`).
        ks: the k of each recall@k.
        prefix: metric names are ``f"{prefix}{k}"`` (e.g. ``recall_at_5``; MLflow refuses ``@`` in names).

    ``compute()`` returns ``{"recall_at_1": ..., "recall_at_5": ..., "recall_at_10": ...}`` (fractions in
    [0, 1]); attach it with :meth:`attach` and each key lands in ``engine.state.metrics`` on its own.
    """

    def __init__(
        self,
        objective: nn.Module,
        ks: Sequence[int] = (1, 5, 10),
        prefix: str = "recall_at_",
        output_transform: Callable | None = None,
    ) -> None:
        self.objective = objective
        self.ks = tuple(int(k) for k in ks)
        self.prefix = prefix
        super().__init__(output_transform=output_transform or _pred_and_label())

    @reinit__is_reduced
    def reset(self) -> None:
        self._images: dict[str, list[torch.Tensor]] = {}
        self._texts: dict[str, list[torch.Tensor]] = {}

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        pred, _ = output
        for keys, store in ((IMAGE_KEYS, self._images), (TEXT_KEYS, self._texts)):
            for key in keys:
                if key in pred:
                    store.setdefault(key, []).append(pred[key].detach().float().cpu())

    def compute(self) -> dict[str, float]:
        images = {k: torch.cat(v) for k, v in self._images.items()}
        texts = {k: torch.cat(v) for k, v in self._texts.items()}
        with torch.no_grad():
            ranks = retrieval_ranks(lambda i, t: report_scores(self.objective, i, t), images, texts)
        return {f"{self.prefix}{k}": float((ranks < k).float().mean()) for k in self.ks}

    def completed(self, engine, name: str) -> None:
        # one scalar per k (MONAI's stats handlers log scalars only), not the dict under ``name`` as well
        for key, value in self.compute().items():
            engine.state.metrics[key] = value


def report_scores(
    objective: nn.Module, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``Bi x Bt`` score of every image against every report, with the trained objective's critic.

    Each loss declares how (:meth:`radmi.losses.base.ObjectiveLoss.pair_scores`): local MI scores every
    (region, sentence) pair, aggregates over regions as in training and averages over each report's existing
    sentences; global MI and TVDIM score (image_global, text_global).

    Args:
        images: ``image_local`` Bi x E x h x w and/or ``image_global`` Bi x E.
        texts: ``text_sentences`` Bt x K x E + ``sentence_mask`` Bt x K, and/or ``text_global`` Bt x E.
    """
    objective = unwrap(objective)
    device = next((p.device for p in objective.parameters()), None)
    if device is None:
        device = next((b.device for b in objective.buffers()), torch.device("cpu"))
    images = {key: value.to(device) for key, value in images.items()}
    texts = {key: value.to(device) for key, value in texts.items()}
    return objective.loss.pair_scores(images, texts)
