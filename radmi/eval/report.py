"""Writing evaluation results: ``metrics.json`` (everything), ``metrics.csv`` (one row per metric) and
``report.md`` (a table a person reads). Undefined metrics appear with their status, never as NaN."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radmi.eval.metrics import Estimate, FindingMetrics

CSV_COLUMNS = ("task", "name", "metric", "value", "ci_low", "ci_high", "status", "n_positive", "n_negative")


def format_estimate(est: Estimate | None, digits: int = 3) -> str:
    """``0.812 (0.771-0.850)``, or the status (``no positives``) when the metric is undefined."""
    if est is None:
        return "-"
    if est.value is None:
        return est.status
    if est.ci_low is None:
        return f"{est.value:.{digits}f}"
    return f"{est.value:.{digits}f} ({est.ci_low:.{digits}f}-{est.ci_high:.{digits}f})"


def metrics_rows(metrics: FindingMetrics) -> list[dict[str, Any]]:
    """One flat row per (task, name, metric), in the order of ``CSV_COLUMNS``."""
    rows = []

    def add(task: str, name: str, metric: str, est: Estimate | None) -> None:
        if est is not None:
            rows.append(
                {
                    "task": task,
                    "name": name,
                    "metric": metric,
                    **{k: getattr(est, k) for k in CSV_COLUMNS[3:]},
                }
            )

    add("findings", "macro", "auroc", metrics.macro_auroc)
    add("findings", "macro", "auprc", metrics.macro_auprc)
    for name in metrics.auroc:
        add("findings", name, "auroc", metrics.auroc[name])
        add("findings", name, "auprc", metrics.auprc[name])
    for name, est in metrics.edema.items():
        add("edema", name, "auroc", est)
    return rows


def markdown_table(metrics: FindingMetrics, title: str = "Finding classification") -> str:
    """The ``report.md`` text: per-finding AUROC and AUPRC with 95% CIs, the macro row, edema ordinal AUCs."""
    lines = [
        f"# {title}",
        "",
        f"{metrics.n_samples} images of {metrics.n_patients} patients; 95% CIs from {metrics.n_bootstrap} "
        "bootstrap draws resampling patients.",
        "",
        "| finding | positives | negatives | AUROC (95% CI) | AUPRC (95% CI) |",
        "|---|---:|---:|---|---|",
    ]
    for name, auroc in metrics.auroc.items():
        lines.append(
            f"| {name} | {auroc.n_positive} | {auroc.n_negative} | {format_estimate(auroc)} | "
            f"{format_estimate(metrics.auprc[name])} |"
        )
    lines.append(
        f"| **macro** | | | **{format_estimate(metrics.macro_auroc)}** | **{format_estimate(metrics.macro_auprc)}** |"
    )
    if metrics.edema:
        lines += [
            "",
            "## Pulmonary edema severity (ordinal AUROC)",
            "",
            "| task | positives | negatives | AUROC (95% CI) |",
            "|---|---:|---:|---|",
        ]
        for name, est in metrics.edema.items():
            lines.append(f"| {name} | {est.n_positive} | {est.n_negative} | {format_estimate(est)} |")
    return "\n".join(lines) + "\n"


def write_report(
    metrics: FindingMetrics, out_dir: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.csv`` and ``report.md`` into ``out_dir``; returns their paths.

    Args:
        metrics: the evaluation result.
        out_dir: created if missing.
        extra: more JSON-serializable facts stored under ``"run"`` in ``metrics.json`` (split, run dir, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "metrics.csv", "markdown": out / "report.md"}
    payload = {"run": extra or {}, **metrics.as_dict()}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    pd.DataFrame(metrics_rows(metrics), columns=list(CSV_COLUMNS)).to_csv(paths["csv"], index=False)
    paths["markdown"].write_text(markdown_table(metrics))
    return paths


def evaluate_predictions(
    arrays: dict[str, np.ndarray],
    out_dir: str | Path,
    label_names: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> FindingMetrics:
    """Metrics, ``metrics.json|csv``, ``report.md`` and ``roc.png`` from collected predictions.

    Args:
        arrays: ``probabilities``/``labels``/``label_mask`` N x L, ``subject_id`` N (patients for the
            bootstrap; -1 everywhere = unknown, then each image is its own patient), optionally
            ``edema_severity`` N and ``edema_probabilities`` N x 4
            (as from ``radmi.engines.classify.PredictionCollector.arrays``).
        out_dir: where the files go.
        label_names: the L names (default ``CHEXPERT_LABELS``).
        n_bootstrap, seed: bootstrap draws and seed.
        extra: facts stored under ``"run"`` in ``metrics.json``.
    """
    from radmi.data.labels import CHEXPERT_LABELS
    from radmi.eval.metrics import edema_ordinal_aucs, finding_metrics
    from radmi.eval.plots import plot_roc_curves

    names = list(CHEXPERT_LABELS if label_names is None else label_names)
    groups = np.asarray(arrays["subject_id"])
    if (groups.astype(str) == "-1").all():
        groups = np.arange(len(groups))
    metrics = finding_metrics(
        arrays["labels"], arrays["probabilities"], names, arrays["label_mask"], groups, n_bootstrap, seed
    )
    if "edema_probabilities" in arrays:
        metrics.edema = edema_ordinal_aucs(
            arrays["edema_severity"], arrays["edema_probabilities"], groups, n_bootstrap, seed
        )
    write_report(metrics, out_dir, extra)
    plot_roc_curves(
        arrays["labels"],
        arrays["probabilities"],
        names,
        Path(out_dir) / "roc.png",
        label_mask=arrays["label_mask"],
    )
    return metrics
