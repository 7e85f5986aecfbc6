"""A rule-based chest X-ray report labeler: report text -> the 14 CheXpert labels (``radmi label``).

>>> label_report("FINDINGS: No pneumothorax but a small left effusion.")["Pleural Effusion"]
1.0

Output values follow MIMIC-CXR's ``mimic-cxr-2.0.0-chexpert.csv``: 1.0 positive, 0.0 negative, -1.0
uncertain, NaN (blank) not mentioned. "No Finding" is 1.0 when no finding other than Support Devices is
positive or uncertain, else blank, as in that file and in radmi's demo data.

How it works (details and the phrase tables' rules in ``docs/labeling.md``):

1. The report is cut into sections and sentences by :func:`radmi.data.reports.report_sentences` (findings
   + impression by default, else the last paragraph), lower-cased, hyphens read as spaces.
2. ONE combined regular expression (:mod:`radmi.data.labeler_phrases`, compiled once) finds every mention,
   normal statement and cue of the whole report in a single scan; Python then walks the few tokens found.
3. Cues act on a *chain* of mentions next to them in their clause: a negation or uncertainty cue acts on
   the first mention within ``FIRST_GAP`` characters, then on further mentions joined to it by a list
   (``", effusion, or consolidation"``). A chain stops at any other cue, at a clause boundary (``but``,
   ``however``, ``;``, ...), at a clausal mention (``"heart is enlarged"``) and at the sentence end.
4. A mention is uncertain if an uncertainty cue reaches it (or it carries a hedge word inside, "heart is
   possibly enlarged"), else negative if a negation cue reaches it, else positive. Normal statements
   ("heart size is normal") are negative. Weak mentions (indirect signs) count only when the sentence has
   no direct mention of that finding.
5. A report's value per finding is the strongest of its mentions: positive > uncertain > negative > blank.

Never logs report text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from radmi.data import labeler_phrases as P
from radmi.data.labels import CHEXPERT_LABELS, NEGATIVE, POSITIVE, UNCERTAIN
from radmi.data.reports import DEFAULT_FALLBACK, DEFAULT_SECTIONS, report_sentences, split_sentences
from radmi.errors import ManifestError, ReportError

try:  # the regex parser, used only to compute first-character tests (see _lookahead)
    from re import _constants as _C
    from re import _parser as _sre_parse
except ImportError:  # Python 3.10
    import sre_constants as _C  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = [
    "ALL_SECTIONS",
    "FIRST_GAP",
    "LIST_GAP",
    "Token",
    "label_report",
    "label_reports",
    "label_sentence",
    "read_csv_strings",
    "read_report_table",
    "report_tokens",
]

#: ``sections`` value meaning "label the whole text" (no sectioning, e.g. a bare impression in a CSV).
ALL_SECTIONS = ("all",)
#: Most characters between a cue and the first mention it acts on ("no radiographic evidence of acute ...").
FIRST_GAP = 60
#: Most characters between two mentions of one list in a cue's chain.
LIST_GAP = 40

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
_INDEX = {name: i for i, name in enumerate(CHEXPERT_LABELS)}
_NO_FINDING_INDEX = _INDEX[NO_FINDING]
# findings whose positive or uncertain value rules "No Finding" out (all but Support Devices)
_PATHOLOGY = np.array([name not in (NO_FINDING, SUPPORT_DEVICES) for name in CHEXPERT_LABELS])

# token kinds
MENTION, WEAK, NORMAL, BLOCKER = "mention", "weak", "normal", "blocker"
_FINDING_KINDS = frozenset({MENTION, WEAK, NORMAL})
_PRE = {"negative_pre": "neg", "uncertain_pre": "unc", "question_pre": "unc"}
_POST = {"negative_post": "neg", "uncertain_post": "unc", "question_post": "unc"}
_BOTH = {"uncertain_both": "unc"}
_LINK = "uncertain_link"
_NO_BOUNDARY_KINDS = frozenset({"question_pre", "question_post", "terminator_punct"})

# ranks for aggregation: a larger rank wins (positive > uncertain > negative > blank)
_RANK_VALUE = {0: np.nan, 1: NEGATIVE, 2: UNCERTAIN, 3: POSITIVE}
_RANK = {NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}

_HEDGE_INSIDE = re.compile(r"\b(?:possibly|probably|likely|borderline|questionabl[ey])\b")
_COPULA = re.compile(r"\b(?:is|are|was|were|remains?|appears?|seems?|looks?)\b")
_CONNECTOR = re.compile(r",|/|\b(?:and|or|nor)\b")
# what may sit between two listed mentions: separators, a connector and up to 4 modifier words, no verb
_LIST_FILLER = re.compile(r"(?:[ ,/]|\b(?!(?:is|are|was|were|has|have)\b)[a-z0-9]+\b){0,14}")
_HYPHENS = str.maketrans({"-": " ", "\u2010": " ", "\u2011": " ", "\u2013": " "})


# ---- the combined pattern ---------------------------------------------------------------------------------
def _alternation(phrases: Iterable[str]) -> str:
    # longest first, so that "no longer" is tried before "no" at the same position
    return "|".join(sorted(phrases, key=len, reverse=True))


def _first_chars(items: list) -> tuple[set[int] | None, bool]:
    """(characters a parsed regex can start with, whether it can match empty); None = any character."""
    chars: set[int] = set()
    for op, arg in items:
        if op is _C.LITERAL:
            return chars | {arg}, False
        if op is _C.IN:
            for kind, value in arg:
                if kind is _C.LITERAL:
                    chars.add(value)
                elif kind is _C.RANGE:
                    chars.update(range(value[0], value[1] + 1))
                else:
                    return None, False
            return chars, False
        if op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT):
            continue
        if op is _C.BRANCH:
            subs = [_first_chars(list(branch)) for branch in arg[1]]
        elif op is _C.SUBPATTERN:
            subs = [_first_chars(list(arg[-1]))]
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
            inner, empty = _first_chars(list(arg[2]))
            subs = [(inner, empty or arg[0] == 0)]
        else:
            return None, False
        if any(first is None for first, _ in subs):
            return None, False
        for first, _ in subs:
            chars |= first
        if not any(empty for _, empty in subs):
            return chars, False
    return chars, True


def _lookahead(body: str) -> str:
    """``(?=[...])`` of the characters ``body`` can start with ("" when unknown): a cheap first-character test.

    Python's regex engine tries every group at every word start; this test rejects most groups at once
    (about 5x faster scans).
    """
    try:
        chars, empty = _first_chars(list(_sre_parse.parse(body)))
    except Exception:  # a private parser API: without the speed-up, the pattern still works
        return ""
    if chars is None or empty:
        return ""
    return "(?=[" + "".join(re.escape(chr(c)) for c in sorted(chars)) + "])"


def _build_pattern() -> tuple[re.Pattern[str], dict[str, tuple[str, tuple[int, ...]]]]:
    """One regex with a named group per (kind, finding set); ``groups[name] = (kind, finding indices)``.

    Order of the groups = precedence at one position: blockers, cues, normal statements, mentions, weak
    mentions. Within a group the longest phrase is tried first. Word groups share one leading ``\\b``.
    """
    words: list[str] = []
    punctuation: list[str] = []
    groups: dict[str, tuple[str, tuple[int, ...]]] = {}

    def add(kind: str, findings: tuple[str, ...], phrases: Sequence[str]) -> None:
        name = f"g{len(groups)}"
        body = _alternation(phrases)
        if kind in _NO_BOUNDARY_KINDS:
            punctuation.append(f"(?P<{name}>{body})")
        else:
            words.append(f"{_lookahead(body)}(?P<{name}>(?:{body})\\b)")
        groups[name] = (kind, tuple(_INDEX[f] for f in findings))

    add(BLOCKER, (), P.BLOCKERS)
    for kind, phrases in P.CUES.items():
        add(kind, (), phrases)
    for table, kind in ((P.NORMALS, NORMAL), (P.MENTIONS, MENTION), (P.WEAK_MENTIONS, WEAK)):
        for findings, phrases in table.items():
            add(kind, findings, phrases)
    return re.compile("\\b(?:" + "|".join(words) + ")|" + "|".join(punctuation)), groups


_PATTERN, _GROUPS = _build_pattern()


class Token(NamedTuple):
    """One match of the combined pattern in a normalized report text.

    Attributes:
        start, end: character offsets in the normalized text.
        kind: ``mention``, ``weak``, ``normal``, ``blocker`` or a cue kind of ``labeler_phrases.CUES``.
        findings: indices into ``CHEXPERT_LABELS`` (empty for cues).
        sentence: the 0-based sentence the token is in.
    """

    start: int
    end: int
    kind: str
    findings: tuple[int, ...]
    sentence: int


def _normalize(sentences: Sequence[str]) -> str:
    """Sentences joined by newlines (the newline is a clause terminator), lower case, hyphens as spaces."""
    return "\n".join(sentences).lower().translate(_HYPHENS)


def report_tokens(text: str) -> list[Token]:
    """The tokens of an already normalized text (``"\\n"`` separates sentences), in order."""
    tokens, sentence = [], 0
    for match in _PATTERN.finditer(text):
        kind, findings = _GROUPS[match.lastgroup]
        if kind == BLOCKER:
            continue
        tokens.append(Token(match.start(), match.end(), kind, findings, sentence))
        if kind == "terminator_punct" and match.group() == "\n":
            sentence += 1
    return tokens


# ---- scopes -----------------------------------------------------------------------------------------------
def _clausal(text: str, token: Token) -> bool:
    """A mention with its own verb ("heart is enlarged"): it ends a list, so chains do not run through it."""
    return _COPULA.search(text, token.start, token.end) is not None


def _listed(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` joins two mentions of one list (", or focal", " and "), with no verb."""
    return (
        end - start <= LIST_GAP
        and _CONNECTOR.search(text, start, end) is not None
        and _LIST_FILLER.fullmatch(text, start, end) is not None
    )


