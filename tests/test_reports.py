"""Report sectioning and sentence splitting on realistic MIMIC-CXR-style reports (written for these tests)."""

# ruff: noqa: W291, W293  (the report texts keep MIMIC-CXR's whitespace-only lines and trailing spaces)

from __future__ import annotations

import pytest

from radmi.data.reports import normalize_section_name, parse_report, report_sentences, split_sentences

FULL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___ year old man with shortness of breath  // ?effusion
 
 TECHNIQUE:  Chest PA and lateral
 
 COMPARISON:  ___
 
 FINDINGS: 
 
 The heart is mildly enlarged.  There is a small right pleural effusion with
 adjacent basilar atelectasis.  No pneumothorax.  The left lung is clear.
 Sternotomy wires are intact.
 
 IMPRESSION: 
 
 Small right pleural effusion.  Mild cardiomegaly.
"""

ADDENDUM = """ ADDENDUM: The nodule described below measures 2.5 cm, not 1.5
 cm.  Dr. ___ was informed.
______________________________________________________________________________
                                 FINAL REPORT
 INDICATION:  Cough.
 
 FINDINGS:  There is a 1.5 cm nodule in the right upper lobe.
 
 IMPRESSION:  Right upper lobe nodule, e.g. granuloma; CT recommended.
"""

IMPRESSION_ONLY_WITH_TYPO = """                                 FINAL REPORT
 HISTORY:  Fever.
 
 COMPARISION:  Radiograph from ___.
 
 IMPRESSON: 
 
 1. No acute cardiopulmonary process.
 2. Stable mild cardiomegaly, measuring
 approximately 16.5 cm in transverse diameter.
"""

CONCLUSION = """ EXAMINATION:  Portable chest.
 
 FINDNGS:  Lines and tubes in standard position.
 
 CONCLUSION:  No pneumothorax.
"""

NEITHER = """                                 FINAL REPORT
 CHEST RADIOGRAPH PERFORMED ON ___
 
 COMPARISON:  None.
 
 CLINICAL HISTORY:  ___-year-old female with chest pain.
 
 PA and lateral views of the chest were provided demonstrating no focal
 consolidation, effusion or pneumothorax.  Cardiomediastinal silhouette is
 normal.
 
 No acute intrathoracic process.
