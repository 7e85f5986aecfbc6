"""Writing evaluation results: ``metrics.json`` (everything), ``metrics.csv`` (one row per metric) and
``report.md`` (a table a person reads). Undefined metrics appear with their status, never as NaN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