def _chain(text: str, tokens: list[Token], index: int, step: int, limit: int | None) -> Iterable[int]:
    """Indices of the mentions a cue at ``tokens[index]`` reaches, walking by ``step`` (+1 or -1)."""
    cue = tokens[index]
    edge = cue.end if step > 0 else cue.start
    j, count = index + step, 0
    while 0 <= j < len(tokens) and tokens[j].kind in _FINDING_KINDS:
        token = tokens[j]
        near, far = (token.start, token.end) if step > 0 else (token.end, token.start)
        gap = (edge, near) if step > 0 else (near, edge)
        if count == 0:
            if gap[1] - gap[0] > FIRST_GAP:
                return
        elif not _listed(text, *gap) or _clausal(text, token):
            return
        yield j
        count += 1
        if (limit is not None and count >= limit) or _clausal(text, token):
            return
        edge, j = far, j + step


def _mention_ranks(text: str, tokens: list[Token]) -> list[tuple[int, int, int, int]]:
    """``(sentence, finding index, rank, weak)`` per finding of every finding token (rank as in ``_RANK``)."""
    negated: set[int] = set()
    hedged: set[int] = set()
    for i, token in enumerate(tokens):
        kind = token.kind
        if kind == _LINK:
            # "no opacity to suggest pneumonia", "no findings to suggest pneumonia": the link carries a
            # negation on; else it hedges ("opacity concerning for pneumonia")
            carries = i > 0 and ((i - 1) in negated or tokens[i - 1].kind == "negative_pre")
            (negated if carries else hedged).update(_chain(text, tokens, i, +1, None))
        elif kind in _PRE:
            (hedged if _PRE[kind] == "unc" else negated).update(_chain(text, tokens, i, +1, None))
        elif kind in _POST:
            reached = list(_chain(text, tokens, i, -1, None))
            if not reached:  # "resolved right lower lobe pneumonia": nothing before, so the next mention
                reached = list(_chain(text, tokens, i, +1, 1))
            (hedged if _POST[kind] == "unc" else negated).update(reached)
        elif kind in _BOTH:
            hedged.update(_chain(text, tokens, i, +1, 1))
            hedged.update(_chain(text, tokens, i, -1, 1))
    ranks = []
    for i, token in enumerate(tokens):
        if token.kind not in _FINDING_KINDS:
            continue
        if token.kind == NORMAL:
            rank = _RANK[NEGATIVE]
        elif i in hedged or _HEDGE_INSIDE.search(text, token.start, token.end):
            rank = _RANK[UNCERTAIN]
        elif i in negated:
            rank = _RANK[NEGATIVE]
        else:
            rank = _RANK[POSITIVE]
        weak = int(token.kind == WEAK)
        ranks.extend((token.sentence, finding, rank, weak) for finding in token.findings)
    return ranks


