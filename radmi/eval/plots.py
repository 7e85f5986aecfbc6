"""ROC curves, one panel per finding, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from radmi.eval.metrics import OK, label_status  # noqa: E402


def plot_roc_curves(
    y_true: np.ndarray,
    y_score: np.ndarray,
    label_names: Sequence[str],
    path: str | Path,
    label_mask: np.ndarray | None = None,
    columns: int = 5,
    title: str | None = None,
) -> Path:
    """Save a grid of ROC curves (scikit-learn ``roc_curve``), one panel per label, to a PNG.

    Args:
        y_true: N x L binary labels; y_score: N x L scores; label_mask: N x L (1 = counts) or None.
        label_names: the L panel titles.
        path: output PNG.
        columns: panels per row.
        title: figure title.

    A panel whose label has no positives or no negatives shows that status instead of a curve.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    mask = np.ones_like(y_true, dtype=bool) if label_mask is None else np.asarray(label_mask) > 0.5
    n = len(label_names)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        keep = mask[:, j]
        y, s = y_true[keep, j], y_score[keep, j]
        status = label_status(y)
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        if status == OK:
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, lw=1.5)
            ax.set_title(f"{label_names[j]}\nAUROC {roc_auc_score(y, s):.3f} (n+={int(y.sum())})", fontsize=8)
        else:
            ax.text(0.5, 0.5, status, ha="center", va="center", fontsize=9, color="0.3")
            ax.set_title(label_names[j], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        if j % cols == 0:
            ax.set_ylabel("sensitivity", fontsize=7)
        if j >= n - cols:
            ax.set_xlabel("1 - specificity", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
