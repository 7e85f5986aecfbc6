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


# ------------------------------------------------------------------------------------ linear time (issue 17)
def test_split_sentences_equals_the_quadratic_reference_on_random_text():
    import random

    from reports_reference import split_sentences_reference

    pieces = list("aB1 .!?\"')(]_\n\t\u00a0xyzE.,") + ["e.g.", "Dr.", "a.m.", " 1. ", "___", "approx.", "2.5",
                                                        "\n\n", " . ", "i.e. ", "...", "?!", "Fig. 2"]  # fmt: skip
    rng = random.Random(17)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        assert split_sentences(text) == split_sentences_reference(text), repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "foo. bar " * 120_000,  # ~1 MB on one line, no boundary: the old splitter rescanned the growing chunk
        "x" * 300_000 + " ." * 200_000,  # one long word, then many pure-punctuation tokens
        "." * 1_000_000 + "x",  # a run of periods not followed by whitespace
        "Line of a report.\n" * 60_000,  # many wrapped lines in one paragraph (unwrap joined them quadratically)
    ],
)
def test_split_sentences_is_linear_on_adversarial_text(text):
    import time

    started = time.perf_counter()
    split_sentences(text)
    assert time.perf_counter() - started < 10.0  # the old implementation takes minutes on the first two


def test_parse_report_with_many_unknown_headers_is_fast():
    import time

    text = "".join(f"NAME{i % 50} X:\nfoo bar.\n" for i in range(50_000))
    started = time.perf_counter()
    parse_report(text)
    assert time.perf_counter() - started < 10.0


def test_load_report_refuses_reports_over_the_limit(tmp_path):
    from radmi.errors import ReportError
    from radmi.transforms.text import LoadReport

    path = tmp_path / "long.txt"
    path.write_text("FINDINGS: " + "No effusion. " * 100)
    assert LoadReport(max_chars=10_000)(path).startswith("FINDINGS")
    with pytest.raises(ReportError, match="longer than the limit of 1,000 characters") as info:
        LoadReport(max_chars=1000)(path)
    assert info.value.path == str(path)
    path.write_text("é" * 600)  # 600 characters, 1200 bytes: the limit counts characters
    assert len(LoadReport(max_chars=600)(path)) == 600


def test_load_report_never_blocks_on_a_fifo(tmp_path):
    import os

    from radmi.errors import ReportError
    from radmi.transforms.text import LoadReport

    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    with pytest.raises(ReportError, match="FIFO"):
        LoadReport()(tmp_path / "pipe.txt")
    with pytest.raises(ReportError, match="link loop"):
        LoadReport()(tmp_path / "loop.txt")
    with pytest.raises(ReportError, match="report file not found"):
        LoadReport()(tmp_path / "missing.txt")
