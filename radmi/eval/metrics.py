"""Classification metrics with patient-level bootstrap confidence intervals.

The point estimates are scikit-learn's ``roc_auc_score`` and ``average_precision_score``. The bootstrap
resamples *patients* (``subject_id``) with replacement, so the images of one patient always move together;
one draw is expressed as integer sample weights (how many times each image's patient was drawn). The weighted
AUROC and AUPRC of all draws are computed at once from one sort of the scores (B draws x N samples arrays),
which equals scikit-learn called with ``sample_weight`` draw by draw (checked in the tests).

A label whose evaluation set has no positives or no negatives has no AUROC. It is reported with a status
string (``"no positives"``, ``"no negatives"``, ``"no samples"``) and ``value=None``, never as NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from radmi.data.labels import EDEMA_ORDINAL_TASKS  # name -> lowest severity counted as positive

OK = "ok"
NO_POSITIVES = "no positives"
NO_NEGATIVES = "no negatives"
NO_SAMPLES = "no samples"

#: Draws processed together; bounds memory at about DRAW_CHUNK x N float64.
DRAW_CHUNK = 256


@dataclass
class Estimate:
    """One metric: point value, bootstrap 95% CI and the counts it rests on.

    ``value``/``ci_low``/``ci_high`` are None when ``status`` is not ``"ok"``. ``n_draws`` counts the bootstrap
    draws in which the metric was defined (draws with no positives or no negatives are left out).
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    status: str
    n_positive: int
    n_negative: int
    n_draws: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FindingMetrics:
    """Per-label AUROC/AUPRC estimates and their macro averages over the labels with status ``"ok"``."""

    auroc: dict[str, Estimate] = field(default_factory=dict)
    auprc: dict[str, Estimate] = field(default_factory=dict)
    macro_auroc: Estimate | None = None
    macro_auprc: Estimate | None = None
    edema: dict[str, Estimate] = field(default_factory=dict)
    n_samples: int = 0
    n_patients: int = 0
    n_bootstrap: int = 0

    def as_dict(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "n_patients": self.n_patients,
            "n_bootstrap": self.n_bootstrap,
            "macro_auroc": None if self.macro_auroc is None else self.macro_auroc.as_dict(),
            "macro_auprc": None if self.macro_auprc is None else self.macro_auprc.as_dict(),
            "auroc": {k: v.as_dict() for k, v in self.auroc.items()},
            "auprc": {k: v.as_dict() for k, v in self.auprc.items()},
            "edema": {k: v.as_dict() for k, v in self.edema.items()},
        }


def label_status(y_true: np.ndarray) -> str:
    """``"ok"`` when the binary vector has both classes, else which class is missing."""
    y = np.asarray(y_true)
    if y.size == 0:
        return NO_SAMPLES
    n_pos = int((y > 0.5).sum())
    if n_pos == 0:
        return NO_POSITIVES
    if n_pos == y.size:
        return NO_NEGATIVES
    return OK


def patient_bootstrap_weights(groups: Sequence, n_draws: int, seed: int = 0) -> np.ndarray:
    """Sample weights of ``n_draws`` patient-level bootstrap draws.

    Args:
        groups: N patient ids (any hashable values), one per sample.
        n_draws: B, the number of bootstrap draws.
        seed: random seed; the same seed gives the same draws.

    Returns:
        B x N int64: how many times the patient of each sample was drawn (P patients drawn with replacement,
        P = number of distinct ids), so each row sums over patients to P.
    """
    _, patient_index = np.unique(np.asarray(groups), return_inverse=True)
    n_patients = int(patient_index.max()) + 1 if patient_index.size else 0
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_patients, np.full(n_patients, 1.0 / max(n_patients, 1)), size=n_draws)
    return counts[:, patient_index.ravel()].astype(np.int64)