def _aggregate(ranks: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The 14 values from the mention ranks: weak mentions only where their sentence has no direct one."""
    direct = {(sentence, finding) for sentence, finding, _, weak in ranks if not weak}
    best = [0] * len(CHEXPERT_LABELS)
    for sentence, finding, rank, weak in ranks:
        if weak and (sentence, finding) in direct:
            continue
        best[finding] = max(best[finding], rank)
    values = np.array([_RANK_VALUE[rank] for rank in best], dtype=np.float64)
    # "No Finding": positive when no pathology is positive or uncertain (Support Devices do not count)
    found = (values[_PATHOLOGY] == POSITIVE) | (values[_PATHOLOGY] == UNCERTAIN)
    values[_NO_FINDING_INDEX] = np.nan if found.any() else POSITIVE
    return values


def _label_sentences(sentences: Sequence[str]) -> np.ndarray:
    text = _normalize(sentences)
    tokens = report_tokens(text)
    return _aggregate(_mention_ranks(text, tokens))


# ---- public API -------------------------------------------------------------------------------------------
def _sentences(text: str, sections: Sequence[str]) -> list[str]:
    if tuple(sections) == ALL_SECTIONS:
        return split_sentences(text)
    return report_sentences(text, sections, DEFAULT_FALLBACK)


def _check_text(text: object, row: int | None = None, path: str | PathLike | None = None) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ReportError("empty report", path=path, row=row)
    return text


def label_sentence(sentence: str) -> dict[str, float]:
    """The labels of one sentence on its own (no sectioning): the 14 CheXpert names -> 1.0/0.0/-1.0/NaN."""
    return dict(zip(CHEXPERT_LABELS, _label_sentences(split_sentences(sentence) or [sentence]).tolist(), strict=True))


def label_report(text: str, sections: Sequence[str] = DEFAULT_SECTIONS) -> dict[str, float]:
    """Label one report.

    Args:
        text: the report (MIMIC-CXR-style sections, or plain text).
        sections: the sections to read (default findings + impression, else the last paragraph, as the
            model sees the report); ``("all",)`` reads the whole text without sectioning.

    Returns:
        ``{CheXpert name: value}`` for the 14 labels: 1.0 positive, 0.0 negative, -1.0 uncertain, NaN not
        mentioned.

    Raises:
        ReportError: the text is empty (or not a string).
    """
    values = _label_sentences(_sentences(_check_text(text), sections))
    return dict(zip(CHEXPERT_LABELS, values.tolist(), strict=True))


def label_reports(
    reports: Iterable[str] | pd.Series,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    path: str | PathLike | None = None,
) -> pd.DataFrame:
    """Label many reports: one row per report (same index as a given Series), the 14 CheXpert columns.

    Args:
        reports: report texts (a Series keeps its index).
        sections: as in :func:`label_report`.
        path: the file the reports came from, named in errors.

    Raises:
        ReportError: naming the 0-based row (position) of the first empty report.
    """
    series = reports if isinstance(reports, pd.Series) else pd.Series(list(reports))
    sections = tuple(sections)
    rows = np.empty((len(series), len(CHEXPERT_LABELS)), dtype=np.float64)
    for position, text in enumerate(series.tolist()):
        rows[position] = _label_sentences(_sentences(_check_text(text, position, path), sections))
    return pd.DataFrame(rows, index=series.index, columns=list(CHEXPERT_LABELS))


# ---- reading report tables --------------------------------------------------------------------------------
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def read_csv_strings(path: str | PathLike, required: Sequence[str]) -> pd.DataFrame:
    """A CSV as strings (blank = ``""``), its ``required`` columns checked, non-UTF-8 cells named by row.

    Raises:
        ManifestError: the file is missing or unreadable, or lacks a required column.
        ReportError: a cell is not UTF-8 text (naming the 0-based data row and the column).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("file not found", path=path)
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="surrogateescape"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, EOFError) as err:
        raise ManifestError(f"not a readable CSV: {err}", path=path) from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(f"missing column(s) {missing} (columns: {list(frame.columns)})", path=path)
    for column in frame.columns:
        bad = frame[column].str.contains(_UNDECODABLE)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportError(f"column '{column}' is not UTF-8 text (re-save the file as UTF-8)", path=path, row=row)
    return frame


def read_report_table(
    path: str | PathLike, id_column: str = "study_id", report_column: str = "report"
) -> pd.Series:
    """The reports of a CSV as a Series (index: the ids as stripped strings), checked row by row.

    Raises:
        ManifestError: missing file or column, an empty or duplicate id (naming the 0-based data row).
        ReportError: an empty or non-UTF-8 report (naming the row).
    """
    frame = read_csv_strings(path, [id_column, report_column])
    ids = frame[id_column].str.strip()
    if (ids == "").any():
        raise ManifestError(f"empty {id_column}", path=path, row=int(np.flatnonzero((ids == "").to_numpy())[0]))
    duplicated = ids.duplicated()
    if duplicated.any():
        raise ManifestError(f"duplicate {id_column}", path=path, row=int(np.flatnonzero(duplicated.to_numpy())[0]))
    empty = frame[report_column].str.strip() == ""
    if empty.any():
        raise ReportError("empty report", path=path, row=int(np.flatnonzero(empty.to_numpy())[0]))
    return pd.Series(frame[report_column].to_numpy(), index=pd.Index(ids, name=id_column), name=report_column)