"""


def test_full_report_sections_and_unwrapping():
    sections = parse_report(FULL)
    assert sections["findings"] == (
        "The heart is mildly enlarged. There is a small right pleural effusion with adjacent basilar "
        "atelectasis. No pneumothorax. The left lung is clear. Sternotomy wires are intact."
    )
    assert sections["impression"] == "Small right pleural effusion. Mild cardiomegaly."
    assert sections["comparison"] == "___"
    assert sections["indication"] == "___ year old man with shortness of breath // ?effusion"
    assert sections["examination"] == "CHEST (PA AND LAT)"
    assert sections["last_paragraph"] == "" and sections["addendum"] == ""
    assert report_sentences(FULL) == [
        "The heart is mildly enlarged.",
        "There is a small right pleural effusion with adjacent basilar atelectasis.",
        "No pneumothorax.",
        "The left lung is clear.",
        "Sternotomy wires are intact.",
        "Small right pleural effusion.",
        "Mild cardiomegaly.",
    ]


def test_addendum_before_underscore_line():
    sections = parse_report(ADDENDUM)
    assert (
        sections["addendum"]
        == "The nodule described below measures 2.5 cm, not 1.5 cm. Dr. ___ was informed."
    )
    assert sections["findings"] == "There is a 1.5 cm nodule in the right upper lobe."
    assert sections["indication"] == "Cough."
    assert report_sentences(ADDENDUM) == [
        "There is a 1.5 cm nodule in the right upper lobe.",
        "Right upper lobe nodule, e.g. granuloma; CT recommended.",
    ]
    assert split_sentences(sections["addendum"]) == [
        "The nodule described below measures 2.5 cm, not 1.5 cm.",
        "Dr. ___ was informed.",
    ]
    assert report_sentences(ADDENDUM, sections=("addendum",))[0].startswith("The nodule")


def test_impression_only_typos_and_numbered_list():
    sections = parse_report(IMPRESSION_ONLY_WITH_TYPO)
    assert sections["findings"] == ""
    assert sections["indication"] == "Fever."  # history -> indication
    assert sections["comparison"] == "Radiograph from ___."  # "COMPARISION" typo
    assert sections["impression"] == (
        "1. No acute cardiopulmonary process.\n"
        "2. Stable mild cardiomegaly, measuring approximately 16.5 cm in transverse diameter."
    )
    assert report_sentences(IMPRESSION_ONLY_WITH_TYPO) == [
        "No acute cardiopulmonary process.",
        "Stable mild cardiomegaly, measuring approximately 16.5 cm in transverse diameter.",
    ]


def test_conclusion_is_impression_and_findings_typo():
    sections = parse_report(CONCLUSION)
    assert sections["findings"] == "Lines and tubes in standard position."
    assert sections["impression"] == "No pneumothorax."
    assert report_sentences(CONCLUSION, sections=("impression", "findings")) == [
        "No pneumothorax.",
        "Lines and tubes in standard position.",
    ]


def test_neither_section_falls_back_to_last_paragraph():
    sections = parse_report(NEITHER)
    assert sections["findings"] == sections["impression"] == ""
    assert sections["last_paragraph"] == "No acute intrathoracic process."
    assert sections["comparison"] == "None."
    assert report_sentences(NEITHER) == ["No acute intrathoracic process."]
    assert report_sentences(NEITHER, fallback=None) == []
    # the fallback is not used when a chosen section has text
    assert parse_report(FULL)["last_paragraph"] == ""


def test_placeholders_normalized_and_crlf():
    text = "FINDINGS:  Dr. _____ saw the patient on __________.\r\n\r\nIMPRESSION:  Normal.\r\n"
    sections = parse_report(text)
    assert sections["findings"] == "Dr. ___ saw the patient on ___."
    assert sections["impression"] == "Normal."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Small effusion, e.g. layering. No pneumothorax.",
            ["Small effusion, e.g. layering.", "No pneumothorax."],
        ),
        (
            "Findings discussed with Dr. Smith. He agreed.",
            ["Findings discussed with Dr. Smith.", "He agreed."],
        ),
        ("A 2.5 cm nodule. Another of 0.8 cm.", ["A 2.5 cm nodule.", "Another of 0.8 cm."]),
        ("1. Small effusion. 2. No pneumothorax.", ["Small effusion.", "No pneumothorax."]),
        ("Tip at approx. 3 cm above the carina.", ["Tip at approx. 3 cm above the carina."]),
        ("Seen at 10 a.m. on ___. The lungs are clear.", ["Seen at 10 a.m. on ___.", "The lungs are clear."]),
        (
            "Heart size normal, i.e. no cardiomegaly. Lungs clear!",
            ["Heart size normal, i.e. no cardiomegaly.", "Lungs clear!"],
        ),
        ("Is there effusion? No.", ["Is there effusion?", "No."]),
        ("___. Lungs clear.", ["Lungs clear."]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_section_name_normalization():
    assert normalize_section_name("IMPRESSON") == "impression"
    assert normalize_section_name("CONCLUSIONS") == "impression"
    assert normalize_section_name("FINDNGS") == "findings"
    assert normalize_section_name("RECOMMENDATION(S)") == "recommendation"
    assert normalize_section_name("REASON FOR EXAM") == "indication"
    assert normalize_section_name("PA AND LATERAL") == "pa and lateral"  # unknown names kept, lower case


def test_uppercase_word_mid_paragraph_is_not_a_header():
    text = "FINDINGS:  Compared with prior\n CT: no change in the nodule.\n\nIMPRESSION:  Stable."
    assert parse_report(text)["findings"] == "Compared with prior CT: no change in the nodule."
