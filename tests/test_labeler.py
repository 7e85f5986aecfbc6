"""The report labeler (``radmi.data.labeler``, ``radmi label``): the hand-written sentence set, cue scopes,
aggregation, the "No Finding" rule, input errors and the command line.

``python tests/test_labeler.py`` prints the per-finding agreement table quoted in ``docs/labeling.md``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radmi.cli import main
from radmi.data.labeler import label_report, label_reports, label_sentence
from radmi.data.labels import CHEXPERT_LABELS
from radmi.errors import ManifestError, ReportError

SENTENCES = Path(__file__).with_name("labeler_sentences.tsv")
CODES = {
    "ECM": "Enlarged Cardiomediastinum",
    "CM": "Cardiomegaly",
    "LES": "Lung Lesion",
    "OPA": "Lung Opacity",
    "EDE": "Edema",
    "CON": "Consolidation",
    "PNA": "Pneumonia",
    "ATE": "Atelectasis",
    "PTX": "Pneumothorax",
    "EFF": "Pleural Effusion",
    "PLO": "Pleural Other",
    "FX": "Fracture",
    "DEV": "Support Devices",
}
#: Stated thresholds: every finding's agreement on the sentences that mention it (expected or labeled), and
#: the share of sentences whose whole 14-label row is right.
MIN_FINDING_AGREEMENT = 0.90
MIN_EXACT_ROWS = 0.93


def expected_row(labels: str) -> dict[str, float]:
    """The 14 expected values of one test sentence (``"EFF:1;PTX:0"``), "No Finding" by the usual rule."""
    row = dict.fromkeys(CHEXPERT_LABELS, math.nan)
    if labels != "-":
        for item in labels.split(";"):
            code, value = item.split(":")
            row[CODES[code]] = float(value)
    found = any(row[name] in (1.0, -1.0) for name in CHEXPERT_LABELS if name not in ("No Finding", "Support Devices"))
    row["No Finding"] = math.nan if found else 1.0
    return row


def load_sentences() -> pd.DataFrame:
    return pd.read_csv(SENTENCES, sep="\t", comment="#", dtype=str, keep_default_na=False)


def sentence_agreement(subset: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per-finding table, expected values, labeled values) over the hand-written sentence set.

    A finding's agreement is over the sentences where it is expected or labeled (non-blank on either side),
    so that the many blanks do not inflate it. ``subset``: ``dev`` or ``holdout`` (column ``set``), else all.
    """
    table = load_sentences()
    if subset is not None:
        table = table[table["set"] == subset].reset_index(drop=True)
    expected = pd.DataFrame([expected_row(labels) for labels in table["labels"]], columns=list(CHEXPERT_LABELS))
    labeled = pd.DataFrame([label_sentence(s) for s in table["sentence"]], columns=list(CHEXPERT_LABELS))
    rows = []
    for name in CHEXPERT_LABELS:
        e, p = expected[name].to_numpy(), labeled[name].to_numpy()
        same = (e == p) | (np.isnan(e) & np.isnan(p))
        involved = ~(np.isnan(e) & np.isnan(p))
        counts = {f"expected {v:+.0f}": int((e == v).sum()) for v in (1.0, 0.0, -1.0)}
        rows.append(
            {
                "finding": name,
                "sentences": int(involved.sum()),
                **counts,
                "agree": int((same & involved).sum()),
                "agreement": float(same[involved].mean()) if involved.any() else 1.0,
            }
        )
    return pd.DataFrame(rows), expected, labeled


@pytest.fixture(scope="module")
def agreement():
    return sentence_agreement()


def test_sentence_set_is_large_and_covers_every_finding_and_cue():
    table = load_sentences()
    assert len(table) >= 300
    assert not table["sentence"].duplicated().any()
    codes = {item.split(":")[0] for labels in table["labels"] if labels != "-" for item in labels.split(";")}
    assert codes == set(CODES)
    cues = set(table["cue"])
    assert cues >= {"positive", "negation", "uncertain", "pseudo", "resolution", "scope", "synonym", "normal",
                    "weak", "blocker", "list"}  # fmt: skip
    values = {item.split(":")[1] for labels in table["labels"] if labels != "-" for item in labels.split(";")}
    assert values == {"1", "0", "-1"}


