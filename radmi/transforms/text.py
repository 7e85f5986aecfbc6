"""MONAI transforms for report text: load the file, choose sections and split sentences, tokenize.

Dictionary flow (default keys)::

    report_path --LoadReportd--> report (whole text)
    report --ParseReportd--> report (the chosen sections' text), sentences (list[str])
    sentences --TokenizeReportd--> input_ids, attention_mask, sentence_ids (T int64 each)
    input_ids, sentence_ids --SentenceTextKeysd--> sentence_keys (K int64), report_key (int64)

Report text is never logged.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import torch
from monai.transforms import MapTransform, Transform

from radmi.data.reports import (
    DEFAULT_FALLBACK,
    DEFAULT_SECTIONS,
    MAX_REPORT_CHARS,
    parse_report,
    select_sections,
    split_sentences,
)
from radmi.errors import ReportError
from radmi.transforms.file_checks import open_regular_file


class LoadReport(Transform):
    """Read a report file into a string (UTF-8, with or without a byte-order mark).

    Args:
        encoding: the text encoding.
        max_chars: longest report accepted, in characters (default ``MAX_REPORT_CHARS`` = 1,000,000; real
            reports are a few KB). At most ``4 x max_chars + 1`` bytes are ever read.

    Raises:
        ReportError: naming the file, if it is missing, not a regular file (FIFO, link loop, ...; never
            blocks), empty (only whitespace), longer than ``max_chars`` or not valid text in ``encoding``.
    """

    def __init__(self, encoding: str = "utf-8-sig", max_chars: int = MAX_REPORT_CHARS) -> None:
        self.encoding = encoding
        self.max_chars = int(max_chars)

    def __call__(self, path: str | PathLike) -> str:
        path = Path(path)
        limit = 4 * self.max_chars  # UTF-8 needs at most 4 bytes per character
        with open_regular_file(path, ReportError, missing="report file not found") as file:
            try:
                data = file.read(limit + 1)
            except OSError as err:
                raise ReportError(f"cannot read report ({err.strerror})", path=path) from err
        too_long = f"report is longer than the limit of {self.max_chars:,} characters (max_chars)"
        if len(data) > limit:
            raise ReportError(too_long, path=path)
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as err:
            raise ReportError(f"report is not valid {self.encoding} text ({err.reason})", path=path) from err
        except LookupError as err:
            raise ReportError(f"unknown text encoding {self.encoding!r}", path=path) from err
        if len(text) > self.max_chars:
            raise ReportError(too_long, path=path)
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
        max_chars: int = MAX_REPORT_CHARS,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadReport(encoding, max_chars=max_chars)
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


# Two primes below 2**31 and two bases: each polynomial hash stays below 2**31, so sums of T terms fit int64.
_HASH_MODULI = (2_147_483_647, 2_147_483_629)
_HASH_BASES = (1_000_003, 911_382_323)


@functools.lru_cache(maxsize=16)
def _cpu_powers(length: int, base: int, modulus: int) -> torch.Tensor:
    values = [1] * max(length, 1)
    for i in range(1, length):
        values[i] = values[i - 1] * base % modulus
    return torch.tensor(values[:length], dtype=torch.int64)


def _powers(length: int, base: int, modulus: int, device: torch.device) -> torch.Tensor:
    """``base ** i mod modulus`` for i < length, as int64 (built once per length, not every step)."""
    return _cpu_powers(length, base, modulus).to(device)


def _polynomial_hash(ids: torch.Tensor, position: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """62-bit hash of each group's token sequence: ``... x T`` ids/positions, ``... x T x G`` membership -> ``... x G``."""
    key = torch.zeros(member.shape[:-2] + member.shape[-1:], dtype=torch.int64, device=ids.device)
    for base, modulus in zip(_HASH_BASES, _HASH_MODULI, strict=True):
        powers = _powers(ids.shape[-1], base, modulus, ids.device)[position.clamp(min=0)]
        terms = (ids + 1) % modulus * powers % modulus  # ... x T, each < 2**31
        part = (terms.unsqueeze(-1) * member).sum(dim=-2) % modulus  # ... x G
        key = key * modulus + part
    return key


class SentenceTextKeys(Transform):
    """Token ids -> one integer key per sentence and one per report, equal exactly when the token ids are.

    Two sentences (or reports) with the same key have the same text after tokenization (lower-casing and
    whitespace included), up to a 2**-62-scale hash collision. The MI objectives use the keys to keep
    identical texts from serving as each other's negatives, without ever comparing strings in the loss.

    Args:
        max_sentences: K, the number of sentence slots (as the text encoder's ``max_sentences``).

    ``__call__(input_ids, sentence_ids)`` takes ``... x T`` int64 tensors (one report, or a batch ``B x T``) and
    returns ``(sentence_keys ... x K int64, report_key ... int64)``; a missing sentence gets key -1, the report
    key hashes all sentence tokens in order.
    """

    def __init__(self, max_sentences: int = 16) -> None:
        self.max_sentences = int(max_sentences)

    def __call__(self, input_ids: torch.Tensor, sentence_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
        sentence_ids = torch.as_tensor(sentence_ids, dtype=torch.int64)
        slots = torch.arange(self.max_sentences, device=sentence_ids.device)
        member = (sentence_ids.unsqueeze(-1) == slots).long()  # ... x T x K
        position = ((member.cumsum(dim=-2) - 1) * member).sum(-1)  # index within its own sentence
        sentence_keys = _polynomial_hash(input_ids, position, member)
        sentence_keys = sentence_keys.masked_fill(member.sum(-2) == 0, -1)
        text = (sentence_ids >= 0).long()
        report_member = text.unsqueeze(-1)  # ... x T x 1
        report_key = _polynomial_hash(input_ids, text.cumsum(-1) - 1, report_member).squeeze(-1)
        return sentence_keys, report_key


class SentenceTextKeysd(MapTransform):
    """Dictionary twin of ``SentenceTextKeys``: reads ``input_ids`` and ``sentence_ids``, writes ``sentence_keys``
    (... x K) and ``report_key`` (...).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "input_ids",
        sentence_ids_key: str = "sentence_ids",
        max_sentences: int = 16,
        sentence_keys_key: str = "sentence_keys",
        report_key_key: str = "report_key",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.hash = SentenceTextKeys(max_sentences)
        self.sentence_ids_key = sentence_ids_key
        self.output_keys = (sentence_keys_key, report_key_key)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            for out_key, value in zip(self.output_keys, self.hash(d[key], d[self.sentence_ids_key]), strict=True):
                d[out_key] = value
        return d
