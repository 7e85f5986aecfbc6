"""Metrics: equality to scikit-learn, bootstrap behaviour, undefined labels, ordinal edema AUCs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from radmi.eval.metrics import (
    NO_NEGATIVES,
    NO_POSITIVES,
    edema_ordinal_aucs,
    edema_ordinal_scores,
    finding_metrics,
    patient_bootstrap_weights,
    weighted_auroc,
    weighted_average_precision,
)


def _data(n: int, n_labels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.4).astype(float)
    # scores informative but noisy, rounded so that ties occur
    s = np.round(y * 0.8 + rng.normal(0, 0.6, size=(n, n_labels)), 1)
    return y, s


def test_point_estimates_equal_sklearn():
    y, s = _data(200)
    mask = np.ones_like(y)
    mask[:30, 1] = 0  # U-Ignore entries
    m = finding_metrics(y, s, ["a", "b", "c"], label_mask=mask, n_bootstrap=0)
    for j, name in enumerate("abc"):
        keep = mask[:, j] > 0
        assert m.auroc[name].value == pytest.approx(roc_auc_score(y[keep, j], s[keep, j]), abs=1e-12)
        assert m.auprc[name].value == pytest.approx(
            average_precision_score(y[keep, j], s[keep, j]), abs=1e-12
        )
        assert m.auroc[name].n_positive == int(y[keep, j].sum())
    expected_macro = np.mean([roc_auc_score(y[mask[:, j] > 0, j], s[mask[:, j] > 0, j]) for j in range(3)])
    assert m.macro_auroc.value == pytest.approx(expected_macro, abs=1e-12)


def test_vectorized_bootstrap_equals_sklearn_with_weights():
    y, s = _data(150, n_labels=1, seed=3)
    groups = np.repeat(np.arange(50), 3)  # 3 images per patient
    weights = patient_bootstrap_weights(groups, n_draws=20, seed=1)
    aurocs = weighted_auroc(y[:, 0], s[:, 0], weights)
    aps = weighted_average_precision(y[:, 0], s[:, 0], weights)
    for b in range(20):
        w = weights[b]
        assert aurocs[b] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0], sample_weight=w), abs=1e-12)
        assert aps[b] == pytest.approx(average_precision_score(y[:, 0], s[:, 0], sample_weight=w), abs=1e-12)


def test_bootstrap_moves_patients_together():
    groups = np.array([7, 7, 7, 2, 2, 9])
    weights = patient_bootstrap_weights(groups, n_draws=50, seed=0)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 3] == weights[:, 4]).all()
    # 3 patients drawn with replacement: the per-patient counts sum to 3
    assert (weights[:, [0, 3, 5]].sum(1) == 3).all()
    assert (patient_bootstrap_weights(groups, 50, seed=0) == weights).all()


def test_ci_contains_point_and_narrows_with_n():
    widths = []
    for n in (100, 1600):
        y, s = _data(n, n_labels=2, seed=5)
        m = finding_metrics(y, s, ["a", "b"], groups=np.arange(n) // 2, n_bootstrap=500, seed=0)
        for est in (*m.auroc.values(), *m.auprc.values(), m.macro_auroc):
            assert est.ci_low <= est.value <= est.ci_high
        widths.append(m.auroc["a"].ci_high - m.auroc["a"].ci_low)
    # CI width scales ~ 1/sqrt(n): 16x the samples should give roughly a quarter of the width
    assert widths[1] < 0.5 * widths[0]


def test_undefined_labels_are_reported_not_nan():
    y, s = _data(40)
    y[:, 1] = 0.0
    y[:, 2] = 1.0
    m = finding_metrics(y, s, ["a", "b", "c"], n_bootstrap=50)
    assert m.auroc["b"].status == NO_POSITIVES and m.auroc["b"].value is None
    assert m.auroc["c"].status == NO_NEGATIVES and m.auprc["c"].value is None
    # the macro is the one defined label, and nothing in the JSON is NaN
    assert m.macro_auroc.value == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    text = json.dumps(m.as_dict(), allow_nan=False)
    assert "no positives" in text


def test_ordinal_edema_aucs_by_hand():
    severity = np.array([0, 1, 2, 3, -1, 0])
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.2, 0.5, 0.2, 0.1],
            [0.5, 0.1, 0.3, 0.1],
            [0.1, 0.1, 0.2, 0.6],
            [0.0, 0.0, 0.0, 1.0],  # absent severity: ignored
            [0.4, 0.4, 0.1, 0.1],
        ]
    )
    out = edema_ordinal_aucs(severity, probs, n_bootstrap=0)
    # 0v123: scores P(sev>=1): neg {0.3, 0.6}, pos {0.8, 0.5, 0.9}: pairs won 2+1+2 = 5 of 6
    assert out["0v123"].value == pytest.approx(5 / 6)
    # 01v23: P(sev>=2): neg {0.2, 0.3, 0.2}, pos {0.4, 0.8}: all 6 pairs won
    assert out["01v23"].value == pytest.approx(1.0)
    # 012v3: P(sev=3): neg {0.1, 0.1, 0.1, 0.1}, pos {0.6}
    assert out["012v3"].value == pytest.approx(1.0)
    assert edema_ordinal_scores(probs).shape == (6, 3)


def test_ordinal_edema_missing_class_reported():
    out = edema_ordinal_aucs(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4]), n_bootstrap=10)
    assert out["012v3"].status == NO_POSITIVES
    assert out["0v123"].value == 1.0 and not math.isnan(out["0v123"].ci_low)


def test_report_files(tmp_path):
    import pandas as pd
    from PIL import Image

    from radmi.eval.plots import plot_roc_curves
    from radmi.eval.report import write_report

    y, s = _data(60)
    y[:, 2] = 0.0
    m = finding_metrics(y, s, ["a", "b", "c"], n_bootstrap=30)
    m.edema = edema_ordinal_aucs(np.array([0, 1, 2, 3] * 15), np.tile(np.eye(4), (15, 1)), n_bootstrap=0)
    paths = write_report(m, tmp_path, extra={"split": "test"})
    table = pd.read_csv(paths["csv"])
    # macro x2, 3 labels x2, 3 edema tasks
    assert len(table) == 2 + 6 + 3
    row = table[(table["name"] == "c") & (table["metric"] == "auroc")].iloc[0]
    assert row["status"] == NO_POSITIVES and pd.isna(row["value"])
    text = paths["markdown"].read_text()
    assert "| c | 0 | 60 | no positives | no positives |" in text and "0v123" in text
    assert json.loads(paths["json"].read_text())["run"]["split"] == "test"
    png = plot_roc_curves(y, s, ["a", "b", "c"], tmp_path / "roc.png", columns=2)
    with Image.open(png) as image:
        assert image.size == (round(2 * 2.6 * 110), round(2 * 2.7 * 110))
