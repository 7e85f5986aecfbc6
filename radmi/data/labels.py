"""CheXpert-style finding labels: the 14 names, uncertainty and blank policies, pulmonary edema severity.

Raw values (as in ``mimic-cxr-2.0.0-chexpert.csv.gz`` and in a radmi manifest) are ``1.0`` positive,
``0.0`` negative, ``-1.0`` uncertain and blank (NaN) not mentioned. A policy turns them into training targets
plus a mask saying which entries count in the loss and the metrics. Everything here is vectorized over numpy
arrays of any leading shape (one row ``14`` or a table ``N x 14``).
"""

from __future__ import annotations

import numpy as np

#: The 14 labels, in the column order of the MIMIC-CXR CheXpert/NegBio CSVs.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NUM_LABELS = len(CHEXPERT_LABELS)

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
#: ``ignore`` masks uncertain entries out (U-Ignore); ``ones``/``zeros`` map them to 1/0 (U-Ones, U-Zeros).
UNCERTAINTY_POLICIES = ("ignore", "ones", "zeros")
#: ``negative`` treats a blank (not mentioned) as 0; ``ignore`` masks it out.
BLANK_POLICIES = ("negative", "ignore")

#: Pulmonary edema severity: 0 none, 1 vascular congestion, 2 interstitial edema, 3 alveolar edema.
EDEMA_SEVERITY_NAMES: tuple[str, ...] = (
    "none",
    "vascular congestion",
    "interstitial edema",
    "alveolar edema",
)
#: Ordinal binary tasks evaluated for edema severity, in order: name -> threshold (target ``severity >= threshold``).
#: The names (0 vs 123, 01 vs 23, 012 vs 3) are the keys of radmi's edema metrics and benchmark tables.
EDEMA_ORDINAL_TASKS: dict[str, int] = {"0v123": 1, "01v23": 2, "012v3": 3}
#: Value used for "no edema severity" once converted to integers.
EDEMA_MISSING = -1


def check_policies(uncertain: str, blank: str) -> None:
    """Raise ``ValueError`` for an unknown policy name."""
    if uncertain not in UNCERTAINTY_POLICIES:
        raise ValueError(f"uncertainty policy must be one of {UNCERTAINTY_POLICIES}, got {uncertain!r}")
    if blank not in BLANK_POLICIES:
        raise ValueError(f"blank policy must be one of {BLANK_POLICIES}, got {blank!r}")


def invalid_label_values(values: np.ndarray) -> np.ndarray:
    """Boolean array, True where a raw value is not 1, 0, -1 or NaN (same shape as ``values``)."""
    values = np.asarray(values, dtype=np.float64)
    return ~(np.isnan(values) | np.isin(values, (POSITIVE, NEGATIVE, UNCERTAIN)))


def apply_label_policy(
    values: np.ndarray, uncertain: str = "ignore", blank: str = "negative"
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and mask from raw label values.

    Args:
        values: ``... x 14`` raw values (1, 0, -1 or NaN); any float-convertible array.
        uncertain: ``ignore`` (target 0, mask 0), ``ones`` (target 1) or ``zeros`` (target 0) for -1.
        blank: ``negative`` (target 0, mask 1) or ``ignore`` (target 0, mask 0) for NaN.

    Returns:
        ``(labels, mask)``, both float32 with the shape of ``values``; ``mask`` is 1 where the entry counts.

    Raises:
        ValueError: for an unknown policy or a value outside {1, 0, -1, NaN}.
    """
    check_policies(uncertain, blank)
    values = np.asarray(values, dtype=np.float64)
    bad = invalid_label_values(values)
    if bad.any():
        raise ValueError(f"label values must be 1, 0, -1 or blank, got {float(values[bad][0])}")
    is_blank = np.isnan(values)
    is_uncertain = values == UNCERTAIN
    labels = np.where(values == POSITIVE, 1.0, 0.0)
    mask = np.ones_like(values)
    if uncertain == "ones":
        labels[is_uncertain] = 1.0
    elif uncertain == "ignore":
        mask[is_uncertain] = 0.0
    if blank == "ignore":
        mask[is_blank] = 0.0
    return labels.astype(np.float32), mask.astype(np.float32)


def invalid_edema_values(values: np.ndarray) -> np.ndarray:
    """Boolean array, True where an edema severity is not 0, 1, 2, 3 or NaN."""
    values = np.asarray(values, dtype=np.float64)
    return ~(np.isnan(values) | np.isin(values, (0.0, 1.0, 2.0, 3.0)))


def edema_severity_to_int(values: np.ndarray) -> np.ndarray:
    """int64 severities 0..3, ``EDEMA_MISSING`` (-1) where blank. Raises ``ValueError`` on other values."""
    values = np.asarray(values, dtype=np.float64)
    bad = invalid_edema_values(values)
    if bad.any():
        raise ValueError(f"edema severity must be 0, 1, 2, 3 or blank, got {float(values[bad][0])}")
    return np.where(np.isnan(values), EDEMA_MISSING, values).astype(np.int64)


def edema_ordinal_targets(severity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary targets of the three ordinal edema tasks (0 vs 123, 01 vs 23, 012 vs 3).

    Args:
        severity: ``N`` int severities 0..3, -1 where missing.

    Returns:
        ``(targets, mask)``, both ``N x 3`` float32; ``targets[:, k] = severity >= k + 1`` and ``mask`` is 0
        for missing severities.
    """
    severity = np.asarray(severity, dtype=np.int64)
    thresholds = np.fromiter(EDEMA_ORDINAL_TASKS.values(), dtype=np.int64)
    targets = (severity[:, None] >= thresholds[None, :]).astype(np.float32)
    mask = np.repeat((severity != EDEMA_MISSING)[:, None], len(thresholds), axis=1).astype(np.float32)
    return targets * mask, mask