def _tie_groups(scores: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``scores`` and the start index of each run of equal scores in that order."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    return order, starts


def weighted_auroc(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of each weight row: the weighted Mann-Whitney statistic, ties counted one half.

    Args:
        y_true: N binary labels (0/1).
        y_score: N scores (higher = more likely positive).
        weights: B x N non-negative sample weights (one bootstrap draw per row).

    Returns:
        B AUROCs; NaN where a row has zero positive or zero negative weight (callers drop those draws).
    """
    y = np.asarray(y_true, dtype=np.float64) > 0.5
    order, starts = _tie_groups(np.asarray(y_score, dtype=np.float64), descending=False)
    w = np.asarray(weights, dtype=np.float64)[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)  # B x G positive weight per tie group
    neg = np.add.reduceat(w * ~y[order], starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(1) / total
    return np.where(total > 0, auc, np.nan)


def weighted_average_precision(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of each weight row, the step-wise sum scikit-learn's ``average_precision_score`` uses.

    Args, shapes and NaN rule as :func:`weighted_auroc` (NaN where a row has no positive weight).
    """
    y = np.asarray(y_true, dtype=np.float64) > 0.5
    order, starts = _tie_groups(np.asarray(y_score, dtype=np.float64), descending=True)
    w = np.asarray(weights, dtype=np.float64)[:, order]
    tp = np.cumsum(np.add.reduceat(w * y[order], starts, axis=1), axis=1)  # B x G at each threshold
    fp = np.cumsum(np.add.reduceat(w * ~y[order], starts, axis=1), axis=1)
    total_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / total_pos
    recall_step = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], axis=1), axis=1)
    ap = (recall_step * precision).sum(1)
    return np.where(total_pos[:, 0] > 0, ap, np.nan)


def _draws(metric, y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [metric(y, s, weights[i : i + DRAW_CHUNK]) for i in range(0, len(weights), DRAW_CHUNK)]
        or [np.empty(0)]
    )


def _percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None, int]:
    valid = draws[np.isfinite(draws)]
    if valid.size == 0:
        return None, None, 0
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(valid, [tail, 100 - tail])
    return float(low), float(high), int(valid.size)


def _estimate(value: float, draws: np.ndarray, n_pos: int, n_neg: int) -> Estimate:
    low, high, n_draws = _percentile_ci(draws)
    return Estimate(value, low, high, OK, n_pos, n_neg, n_draws)


def binary_estimates(
    y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray | None
) -> tuple[Estimate, Estimate, np.ndarray, np.ndarray]:
    """AUROC and AUPRC of one binary task with bootstrap CIs.

    Args:
        y_true: N binary labels; y_score: N scores; weights: B x N bootstrap weights or None (no CI).

    Returns:
        (auroc, auprc, auroc draws B, auprc draws B); the draws are NaN-filled when the task is undefined.
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    status = label_status(y)
    n_pos = int((y > 0.5).sum())
    n_neg = int(y.size - n_pos)
    n_b = 0 if weights is None else len(weights)
    if status != OK:
        empty = Estimate(None, None, None, status, n_pos, n_neg)
        nan = np.full(n_b, np.nan)
        return empty, Estimate(**asdict(empty)), nan, nan
    auroc = float(roc_auc_score(y, s))
    auprc = float(average_precision_score(y, s))
    if weights is None:
        return (
            Estimate(auroc, None, None, OK, n_pos, n_neg),
            Estimate(auprc, None, None, OK, n_pos, n_neg),
            np.empty(0),
            np.empty(0),
        )
    auroc_draws = _draws(weighted_auroc, y, s, weights)
    auprc_draws = _draws(weighted_average_precision, y, s, weights)
    # AUPRC draws without negatives are degenerate (AP = 1): drop them like the AUROC ones
    auprc_draws = np.where(np.isfinite(auroc_draws), auprc_draws, np.nan)
    return (
        _estimate(auroc, auroc_draws, n_pos, n_neg),
        _estimate(auprc, auprc_draws, n_pos, n_neg),
        auroc_draws,
        auprc_draws,
    )


def _macro(values: list[float], draws: list[np.ndarray], n_pos: int, n_neg: int) -> Estimate:
    if not values:
        return Estimate(None, None, None, "no label with positives and negatives", n_pos, n_neg)
    per_draw = np.empty(0)
    if draws and draws[0].size:
        with warnings.catch_warnings():  # a draw where no label is defined becomes NaN and is dropped
            warnings.simplefilter("ignore", RuntimeWarning)
            per_draw = np.nanmean(np.stack(draws), axis=0)  # a label undefined in a draw is left out of it
    return _estimate(float(np.mean(values)), per_draw, n_pos, n_neg)


def finding_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    label_names: Sequence[str],
    label_mask: np.ndarray | None = None,
    groups: Sequence | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> FindingMetrics:
    """AUROC and AUPRC per label and macro, with patient-level bootstrap 95% CIs.

    Args:
        y_true: N x L binary labels (after the uncertainty policy).
        y_score: N x L scores (probabilities or logits; AUROC/AUPRC only use their order).
        label_names: the L label names.
        label_mask: N x L, 1 where the entry counts (U-Ignore / blank masking); None = all count.
        groups: N patient ids for the bootstrap; None = every sample is its own patient.
        n_bootstrap: B draws; 0 = point estimates only.
        seed: bootstrap seed. The same draws (patients) are used for every label, so the macro CI is coherent.

    Returns:
        :class:`FindingMetrics`; macro averages use the labels with status ``"ok"``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(label_names):
        raise ValueError(
            f"y_true {y_true.shape} and y_score {y_score.shape} must both be N x {len(label_names)}"
        )
    mask = np.ones_like(y_true, dtype=bool) if label_mask is None else np.asarray(label_mask) > 0.5
    groups_arr = np.arange(len(y_true)) if groups is None else np.asarray(groups)
    weights = patient_bootstrap_weights(groups_arr, n_bootstrap, seed) if n_bootstrap > 0 else None
    result = FindingMetrics(
        n_samples=len(y_true), n_patients=len(np.unique(groups_arr)), n_bootstrap=n_bootstrap
    )
    auroc_values, auprc_values, auroc_draws, auprc_draws = [], [], [], []
    for j, name in enumerate(label_names):
        keep = mask[:, j]
        w = None if weights is None else weights[:, keep]
        auroc, auprc, a_draws, p_draws = binary_estimates(y_true[keep, j], y_score[keep, j], w)
        result.auroc[name], result.auprc[name] = auroc, auprc
        if auroc.status == OK:
            auroc_values.append(auroc.value)
            auprc_values.append(auprc.value)
            auroc_draws.append(a_draws)
            auprc_draws.append(p_draws)
    n_pos = int(((y_true > 0.5) & mask).sum())
    n_neg = int(((y_true <= 0.5) & mask).sum())
    result.macro_auroc = _macro(auroc_values, auroc_draws, n_pos, n_neg)
    result.macro_auprc = _macro(auprc_values, auprc_draws, n_pos, n_neg)
    return result


