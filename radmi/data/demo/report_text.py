"""MIMIC-CXR-style report text written from a study's finding list.

Every drawn finding gets one FINDINGS sentence naming its side/zone and severity (several phrasings each);
absent findings are often negated; hedged findings use uncertainty phrases. The text has the MIMIC-CXR
shape: FINAL REPORT, EXAMINATION, INDICATION, TECHNIQUE, COMPARISON, FINDINGS, IMPRESSION, ``___``
placeholders and lines wrapped at 79 characters; some reports are IMPRESSION-only, some start with an
addendum, some have a typo in a header. No patient name or ID ever appears (only ``___``).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from radmi.data.demo import findings as F
from radmi.data.reports import report_sentences

WRAP_WIDTH = 79
P_IMPRESSION_ONLY = 0.1
P_ADDENDUM = 0.06
P_HEADER_TYPO = 0.05

_ZONE_PHRASE = {"upper": "upper", "mid": "mid", "lower": "lower"}
_DEGREE = {1: "mildly", 2: "moderately", 3: "severely"}
_EDEMA = {
    1: "pulmonary vascular congestion",
    2: "interstitial pulmonary edema",
    3: "alveolar pulmonary edema",
}
_HEDGES = ("may represent", "could reflect", "possibly")

# Negation sentences, one label each; pairs are sometimes merged ("No pleural effusion or pneumothorax.").
_NEGATIONS = {
    F.EFFUSION: ("No pleural effusion.", "There is no pleural effusion.", "No pleural effusion is seen."),
    F.PNEUMOTHORAX: ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."),
    F.CONSOLIDATION: ("No focal consolidation.", "There is no focal consolidation."),
    F.EDEMA: ("No pulmonary edema.", "There is no pulmonary edema."),
    F.CARDIOMEGALY: ("Heart size is normal.", "The heart is not enlarged.", "No cardiomegaly."),
    F.ENLARGED_CM: ("Mediastinal contours are normal.", "The mediastinum is not widened."),
    F.LUNG_LESION: ("No suspicious pulmonary nodules.", "No lung nodules or masses."),
    "Pneumonia": ("No evidence of pneumonia.", "There is no evidence of pneumonia."),
    "Fracture": ("No displaced rib fracture.", "No acute fracture is seen."),
}
_NEGATION_NOUN = {
    F.EFFUSION: "pleural effusion",
    F.PNEUMOTHORAX: "pneumothorax",
    F.CONSOLIDATION: "focal consolidation",
}

_INDICATIONS = (
    "___ year old {sex} with shortness of breath  // ?effusion",
    "___ year old {sex} with cough and fever  // eval for pneumonia",
    "___ year old {sex} with chest pain  // acute process?",
    "___-year-old {sex} status post line placement  // assess position",
    "History: ___ {sex} with dyspnea",
)
_EXAMS = {"frontal": ("CHEST (PORTABLE AP)", "CHEST (PA)"), "both": ("CHEST (PA AND LAT)",)}
_TECHNIQUES = {
    "frontal": ("Single frontal view of the chest.", "Portable AP chest radiograph."),
    "both": ("Chest PA and lateral.", "PA and lateral views of the chest."),
}
_NORMAL_IMPRESSIONS = ("No acute cardiopulmonary process.", "No acute intrathoracic abnormality.")
_FILLERS = (
    "The lungs are otherwise clear.",
    "Osseous structures are unremarkable.",
    "Lung volumes are normal.",
)


@dataclass
class Report:
    """A generated report.

    Attributes:
        text: the full report file text.
        finding_sentences: per finding (finding-list order), the one sentence that describes it, exactly as
            written (unwrapped) in FINDINGS, or in IMPRESSION for an IMPRESSION-only report.
    """

    text: str
    finding_sentences: list[str]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _side_zone(f: F.Finding) -> str:
    return f"{f.side} {_ZONE_PHRASE[f.zone]}"


def finding_sentence(f: F.Finding, rng: np.random.Generator) -> str:
    """One sentence describing a finding with its location and severity (hedged if ``f.hedged``)."""
    s, side = f.severity, f.side
    size = F.SIZE_WORDS[s]
    if f.label == F.CARDIOMEGALY:
        options = (
            f"The heart is {_DEGREE[s]} enlarged.",
            f"The cardiac silhouette is {_DEGREE[s]} enlarged.",
            f"{F.SEVERITY_WORDS[s]} cardiomegaly.",
        )
    elif f.label == F.ENLARGED_CM:
        options = (
            f"The upper mediastinum is {_DEGREE[s]} widened.",
            f"{F.SEVERITY_WORDS[s]} widening of the superior mediastinum.",
        )
    elif f.label == F.EFFUSION:
        if f.hedged:
            where = "both costophrenic angles" if side == "bilateral" else f"the {side} costophrenic angle"
            return _cap(f"blunting of {where} {_pick(rng, _HEDGES[:2])} a {size} pleural effusion.")
        if side == "bilateral":
            options = (
                f"{size} bilateral pleural effusions at the lung bases.",
                f"{size} bilateral pleural effusions blunt both costophrenic angles.",
            )
        else:
            options = (
                f"There is a {size} {side} pleural effusion layering at the base.",
                f"{size} {side}-sided pleural effusion blunts the costophrenic angle.",
                f"{size} {side} basilar pleural effusion.",
            )
    elif f.label == F.PNEUMOTHORAX:
        options = (
            f"There is a {size} {side} apical pneumothorax.",
            f"A {size} {side} pneumothorax is seen at the apex.",
            f"{size} {side}-sided apical pneumothorax with a visible pleural edge.",
        )
    elif f.label == F.CONSOLIDATION:
        kind = {1: "patchy", 2: "focal", 3: "dense"}[s]
        if f.hedged:
            options = (
                f"{kind} consolidation in the {_side_zone(f)} lung cannot be excluded.",
                f"{side} {_ZONE_PHRASE[f.zone]} lung density may represent {kind} consolidation.",
            )
        else:
            options = (
                f"There is {kind} consolidation in the {_side_zone(f)} lung.",
                f"{kind} {_side_zone(f)} lung consolidation.",
                f"{kind} consolidation is present in the {_side_zone(f)} lung zone.",
            )
    elif f.label == F.LUNG_OPACITY:
        kind = {1: "faint", 2: "moderate", 3: "extensive"}[s]
        if f.hedged:
            options = (f"Possible {kind} opacity in the {_side_zone(f)} lung.",)
        else:
            options = (
                f"There is {kind} patchy opacity in the {_side_zone(f)} lung.",
                f"{kind} hazy opacity projects over the {_side_zone(f)} lung zone.",
            )
    elif f.label == F.ATELECTASIS:
        degree = F.SEVERITY_WORDS[s]
        where = "bibasilar" if side == "bilateral" else f"{side} basilar"
        if f.hedged:
            options = (
                f"{where} linear density {_pick(rng, _HEDGES[:2])} {degree} atelectasis.",
                f"{degree} {where} streaky density, possibly atelectasis.",
            )
        elif side == "bilateral":
            options = (
                f"{degree} bibasilar linear atelectasis.",
                f"{degree} linear atelectasis at both lung bases.",
            )
        else:
            options = (
                f"{degree} linear atelectasis at the {side} lung base.",
                f"{degree} plate-like atelectasis in the {side} lower lung.",
            )
    elif f.label == F.LUNG_LESION:
        cm = F.nodule_diameter_cm(s)
        options = (
            f"There is a {cm} cm nodule in the {_side_zone(f)} lung.",
            f"A {cm} cm rounded nodule projects over the {_side_zone(f)} lung zone.",
            f"{side} {_ZONE_PHRASE[f.zone]} lung nodule measuring {cm} cm.",
        )
    elif f.label == F.EDEMA:
        degree = F.SEVERITY_WORDS[s]
        if f.hedged:
            options = (f"Bilateral perihilar haziness may represent {degree} {_EDEMA[s]}.",)
        else:
            options = (
                f"{degree} {_EDEMA[s]} with bilateral perihilar haziness.",
                f"There is {degree} {_EDEMA[s]}, bilateral and perihilar.",
            )
    elif f.label == F.SUPPORT_DEVICES:
        options = _device_sentences(f, rng)
    else:  # pragma: no cover - every drawn label is handled above
        raise ValueError(f"no sentence template for {f.label!r}")
    return _cap(_pick(rng, options))


def _device_sentences(f: F.Finding, rng: np.random.Generator) -> tuple[str, ...]:
    if f.device == "endotracheal tube":
        cm = round(float(rng.uniform(3.0, 6.0)), 1)
        return (
            f"Endotracheal tube tip terminates {cm} cm above the carina.",
            "An endotracheal tube is in standard position in the upper trachea.",
        )
    if f.device == "central line":
        side = f.side
        return (
            f"{side} internal jugular central venous catheter terminates in the mid SVC.",
            f"A {side}-sided central line tip projects over the superior vena cava.",
        )
    return (
        "Left chest wall pacemaker with leads terminating in the right atrium and ventricle.",
        "A left-sided pacemaker device is in place with leads in the heart.",
    )


def impression_sentence(f: F.Finding, rng: np.random.Generator) -> str:
    """A short IMPRESSION restatement of a pathology, with the same location, severity and hedging."""
    s = f.severity
    if f.label == F.CARDIOMEGALY:
        return f"{F.SEVERITY_WORDS[s]} cardiomegaly.".capitalize()
    if f.label == F.ENLARGED_CM:
        return f"{F.SEVERITY_WORDS[s]} widening of the superior mediastinum.".capitalize()
    if f.label == F.EFFUSION:
        where = "bilateral" if f.side == "bilateral" else f.side
        text = f"{F.SIZE_WORDS[s]} {where} pleural effusion."
        return _cap(f"possible {text}" if f.hedged else text)
    if f.label == F.PNEUMOTHORAX:
        return _cap(f"{F.SIZE_WORDS[s]} {f.side} apical pneumothorax.")
    if f.label == F.EDEMA:
        text = f"{F.SEVERITY_WORDS[s]} {_EDEMA[s]}."
        return _cap(f"possible {text}" if f.hedged else text)
    return finding_sentence(f, rng)


def _negation_sentences(labels: list[str], rng: np.random.Generator) -> list[str]:
    sentences, pending = [], list(labels)
    while pending:
        label = pending.pop(0)
        partner = next((p for p in pending if p in _NEGATION_NOUN and label in _NEGATION_NOUN), None)
        if partner is not None and rng.random() < 0.6:
            pending.remove(partner)
            sentences.append(f"No {_NEGATION_NOUN[label]} or {_NEGATION_NOUN[partner]}.")
        else:
            sentences.append(_pick(rng, _NEGATIONS[label]))
    return sentences


def _paragraph(sentences: list[str]) -> str:
    # wrap at spaces only, as MIMIC-CXR does ("right-sided" is never split across lines)
    return textwrap.fill(
        "  ".join(sentences),
        width=WRAP_WIDTH,
        initial_indent=" ",
        subsequent_indent=" ",
        break_on_hyphens=False,
    )


def write_report(study: F.StudyFindings, rng: np.random.Generator, views: str = "frontal") -> Report:
    """Write the report of one study.

    Args:
        study: the finding list and the negations to state.
        rng: the study's generator.
        views: ``"frontal"`` or ``"both"`` (changes the EXAMINATION and TECHNIQUE lines only).

    Returns:
        ``Report`` with the text and, per finding, its describing sentence.
    """
    described = [finding_sentence(f, rng) for f in study.findings]
    body = list(described)
    for sentence in _negation_sentences(study.negated, rng):
        body.insert(int(rng.integers(len(body) + 1)), sentence)
    if not study.findings or rng.random() < 0.3:
        body.append(_pick(rng, _FILLERS))
    pathologies = [f for f in study.findings if f.label != F.SUPPORT_DEVICES]
    impression = [impression_sentence(f, rng) for f in pathologies] or [_pick(rng, _NORMAL_IMPRESSIONS)]

    findings_header, impression_header = "FINDINGS", "IMPRESSION"
    if rng.random() < P_HEADER_TYPO:
        findings_header, impression_header = _pick(
            rng, (("FINDNGS", "IMPRESSION"), ("FINDINGS", "IMPRESSON"))
        )
    elif rng.random() < 0.1:
        impression_header = "CONCLUSION"

    lines = [" " * 33 + "FINAL REPORT", f" EXAMINATION:  {_pick(rng, _EXAMS[views])}", " "]
    sex = _pick(rng, ("man", "woman"))
    lines += [f" INDICATION:  {_pick(rng, _INDICATIONS).format(sex=sex)}", " "]
    lines += [f" TECHNIQUE:  {_pick(rng, _TECHNIQUES[views])}", " ", " COMPARISON:  ___", " "]
    if rng.random() < P_IMPRESSION_ONLY:
        # the IMPRESSION carries every sentence, as a numbered list when there are several
        numbered = len(body) > 1 and rng.random() < 0.5
        lines += [f" {impression_header}: ", " "]
        for i, sentence in enumerate(body, start=1):
            lines.append(_paragraph([f"{i}. {sentence}" if numbered else sentence]))
    else:
        lines += [f" {findings_header}: ", " ", _paragraph(body), " ", f" {impression_header}: ", " "]
        lines.append(_paragraph(impression))
    text = "\n".join(lines) + "\n"
    if rng.random() < P_ADDENDUM:
        addendum = _paragraph(
            ["ADDENDUM: Findings were discussed with Dr. ___ by telephone at ___ p.m. on ___."]
        )
        text = f"{addendum}\n {'_' * 78}\n{text}"
    return Report(text, described)


def sentence_indices(text: str, sentences: list[str]) -> list[int]:
    """Index of each given sentence in ``radmi.data.reports.report_sentences(text)``, or -1 if absent.

    The comparison ignores whitespace differences (wrapping) and list numbering, which the splitter removes.
    """

    def key(sentence: str) -> str:
        return " ".join(sentence.split())

    model_sentences = [key(s) for s in report_sentences(text)]
    indices = []
    for sentence in sentences:
        target = key(sentence)
        indices.append(next((i for i, s in enumerate(model_sentences) if s == target), -1))
    return indices