def test_per_finding_agreement_meets_the_stated_thresholds(agreement):
    per_finding, expected, labeled = agreement
    low = per_finding[per_finding["agreement"] < MIN_FINDING_AGREEMENT]
    assert low.empty, low.to_string()
    exact = ((expected == labeled) | (expected.isna() & labeled.isna())).all(axis=1).mean()
    assert exact >= MIN_EXACT_ROWS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the issue's examples
        ("No pneumothorax but a small effusion.", {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}),
        ("No change in the effusion.", {"Pleural Effusion": 1.0}),
        ("Effusion, not significantly changed.", {"Pleural Effusion": 1.0}),
        ("Pneumonia cannot be excluded.", {"Pneumonia": -1.0}),
        ("Opacity may represent pneumonia.", {"Lung Opacity": 1.0, "Pneumonia": -1.0}),
        ("Possible small effusion.", {"Pleural Effusion": -1.0}),
        ("Atelectasis versus pneumonia.", {"Atelectasis": -1.0, "Pneumonia": -1.0}),
        ("Likely atelectasis.", {"Atelectasis": -1.0}),
        ("The effusion has resolved.", {"Pleural Effusion": 0.0}),
        ("The chest tube has been removed.", {"Support Devices": 0.0}),
        ("CHF.", {"Edema": 1.0}),
        ("Small right PTX.", {"Pneumothorax": 1.0}),
        ("ETT and NG tube in place.", {"Support Devices": 1.0}),
        ("PICC tip in the SVC.", {"Support Devices": 1.0}),
        ("The cardiac silhouette is enlarged.", {"Cardiomegaly": 1.0}),
        ("Blunting of the costophrenic angle.", {"Pleural Effusion": 1.0}),
        ("Mild vascular congestion.", {"Edema": 1.0}),
    ],
)
def test_issue_examples(text, expected):
    labels = label_sentence(text)
    got = {name: value for name, value in labels.items() if not math.isnan(value) and name != "No Finding"}
    assert got == expected


def test_report_aggregation_positive_beats_uncertain_beats_negative():
    report = (
        "FINDINGS: No pleural effusion on the right. Possible small left pleural effusion. "
        "No pneumothorax.\n\nIMPRESSION: Small left pleural effusion. Pneumonia cannot be excluded. "
        "No pneumonia on the right."
    )
    labels = label_report(report)
    assert labels["Pleural Effusion"] == 1.0  # 0, -1 and 1 mentions -> 1
    assert labels["Pneumonia"] == -1.0  # -1 and 0 -> -1
    assert labels["Pneumothorax"] == 0.0
    assert math.isnan(labels["No Finding"]) and math.isnan(labels["Cardiomegaly"])


def test_no_finding_rule_ignores_support_devices_and_negatives():
    normal = label_report("IMPRESSION: No pleural effusion or pneumothorax. ET tube in standard position.")
    assert normal["No Finding"] == 1.0 and normal["Support Devices"] == 1.0
    hedged = label_report("IMPRESSION: Possible small effusion.")
    assert math.isnan(hedged["No Finding"])
    silent = label_report("IMPRESSION: Comparison to prior.")
    assert silent["No Finding"] == 1.0 and all(math.isnan(silent[n]) for n in CHEXPERT_LABELS[1:])


def test_sections_default_findings_and_impression_with_fallback():
    report = "INDICATION: ?pneumonia. Evaluate for effusion.\n\nFINDINGS: Heart size is normal.\n"
    labels = label_report(report)  # the indication is not read
    assert labels["Cardiomegaly"] == 0.0 and math.isnan(labels["Pneumonia"])
    assert label_report(report, sections=("all",))["Pneumonia"] == -1.0
    assert label_report(report, sections=("indication",))["Pleural Effusion"] == -1.0
    no_headers = "Portable chest.\n\nSmall right pleural effusion."
    assert label_report(no_headers)["Pleural Effusion"] == 1.0  # the last paragraph


def test_label_reports_keeps_the_index_and_names_the_empty_row():
    series = pd.Series(["FINDINGS: No pneumothorax.", "IMPRESSION: Cardiomegaly."], index=["a", "b"])
    frame = label_reports(series)
    assert list(frame.index) == ["a", "b"] and list(frame.columns) == list(CHEXPERT_LABELS)
    assert frame.loc["b", "Cardiomegaly"] == 1.0
    with pytest.raises(ReportError, match=r"reports.csv \(row 1\): empty report"):
        label_reports(["FINDINGS: clear.", "   "], path="reports.csv")
    with pytest.raises(ReportError, match="empty report"):
        label_report("")


# ---- the command line -------------------------------------------------------------------------------------
def _reports_csv(path: Path, rows: list[tuple[str, str]], **kwargs) -> Path:
    pd.DataFrame(rows, columns=["study_id", "report"]).to_csv(path, index=False, **kwargs)
    return path


