"""Sampling the finding list of one synthetic study: which findings, where (side and zone), how severe, hedged or not.

The finding list is the single source of truth of a demo study: the phantom draws it, the report describes
it and the CheXpert CSV labels it. Sides are the PATIENT's sides, as in a radiology report: on a frontal
(PA/AP) image the patient's right lung is on the left of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radmi.data.labels import CHEXPERT_LABELS

# CheXpert names of the findings the phantom can draw (all but Pneumonia, Pleural Other and Fracture).
CARDIOMEGALY = "Cardiomegaly"
EFFUSION = "Pleural Effusion"
PNEUMOTHORAX = "Pneumothorax"
CONSOLIDATION = "Consolidation"
LUNG_OPACITY = "Lung Opacity"
ATELECTASIS = "Atelectasis"
LUNG_LESION = "Lung Lesion"
EDEMA = "Edema"
SUPPORT_DEVICES = "Support Devices"
ENLARGED_CM = "Enlarged Cardiomediastinum"
NO_FINDING = "No Finding"

DRAWN_LABELS: tuple[str, ...] = (
    CARDIOMEGALY,
    EFFUSION,
    PNEUMOTHORAX,
    CONSOLIDATION,
    LUNG_OPACITY,
    ATELECTASIS,
    LUNG_LESION,
    EDEMA,
    SUPPORT_DEVICES,
    ENLARGED_CM,
)

SIDES = ("right", "left")
ZONES = ("upper", "mid", "lower")
SEVERITY_WORDS = {1: "mild", 2: "moderate", 3: "severe"}
SIZE_WORDS = {1: "small", 2: "moderate", 3: "large"}
DEVICE_KINDS = ("endotracheal tube", "central line", "pacemaker")

# Probability that a study has an abnormality at all, then each pathology's probability given an abnormal
# study. With P(abnormal) = 0.68 the marginal prevalences land between about 10% and 30%.
P_ABNORMAL = 0.68
P_FINDING_GIVEN_ABNORMAL = {
    CARDIOMEGALY: 0.38,
    EFFUSION: 0.38,
    PNEUMOTHORAX: 0.2,
    CONSOLIDATION: 0.2,
    LUNG_OPACITY: 0.25,
    ATELECTASIS: 0.3,
    LUNG_LESION: 0.16,
    EDEMA: 0.25,
    ENLARGED_CM: 0.18,
}
# Support devices are independent of the pathologies (CheXpert's "No Finding" ignores them).
P_SUPPORT_DEVICES = 0.25
# Findings that are sometimes hedged in the report ("may represent atelectasis") -> -1 in the CheXpert CSV.
P_HEDGED = {ATELECTASIS: 0.25, CONSOLIDATION: 0.2, LUNG_OPACITY: 0.15, EDEMA: 0.15, EFFUSION: 0.1}


@dataclass(frozen=True)
class Finding:
    """One drawn finding.

    Attributes:
        label: the CheXpert label name (one of ``DRAWN_LABELS``).
        side: ``"right"``, ``"left"``, ``"bilateral"`` or ``"midline"`` (patient sides).
        zone: ``"upper"``, ``"mid"`` or ``"lower"``.
        severity: 1 (mild/small) to 3 (severe/large); the edema grade for Edema.
        hedged: the report hedges it; the label is -1 (uncertain).
        device: for Support Devices, one of ``DEVICE_KINDS``; else ``""``.
    """

    label: str
    side: str
    zone: str
    severity: int = 1
    hedged: bool = False
    device: str = ""


@dataclass
class StudyFindings:
    """The finding list of one study plus the negations the report will state.

    Attributes:
        findings: the drawn findings, in report order (already shuffled).
        negated: CheXpert labels the report explicitly negates ("No pleural effusion."), in report order.
    """

    findings: list[Finding] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)

    @property
    def edema_severity(self) -> int:
        """The drawn edema grade 0-3 (0 when no edema is drawn)."""
        return max((f.severity for f in self.findings if f.label == EDEMA), default=0)

    @property
    def is_normal(self) -> bool:
        """True when no pathology (anything but Support Devices) is present or hedged."""
        return all(f.label == SUPPORT_DEVICES for f in self.findings)

    def labels(self) -> dict[str, float]:
        """The CheXpert row: 1.0 present, -1.0 hedged, 0.0 negated, NaN not mentioned, for all 14 labels."""
        row = {name: float("nan") for name in CHEXPERT_LABELS}
        for name in self.negated:
            row[name] = 0.0
        for finding in self.findings:
            value = -1.0 if finding.hedged else 1.0
            # a positive mention wins over an uncertain one, as in the CheXpert labeler's aggregation
            if np.isnan(row[finding.label]) or row[finding.label] != 1.0:
                row[finding.label] = value
        if self.is_normal:
            row[NO_FINDING] = 1.0
        return row


def _sample_one(label: str, rng: np.random.Generator) -> Finding:
    hedged = bool(rng.random() < P_HEDGED.get(label, 0.0))
    if label in (CARDIOMEGALY, ENLARGED_CM):
        zone = "mid" if label == CARDIOMEGALY else "upper"
        return Finding(label, "midline", zone, int(rng.integers(1, 4)), hedged)
    if label == EFFUSION:
        side = str(rng.choice(["right", "left", "bilateral"], p=[0.4, 0.35, 0.25]))
        return Finding(label, side, "lower", int(rng.integers(1, 4)), hedged)
    if label == PNEUMOTHORAX:
        return Finding(label, str(rng.choice(SIDES)), "upper", int(rng.integers(1, 4)), hedged)
    if label == ATELECTASIS:
        side = str(rng.choice(["right", "left", "bilateral"], p=[0.4, 0.35, 0.25]))
        return Finding(label, side, "lower", int(rng.integers(1, 3)), hedged)
    if label == EDEMA:
        return Finding(label, "bilateral", "mid", int(rng.integers(1, 4)), hedged)
    # focal findings: consolidation, lung opacity, lung lesion in any zone of one lung
    zone_p = [0.2, 0.3, 0.5] if label != LUNG_LESION else [0.4, 0.35, 0.25]
    return Finding(
        label, str(rng.choice(SIDES)), str(rng.choice(ZONES, p=zone_p)), int(rng.integers(1, 4)), hedged
    )


def _sample_devices(rng: np.random.Generator) -> list[Finding]:
    count = int(rng.choice([1, 2], p=[0.75, 0.25]))
    kinds = rng.choice(len(DEVICE_KINDS), size=count, replace=False)
    devices = []
    for k in sorted(kinds):
        kind = DEVICE_KINDS[k]
        if kind == "endotracheal tube":
            devices.append(Finding(SUPPORT_DEVICES, "midline", "upper", 1, device=kind))
        elif kind == "central line":
            devices.append(Finding(SUPPORT_DEVICES, str(rng.choice(SIDES)), "upper", 1, device=kind))
        else:
            devices.append(Finding(SUPPORT_DEVICES, "left", "upper", 1, device=kind))
    return devices


# Negations the report may state for absent findings, with their probability of being stated.
P_NEGATION = {
    EFFUSION: 0.8,
    PNEUMOTHORAX: 0.8,
    CONSOLIDATION: 0.6,
    EDEMA: 0.5,
    CARDIOMEGALY: 0.6,
    ENLARGED_CM: 0.3,
    LUNG_LESION: 0.15,
    "Pneumonia": 0.2,
    "Fracture": 0.15,
}


def sample_findings(rng: np.random.Generator) -> StudyFindings:
    """Draw the finding list of one study.

    Args:
        rng: the study's random generator (the only source of randomness, for reproducibility).

    Returns:
        A ``StudyFindings`` with the findings shuffled into report order and the negations to state.
    """
    findings: list[Finding] = []
    if rng.random() < P_ABNORMAL:
        while not findings:  # an abnormal study has at least one pathology
            for label, p in P_FINDING_GIVEN_ABNORMAL.items():
                if rng.random() < p:
                    findings.append(_sample_one(label, rng))
    if rng.random() < P_SUPPORT_DEVICES:
        findings.extend(_sample_devices(rng))
    order = rng.permutation(len(findings))
    findings = [findings[i] for i in order]
    present = {f.label for f in findings}
    negated = [name for name, p in P_NEGATION.items() if name not in present and rng.random() < p]
    negated = [negated[i] for i in rng.permutation(len(negated))]
    return StudyFindings(findings, negated)


def nodule_diameter_cm(severity: int) -> float:
    """Diameter in cm of a Lung Lesion nodule of the given severity (1-3); the report quotes it."""
    return {1: 1.2, 2: 1.8, 3: 2.5}[severity]