def edema_ordinal_scores(edema_scores: np.ndarray) -> np.ndarray:
    """Turn edema outputs into one score per ordinal task.

    Args:
        edema_scores: N x 4 class probabilities (or logits, softmaxed here) for severity 0..3, or N expected
            severities / single ordinal scores.

    Returns:
        N x 3: the score for severity >= 1, >= 2, >= 3 (for N x 4 input, the summed upper-class probabilities;
        for N input, the same score repeated, since one ordinal score ranks all three tasks).
    """
    s = np.asarray(edema_scores, dtype=np.float64)
    if s.ndim == 1:
        return np.repeat(s[:, None], 3, axis=1)
    if s.ndim != 2 or s.shape[1] != 4:
        raise ValueError(f"edema scores must be N or N x 4, got {s.shape}")
    if not np.allclose(s.sum(1), 1.0, atol=1e-4) or (s < 0).any():
        e = np.exp(s - s.max(1, keepdims=True))
        s = e / e.sum(1, keepdims=True)
    upper = np.cumsum(s[:, ::-1], axis=1)[:, ::-1]  # P(sev >= k) for k = 0..3
    return upper[:, 1:]


def edema_ordinal_aucs(
    severity: np.ndarray,
    edema_scores: np.ndarray,
    groups: Sequence | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """The ordinal edema AUROCs 0v123, 01v23 and 012v3 with patient-level bootstrap CIs.

    Args:
        severity: N ints in 0..3, -1 (or NaN) where absent; absent samples are left out.
        edema_scores: N x 4 class probabilities/logits or N ordinal scores (see :func:`edema_ordinal_scores`).
        groups, n_bootstrap, seed: as in :func:`finding_metrics`.

    Returns:
        ``{"0v123": Estimate, "01v23": Estimate, "012v3": Estimate}``.
    """
    sev = np.asarray(severity, dtype=np.float64)
    present = np.isfinite(sev) & (sev >= 0)
    scores = edema_ordinal_scores(edema_scores)[present]
    sev = sev[present]
    groups_arr = np.arange(len(present)) if groups is None else np.asarray(groups)
    groups_arr = groups_arr[present]
    weights = patient_bootstrap_weights(groups_arr, n_bootstrap, seed) if n_bootstrap > 0 else None
    out = {}
    for k, (name, threshold) in enumerate(EDEMA_ORDINAL_TASKS.items()):
        out[name] = binary_estimates((sev >= threshold).astype(np.float64), scores[:, k], weights)[0]
    return out
