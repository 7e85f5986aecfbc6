"""Report loading, parsing and tokenization: sentence_ids token by token against the tokenizer itself."""

# ruff: noqa: W291, W293  (the report texts keep MIMIC-CXR's whitespace-only lines and trailing spaces)

from __future__ import annotations

import pytest
import torch

from radmi.data.reports import report_sentences
from radmi.errors import ReportError
from radmi.models.hub import load_tokenizer
from radmi.transforms.text import LoadReport, LoadReportd, ParseReportd, TokenizeReport, TokenizeReportd

REPORT = """ FINDINGS:  The heart is mildly enlarged.  There is a small right pleural
 effusion, e.g. layering, measuring 2.5 cm.
 
 IMPRESSION:  1. Small right effusion.  2. Mild cardiomegaly.
"""
SENTENCES = [
    "The heart is mildly enlarged.",
    "There is a small right pleural effusion, e.g. layering, measuring 2.5 cm.",
    "Small right effusion.",
    "Mild cardiomegaly.",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("offline:all-MiniLM-L6-v2")


def reference_tokens(tokenizer, sentences):
    """[CLS] + each sentence's own tokens (tagged with its index) + [SEP], built one sentence at a time."""
    ids, sentence_ids = [tokenizer.cls_token_id], [-1]
    for index, sentence in enumerate(sentences):
        own = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        ids += own
        sentence_ids += [index] * len(own)
    return ids + [tokenizer.sep_token_id], sentence_ids + [-1]


def test_load_and_parse(tmp_path):
    (tmp_path / "r.txt").write_text(REPORT)
    d = ParseReportd()(LoadReportd()({"report_path": tmp_path / "r.txt"}))
    assert d["sentences"] == SENTENCES == report_sentences(REPORT)
    assert d["report"].startswith("The heart is mildly enlarged.") and "IMPRESSION" not in d["report"]
    only_impression = ParseReportd(sections=("impression",))({"report": REPORT})
    assert only_impression["sentences"] == SENTENCES[2:]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ReportError, match=r"missing.txt: report file not found"):
        LoadReport()(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text(" \n\n ")
    with pytest.raises(ReportError, match=r"empty.txt: report file is empty"):
        LoadReport()(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("Pleural effusion \xe9".encode("latin-1"))
    with pytest.raises(ReportError, match=r"latin.txt: report is not valid utf-8-sig"):
        LoadReport()(tmp_path / "latin.txt")


def test_sentence_ids_token_by_token(tokenizer):
    ids, mask, sentence_ids = TokenizeReport(tokenizer, max_length=64)(SENTENCES)
    expected_ids, expected_sentences = reference_tokens(tokenizer, SENTENCES)
    n = len(expected_ids)
    assert ids.dtype == mask.dtype == sentence_ids.dtype == torch.int64
    assert ids.shape == mask.shape == sentence_ids.shape == (64,)
    assert ids[:n].tolist() == expected_ids
    assert sentence_ids[:n].tolist() == expected_sentences
    assert ids[n:].eq(tokenizer.pad_token_id).all() and sentence_ids[n:].eq(-1).all()
    assert mask.tolist() == [1] * n + [0] * (64 - n)
    # the whole text tokenized in one go gives the same ids: sentence splitting changes nothing
    assert tokenizer(" ".join(SENTENCES))["input_ids"] == expected_ids


def test_whole_sentence_truncation(tokenizer):
    lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in SENTENCES]
    budget = 2 + lengths[0] + lengths[1]  # exactly the first two sentences plus [CLS] [SEP]
    for max_length, kept in ((budget, 2), (budget + lengths[2] - 1, 2), (budget + lengths[2], 3)):
        ids, mask, sentence_ids = TokenizeReport(tokenizer, max_length=max_length)(SENTENCES)
        expected_ids, expected_sentences = reference_tokens(tokenizer, SENTENCES[:kept])
        assert ids[: len(expected_ids)].tolist() == expected_ids
        assert sentence_ids[: len(expected_ids)].tolist() == expected_sentences
        assert int(mask.sum()) == len(expected_ids) and sentence_ids.max() == kept - 1
    ids, _, sentence_ids = TokenizeReport(tokenizer, max_length=64, max_sentences=1)(SENTENCES)
    assert (
        sentence_ids.max() == 0
        and ids[: lengths[0] + 2].tolist() == reference_tokens(tokenizer, SENTENCES[:1])[0]
    )


def test_first_sentence_longer_than_max_length_is_cut(tokenizer):
    ids, mask, sentence_ids = TokenizeReport(tokenizer, max_length=6)(SENTENCES[1:])
    assert mask.tolist() == [1] * 6
    assert sentence_ids.tolist() == [-1, 0, 0, 0, 0, -1]
    assert ids[-1] == tokenizer.sep_token_id


def test_no_sentences_gives_special_tokens_only(tokenizer):
    ids, mask, sentence_ids = TokenizeReport(tokenizer, max_length=8)([])
    assert ids[:2].tolist() == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert int(mask.sum()) == 2 and sentence_ids.eq(-1).all()


def test_dict_twin_with_tokenizer_name():
    d = TokenizeReportd("offline:all-MiniLM-L6-v2", max_length=64)({"sentences": SENTENCES[:2]})
    assert set(d) >= {"input_ids", "attention_mask", "sentence_ids"}
    assert d["sentence_ids"].max() == 1
