"""MONAI transforms for report text: load the file, choose sections and split sentences, tokenize.

Dictionary flow (default keys)::

    report_path --LoadReportd--> report (whole text)
    report --ParseReportd--> report (the chosen sections' text), sentences (list[str])
    sentences --TokenizeReportd--> input_ids, attention_mask, sentence_ids (T int64 each)

Report text is never logged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import torch
from monai.transforms import MapTransform, Transform

from radmi.data.reports import (
    DEFAULT_FALLBACK,
    DEFAULT_SECTIONS,
    parse_report,
    select_sections,
    split_sentences,
)
from radmi.errors import ReportError


class LoadReport(Transform):
    """Read a report file into a string (UTF-8, with or without a byte-order mark).

    Raises:
        ReportError: naming the file, if it is missing, empty (only whitespace) or not valid UTF-8.
    """

    def __init__(self, encoding: str = "utf-8-sig") -> None:
        self.encoding = encoding

    def __call__(self, path: str | PathLike) -> str:
        path = Path(path)
        try:
            text = path.read_text(encoding=self.encoding)
        except FileNotFoundError as err:
            raise ReportError("report file not found", path=path) from err
        except UnicodeDecodeError as err:
            raise ReportError(f"report is not valid {self.encoding} text ({err.reason})", path=path) from err
        except OSError as err:
            raise ReportError(f"cannot read report ({err.strerror})", path=path) from err
        if not text.strip():
            raise ReportError("report file is empty", path=path)
        return text


class LoadReportd(MapTransform):
    """Dictionary twin of ``LoadReport``: ``keys`` hold paths; the text goes to ``output_key``.

    Args:
        keys: path key(s), default ``report_path``.
        output_key: where the text goes (default ``report``); ``None`` replaces the path in place.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "report_path",
        output_key: str | None = "report",
        encoding: str = "utf-8-sig",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadReport(encoding)
        self.output_key = output_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or key] = self.loader(d[key])
        return d


class ParseReport(Transform):
    """Report text -> ``(selected text, sentences)``.

    Args:
        sections: sections fed to the model, in order (default findings then impression).
        fallback: section used when all of ``sections`` are empty (default ``last_paragraph``; ``None``: none).
    """

    def __init__(
        self, sections: Sequence[str] = DEFAULT_SECTIONS, fallback: str | None = DEFAULT_FALLBACK
    ) -> None:
        self.sections = tuple(sections)
        self.fallback = fallback

    def __call__(self, text: str) -> tuple[str, list[str]]:
        selected = select_sections(parse_report(text), self.sections, self.fallback)
        # same result as radmi.data.reports.report_sentences(text, sections, fallback), parsed once
        return selected, split_sentences(selected)


class ParseReportd(MapTransform):
    """Dictionary twin of ``ParseReport``: replaces ``keys`` with the selected text and writes the sentence
    list to ``sentences_key``.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "report",
        sections: Sequence[str] = DEFAULT_SECTIONS,
        fallback: str | None = DEFAULT_FALLBACK,
        sentences_key: str = "sentences",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.parser = ParseReport(sections, fallback)
        self.sentences_key = sentences_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], d[self.sentences_key] = self.parser(d[key])
        return d


class TokenizeReport(Transform):
    """Sentences -> ``(input_ids, attention_mask, sentence_ids)``, each a T int64 tensor (T = ``max_length``).

    The sentences are tokenized as the words of one sequence (the tokenizer's ``is_split_into_words`` mode),
    so ``word_ids`` gives each token's sentence; special and pad tokens get sentence id -1. When the text is too
    long, whole sentences are dropped from the end; only when the first sentence alone does not fit is it cut
    at the token level (so a sample always carries text).

    Args:
        tokenizer: a fast Hugging Face tokenizer, or a name/directory resolved by
            ``radmi.models.hub.load_tokenizer`` (e.g. ``"offline:all-MiniLM-L6-v2"``).
        max_length: T, the padded length including special tokens.
        max_sentences: keep at most this many sentences (from the start); ``None``: no limit.
    """

    def __init__(self, tokenizer, max_length: int = 128, max_sentences: int | None = None) -> None:
        if isinstance(tokenizer, (str, PathLike)):
            from radmi.models.hub import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("TokenizeReport needs a fast (Rust) tokenizer: it relies on word_ids()")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.max_sentences = max_sentences
        self.num_special = tokenizer.num_special_tokens_to_add(pair=False)
        if self.max_length <= self.num_special:
            raise ValueError(f"max_length {max_length} leaves no room for text")

    def sentences_that_fit(self, sentences: Sequence[str]) -> int:
        """How many whole sentences, from the start, fit in ``max_length`` with the special tokens."""
        if not sentences:
            return 0
        word_ids = self.tokenizer(
            list(sentences), is_split_into_words=True, add_special_tokens=False
        ).word_ids()
        lengths = torch.bincount(torch.tensor(word_ids, dtype=torch.int64), minlength=len(sentences))
        fits = torch.cumsum(lengths, 0) <= self.max_length - self.num_special
        return int(fits.sum())

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sentences = list(sentences)[: self.max_sentences]
        kept = self.sentences_that_fit(sentences)
        # the first sentence alone is too long: keep it, cut at the token level
        kept, truncate = (1, True) if kept == 0 and sentences else (kept, False)
        encoding = self.tokenizer(
            sentences[:kept] or [""],
            is_split_into_words=True,
            padding="max_length",
            truncation=truncate,
            max_length=self.max_length,
        )
        word_ids = [-1 if word is None else word for word in encoding.word_ids()]
        return (
            torch.tensor(encoding["input_ids"], dtype=torch.int64),
            torch.tensor(encoding["attention_mask"], dtype=torch.int64),
            torch.tensor(word_ids, dtype=torch.int64),
        )


class TokenizeReportd(MapTransform):
    """Dictionary twin of ``TokenizeReport``: reads the sentence list at ``keys`` (default ``sentences``) and
    writes ``input_ids``, ``attention_mask``, ``sentence_ids`` (T int64 each).
    """

    def __init__(
        self,
        tokenizer,
        keys: Sequence[Hashable] | Hashable = "sentences",
        max_length: int = 128,
        max_sentences: int | None = None,
        input_ids_key: str = "input_ids",
        attention_mask_key: str = "attention_mask",
        sentence_ids_key: str = "sentence_ids",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tokenize = TokenizeReport(tokenizer, max_length, max_sentences)
        self.output_keys = (input_ids_key, attention_mask_key, sentence_ids_key)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            for out_key, value in zip(self.output_keys, self.tokenize(d[key]), strict=True):
                d[out_key] = value
        return d