def test_cli_label_csv(tmp_path, capsys):
    source = _reports_csv(
        tmp_path / "reports.csv",
        [("1.2.3", "FINDINGS: Small left effusion. No pneumothorax."), ("1.2.4", "IMPRESSION: Normal chest.")],
    )
    out = tmp_path / "labels.csv"
    assert main(["label", str(source), "--out", str(out)]) == 0
    labels = pd.read_csv(out, dtype={"study_id": str})
    assert list(labels.columns) == ["study_id", *CHEXPERT_LABELS]
    assert labels["study_id"].tolist() == ["1.2.3", "1.2.4"]
    assert labels.loc[0, "Pleural Effusion"] == 1.0 and labels.loc[0, "Pneumothorax"] == 0.0
    assert labels.loc[1, "No Finding"] == 1.0 and np.isnan(labels.loc[0, "No Finding"])
    assert "2 reports" in capsys.readouterr().out
    raw = out.read_text().splitlines()
    assert raw[1].startswith("1.2.3,,") and ",1.0," in raw[1]  # blank = not mentioned, 1.0/0.0 floats


def test_cli_label_custom_columns_and_sections(tmp_path):
    source = tmp_path / "r.csv"
    pd.DataFrame({"accession": ["A1"], "text": ["Small right pleural effusion."]}).to_csv(source, index=False)
    out = tmp_path / "l.csv"
    args = ["label", str(source), "--out", str(out), "--id-column", "accession", "--report-column", "text"]
    assert main([*args, "--sections", "all"]) == 0
    assert pd.read_csv(out).loc[0, "Pleural Effusion"] == 1.0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("1", "FINDINGS: clear."), ("2", "")], r"\(row 1\): empty report"),
        ([("1", "FINDINGS: clear."), ("1", "IMPRESSION: effusion.")], r"\(row 1\): duplicate study_id"),
    ],
)
def test_cli_label_bad_rows_are_named(tmp_path, capsys, rows, message):
    source = _reports_csv(tmp_path / "bad.csv", rows)
    assert main(["label", str(source), "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv" in err and re.search(message, err), err


def test_cli_label_missing_column_and_non_utf8(tmp_path, capsys):
    source = tmp_path / "nocol.csv"
    pd.DataFrame({"study_id": ["1"], "text": ["x"]}).to_csv(source, index=False)
    assert main(["label", str(source), "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "nocol.csv: missing column(s) ['report']" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("study_id,report\n1,FINDINGS: clear.\n2,FINDINGS: \xe9panchement.\n".encode("latin-1"))
    assert main(["label", str(latin), "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "latin.csv (row 1)" in err and "UTF-8" in err


def test_read_labeler_input_errors_are_radmi_errors(tmp_path):
    from radmi.commands.label import read_reports

    with pytest.raises(ManifestError, match="not found"):
        read_reports(tmp_path / "absent.csv")


def test_cli_label_demo_folder_and_manifest(tmp_path):
    from radmi.data.demo import generate
    from radmi.data.manifest import build_mimic_manifest, write_manifest

    root = tmp_path / "demo"
    generate(root, 6, seed=1, size=64, compress="none", progress=False)
    out = tmp_path / "labels.csv"
    assert main(["label", str(root), "--out", str(out)]) == 0
    labels = pd.read_csv(out, dtype={"study_id": str})
    truth = pd.read_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", dtype={"study_id": str})
    assert sorted(labels["study_id"]) == sorted(truth["study_id"])
    manifest = tmp_path / "m.csv"
    write_manifest(build_mimic_manifest(root, progress=False), manifest)
    out2 = tmp_path / "labels2.csv"
    assert main(["label", str(manifest), "--out", str(out2)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out2), pd.read_csv(out))


if __name__ == "__main__":  # the tables of docs/labeling.md: python tests/test_labeler.py [dev|holdout]
    import sys

    subset = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "all" else None
    table, expected, labeled = sentence_agreement(subset)
    exact = ((expected == labeled) | (expected.isna() & labeled.isna())).all(axis=1)
    print(f"{subset or 'all'}: {len(expected)} sentences; whole rows right: {int(exact.sum())} ({exact.mean():.3f})")
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    wrong = ~((expected == labeled) | (expected.isna() & labeled.isna())).all(axis=1)
    for index in np.flatnonzero(wrong.to_numpy()):
        e = {k: v for k, v in expected.iloc[index].items() if not math.isnan(v)}
        p = {k: v for k, v in labeled.iloc[index].items() if not math.isnan(v)}
        sentences = load_sentences()
        if subset is not None:
            sentences = sentences[sentences["set"] == subset].reset_index(drop=True)
        print("MISMATCH", sentences.loc[index, "sentence"], "| expected", e, "| labeled", p)
