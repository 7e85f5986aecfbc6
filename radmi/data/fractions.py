"""Label-fraction subsampling for the few-labels experiments (1%, 10%, 100% of the training labels).

Patients, not images, are drawn: every image of a kept patient is kept and no other, so a patient's studies
never straddle the labelled and unlabelled parts. The draw is reproducible from a seed and does not depend on
the row order of the manifest. It is stratified two ways:

1. every finding that has a positive patient in the full training set keeps at least one positive patient
   (rarest finding first), so no label loses all its positives at 1%;
2. the remaining patients are drawn per stratum (a patient's stratum is its rarest positive finding, or
   "none"), in proportion to the stratum sizes (largest-remainder rounding).

At very small fractions step 1 can keep more patients than ``fraction`` asks for; the result then has the
minimum number of patients that keeps every finding's positives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from radmi.errors import ManifestError

logger = logging.getLogger(__name__)

NO_POSITIVE_STRATUM = "none"


def _patient_positives(frame: pd.DataFrame, label_names: Sequence[str]) -> pd.DataFrame:
    """Patients x labels boolean table: True where any image of the patient is positive (label == 1)."""
    missing = [c for c in ("subject_id", *label_names) if c not in frame.columns]
    if missing:
        raise ManifestError(f"cannot subsample labels: columns missing {missing}")
    values = frame[list(label_names)].apply(pd.to_numeric, errors="coerce")
    positive = (values == 1.0).groupby(frame["subject_id"].astype(str).to_numpy()).any()
    return positive.sort_index()  # sorted ids: independent of the manifest's row order


def _strata(positive: pd.DataFrame) -> pd.Series:
    """Each patient's rarest positive finding (ties broken by label order), or ``"none"``."""
    counts = positive.sum(axis=0)
    rarest_first = sorted(
        positive.columns, key=lambda name: (counts[name], list(positive.columns).index(name))
    )
    stratum = pd.Series(NO_POSITIVE_STRATUM, index=positive.index, dtype=object)
    for name in reversed(rarest_first):  # the last assignment wins: the rarest label
        stratum[positive[name]] = name
    return stratum


def _largest_remainder(sizes: pd.Series, total: int) -> pd.Series:
    """Split ``total`` over strata in proportion to ``sizes`` (integers summing to ``total``, each <= size)."""
    if total <= 0 or sizes.sum() == 0:
        return sizes * 0
    exact = sizes / sizes.sum() * total
    quota = np.floor(exact).astype(int)
    remainder = (exact - quota).sort_values(ascending=False, kind="stable")
    for name in remainder.index[: total - int(quota.sum())]:
        quota[name] += 1
    return np.minimum(quota, sizes)


def select_patients(
    frame: pd.DataFrame,
    fraction: float,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
) -> list[str]:
    """The subject_ids (as strings, sorted) kept at ``fraction`` of the patients.

    Args:
        frame: manifest rows to draw from (typically the ``train`` split), with ``subject_id`` and the labels.
        fraction: in (0, 1]; 1 keeps every patient.
        seed: the same seed and rows give the same patients.
        label_names: label columns used for stratification; default ``CHEXPERT_LABELS``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if label_names is None:
        from radmi.data.labels import CHEXPERT_LABELS

        label_names = CHEXPERT_LABELS
    positive = _patient_positives(frame, label_names)
    patients = positive.index.to_numpy()
    if fraction >= 1.0 or len(patients) == 0:
        return sorted(patients.tolist())
    rng = np.random.default_rng(seed)
    n_keep = max(1, int(round(fraction * len(patients))))

    chosen: set[str] = set()
    counts = positive.sum(axis=0)
    for name in sorted(label_names, key=lambda n: (counts[n], list(label_names).index(n))):
        holders = positive.index[positive[name]]
        if len(holders) and not chosen.intersection(holders):
            chosen.add(str(rng.choice(holders.to_numpy())))

    rest = positive.loc[~positive.index.isin(list(chosen))]
    stratum = _strata(rest)
    quotas = _largest_remainder(stratum.value_counts().sort_index(), n_keep - len(chosen))
    for name, quota in quotas.items():
        members = stratum.index[stratum == name].to_numpy()
        chosen.update(str(p) for p in rng.choice(members, size=int(quota), replace=False))
    if len(chosen) > n_keep:
        logger.info(
            "label fraction %.3g: kept %d patients (asked %d) so every finding keeps a positive",
            fraction,
            len(chosen),
            n_keep,
        )
    return sorted(chosen)


def subsample_label_fraction(
    manifest: pd.DataFrame,
    fraction: float,
    seed: int = 0,
    split: str | None = "train",
    label_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Keep ``fraction`` of the patients of one split (all their images); other splits pass unchanged.

    Args:
        manifest: manifest table (``subject_id``, ``split`` and the label columns).
        fraction: in (0, 1].
        seed: random seed of the draw.
        split: the split to subsample (``None``: the whole table).
        label_names: stratification labels; default ``CHEXPERT_LABELS``.

    Returns:
        The kept rows, in their original order and with their original index.
    """
    if split is not None and "split" not in manifest.columns:
        raise ManifestError("cannot subsample labels: the manifest has no 'split' column")
    in_split = (
        np.ones(len(manifest), dtype=bool) if split is None else (manifest["split"] == split).to_numpy()
    )
    kept = set(select_patients(manifest.loc[in_split], fraction, seed, label_names))
    keep = ~in_split | manifest["subject_id"].astype(str).isin(kept).to_numpy()
    return manifest.loc[keep]
