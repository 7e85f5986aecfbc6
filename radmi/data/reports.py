"""Radiology report text: MIMIC-CXR-style sectioning and sentence splitting.

``report_sentences`` is THE definition of "the sentences of a report" in radmi: the tokenizer transform, the
cache, the sentence-level losses and the grounding evaluation all use its output and its order.

Rules (following the layout described in ``docs/data.md``):

- Lines are unwrapped: the reports are hard-wrapped at 79 columns, so lines of one paragraph are joined with a
  single space. Blank lines separate paragraphs. A line that starts with a list marker (``1.``, ``2)``,
  ``-``) starts a new line of its own.
- Addenda come first and are separated from the original report by a line made only of underscores; their
  text is returned as ``addendum`` and the sections are parsed from the original report after the last such
  line.
- A section header is an upper-case name followed by a colon at the start of a line (``FINDINGS:``). Names
  are normalized: lower case, synonyms (``conclusion`` -> ``impression``, ``history`` -> ``indication``) and
  typos (``impresson``, ``findngs``) are mapped to one canonical name.
- ``last_paragraph`` is the report's final paragraph, filled only when there is neither a findings nor an
  impression section (as in the official MIMIC-CXR sectioning).
- De-identification placeholders (any run of three or more underscores) are kept and written as ``___``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence

#: The sections ``parse_report`` always returns (empty string when absent).
SECTIONS = ("findings", "impression", "comparison", "indication", "last_paragraph")
#: Default sections fed to the model, and the fallback used when they are all empty.
DEFAULT_SECTIONS = ("findings", "impression")
DEFAULT_FALLBACK = "last_paragraph"

# Canonical section names, and synonyms mapped onto them. Typos are caught by a close-match lookup below.
_CANONICAL = (
    "findings",
    "impression",
    "comparison",
    "indication",
    "technique",
    "examination",
    "recommendation",
    "addendum",
    "wet read",
    "notification",
    "final report",
)
_SYNONYMS = {
    "finding": "findings",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "impression and findings": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison studies": "comparison",
    "prior": "comparison",
    "prior studies": "comparison",
    "history": "indication",
    "clinical history": "indication",
    "clinical indication": "indication",
    "clinical information": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "indications": "indication",
    "techniques": "technique",
    "procedure": "technique",
    "exam": "examination",
    "study": "examination",
    "type of examination": "examination",
    "recommendations": "recommendation",
    "recommendation(s)": "recommendation",
    "addenda": "addendum",
}
# close-match threshold for typos: "impresson" ~ 0.95, "findngs" ~ 0.93, "indication" vs "notification" ~ 0.73
_TYPO_CUTOFF = 0.85

# a header: start of line, upper-case name (letters, spaces, ( ) / , & -), colon, then whitespace or end of line
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ()/,&-]*[A-Z)])[ \t]*:(?=\s|$)", re.MULTILINE)
_ADDENDUM_SEPARATOR = re.compile(r"^[ \t]*_{5,}[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"_{3,}")
_LIST_MARKER = re.compile(r"^(?:\d{1,2}[.)]|[-*\u2022])\s+")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_SPACES = re.compile(r"[ \t]+")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n[ \t]*$")

# words ending in "." that do not end a sentence (lower case, without the final period)
_ABBREVIATIONS = frozenset(
    {"dr", "drs", "mr", "mrs", "ms", "prof", "vs", "etc", "approx", "appr", "cf", "fig", "figs", "st", "sr",
     "jr", "incl", "resp", "min", "max", "ca", "al", "ie", "eg"}
)  # fmt: skip
# dotted abbreviations such as e.g. i.e. a.m. (the final period is the candidate boundary)
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]$")
# dotted abbreviations that may end a sentence when the next word is capitalized
_DOTTED_CAN_END = frozenset({"a.m", "p.m"})
# a candidate boundary: . ! or ? (with closing quotes/brackets), then whitespace
# (possessive, and never starting inside a run of . ! ?, so a long run is scanned once, not once per position)
_CANDIDATE = re.compile(r"(?<![.!?])[.!?]++[\"')\]]*+(?=\s)")


@functools.lru_cache(maxsize=4096)
def normalize_section_name(name: str) -> str:
    """Canonical section name: lower case, single spaces, synonyms and typos mapped (``"IMPRESSON"`` -> ``"impression"``)."""
    key = " ".join(name.lower().split())
    if key in _CANONICAL:
        return key
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    close = difflib.get_close_matches(key, list(_CANONICAL) + list(_SYNONYMS), n=1, cutoff=_TYPO_CUTOFF)
    if close:
        return _SYNONYMS.get(close[0], close[0])
    return key


def _is_known_name(name: str) -> bool:
    normalized = normalize_section_name(name)
    return normalized in _CANONICAL


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _normalize_text(text: str) -> str:
    return _PLACEHOLDER.sub("___", _normalize_newlines(text))


def unwrap(text: str) -> str:
    """Undo hard line wrapping: paragraphs (split at blank lines) become one line, joined by ``"\\n\\n"``.

    Inside a paragraph a line starting with a list marker (``1.``, ``2)``, ``-``) is kept on its own line.
    """
    paragraphs = []
    for block in _BLANK_LINES.split(text.strip("\n")):
        lines: list[list[str]] = []  # each output line as its parts, joined once (linear, not quadratic)
        for raw in block.split("\n"):
            line = _SPACES.sub(" ", raw).strip()
            if not line:
                continue
            if lines and not _LIST_MARKER.match(line):
                lines[-1].append(line)
            else:
                lines.append([line])
        if lines:
            paragraphs.append("\n".join(" ".join(parts) for parts in lines))
    return "\n\n".join(paragraphs)


def _split_addenda(text: str) -> tuple[str, str]:
    """(addenda text, original report text): the report is what follows the last line of underscores."""
    separators = list(_ADDENDUM_SEPARATOR.finditer(text))
    if not separators:
        return "", text
    last = separators[-1]
    addenda = _ADDENDUM_SEPARATOR.sub("\n\n", text[: last.start()])
    return addenda, text[last.end() :]


def _headers(body: str) -> list[re.Match]:
    """Header matches; an unknown upper-case name counts only after a blank line or at the start."""
    kept = []
    first = _first_non_space(body, 0)
    for match in _HEADER.finditer(body):
        if _is_known_name(match.group(1)):
            kept.append(match)
            continue
        # what precedes the match is only whitespace, or ends with a blank line (without copying it)
        if match.start() <= first or _ends_with_blank_line(body, match.start()):
            kept.append(match)
    return kept


def _ends_with_blank_line(body: str, pos: int) -> bool:
    """Whether ``body[:pos]`` ends with ``\\n[ \\t]*\\n[ \\t]*`` (``_PARAGRAPH_END``), scanning back only."""
    for _ in range(2):
        while pos > 0 and body[pos - 1] in " \t":
            pos -= 1
        if pos == 0 or body[pos - 1] != "\n":
            return False
        pos -= 1
    return True


def _last_paragraph(body: str) -> str:
    paragraphs = [p for p in unwrap(body).split("\n\n") if p.strip()]
    for paragraph in reversed(paragraphs):
        header = _HEADER.match(paragraph)
        text = paragraph[header.end() :].strip() if header else paragraph.strip()
        if text:
            return text
    return ""


def parse_report(text: str) -> dict[str, str]:
    """Split a MIMIC-CXR-style report into sections.

    Args:
        text: the whole report file content.

    Returns:
        ``{"findings", "impression", "comparison", "indication", "last_paragraph", "addendum"}`` always
        present (``""`` when absent), plus any other header found under its normalized name (``"technique"``,
        ``"examination"``, ...). Section text is unwrapped (paragraphs joined by ``"\\n\\n"``); repeated
        sections are concatenated in order.
    """
    # the addendum separator is a line of underscores: find it before placeholders are normalized
    addenda, body = (_normalize_text(part) for part in _split_addenda(_normalize_newlines(text)))
    sections: dict[str, list[str]] = {}
    headers = _headers(body)
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(body)
        content = unwrap(body[match.end() : end])
        if content:
            sections.setdefault(normalize_section_name(match.group(1)), []).append(content)
    result = {name: "" for name in SECTIONS}
    result["addendum"] = unwrap(_HEADER.sub("", addenda))  # the text, without its "ADDENDUM:" label
    for name, parts in sections.items():
        joined = "\n\n".join(parts)
        result[name] = f"{result[name]}\n\n{joined}".strip() if name == "addendum" else joined
    if not result["findings"] and not result["impression"]:
        result["last_paragraph"] = _last_paragraph(body)
    return result


#: Longest report text radmi reads, in characters (``radmi.transforms.text.LoadReport`` refuses longer files).
#: Real reports are a few KB; ``split_sentences`` is linear, so the cap only bounds memory and time per report.
MAX_REPORT_CHARS = 1_000_000

_NON_SPACE = re.compile(r"\S")
_CLOSERS = ".\"')]"


def _word_kind(last_word: str) -> str:
    """What the last word before a candidate boundary is: ``dotted``/``dotted_end`` (e.g. / a.m.), ``abbrev``
    (Dr, approx), ``digit`` or ``other``."""
    bare = last_word.lstrip("([\"'")
    if _DOTTED.fullmatch(bare):
        return "dotted_end" if bare.lower() in _DOTTED_CAN_END else "dotted"
    if bare.lower() in _ABBREVIATIONS:
        return "abbrev"
    if bare.isdigit():
        return "digit"
    return "other"


def _ends_sentence(kind: str, single_word: bool, ends_with_bang: bool, following: str) -> bool:
    """Whether the punctuation closes a sentence.

    Args:
        kind: :func:`_word_kind` of the chunk's last word (after stripping trailing ``.\"')]``).
        single_word: the chunk (from the previous boundary) is that one word.
        ends_with_bang: the chunk ends with ``!`` or ``?``.
        following: the first (up to 3) non-space characters after the punctuation; ``""`` at the end of line.
    """
    if not following:
        return True
    if ends_with_bang:
        return True
    starts_upper = following[0].isupper() or following[0].isdigit() or following.startswith(("___", '"', "("))
    if kind in ("dotted", "dotted_end"):  # e.g. i.e. a.m.
        return kind == "dotted_end" and starts_upper
    if kind == "abbrev":  # Dr. Smith, approx. 3 cm
        return False
    if kind == "digit" and single_word:  # a list number at the start of a line: "1. Small effusion."
        return False
    return starts_upper


def _strip_marker(sentence: str) -> str:
    return _LIST_MARKER.sub("", sentence.strip(), count=1).strip()


def _split_line(line: str, sentences: list[str]) -> None:
    """Append the sentences of one line to ``sentences``, in time linear in the line's length.

    Each candidate boundary looks only at its own last word (found by a backwards scan that stops at the
    previous whitespace, cached by where the word ends so pure-punctuation tokens do not rescan it) and at the
    first non-space characters after it: no slice of the rest of the line is ever copied.
    """
    start = 0
    chunk_start = _first_non_space(line, 0)  # first non-space character of the current chunk
    words: dict[int, tuple[int, str]] = {}  # word end -> (word start, kind): each word is scanned once
    for match in _CANDIDATE.finditer(line):
        end = match.end()
        # the chunk's last word, as chunk.rstrip('.\"\')]').split()[-1] would find it
        stop = end
        while stop > chunk_start and line[stop - 1] in _CLOSERS:
            stop -= 1
        while stop > chunk_start and line[stop - 1].isspace():
            stop -= 1
        if stop > chunk_start:
            if stop not in words:
                begin = stop
                while begin > chunk_start and not line[begin - 1].isspace():
                    begin -= 1
                words[stop] = (begin, _word_kind(line[begin:stop]))
            begin, kind = words[stop]
            single_word = begin == chunk_start
        else:
            kind, single_word = "other", False
        nxt = _NON_SPACE.search(line, end)
        following = line[nxt.start() : nxt.start() + 3] if nxt else ""
        if _ends_sentence(kind, single_word, line[end - 1] in "!?", following):
            sentences.append(line[start:end])
            start = end
            chunk_start = nxt.start() if nxt else len(line)
    sentences.append(line[start:])


def _first_non_space(line: str, pos: int) -> int:
    found = _NON_SPACE.search(line, pos)
    return found.start() if found else len(line)


def split_sentences(text: str) -> list[str]:
    """Split (already unwrapped or raw) text into sentences, in time linear in the text's length.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace and a capital letter, a digit or a
    placeholder, and always at a line break. It does not end after abbreviations (``e.g.``, ``i.e.``,
    ``Dr.``, ``approx.``), inside decimals (``2.5 cm``) or after list numbering (``1.``); list markers are
    removed from the sentence start. Sentences with no letter or digit (``"___."``) are dropped.
    """
    sentences: list[str] = []
    for line in unwrap(_normalize_text(text)).split("\n"):
        _split_line(line.strip(), sentences)
    cleaned = (_strip_marker(s) for s in sentences)
    return [s for s in cleaned if any(c.isalnum() for c in s)]


def select_sections(
    sections: dict[str, str], names: Sequence[str] = DEFAULT_SECTIONS, fallback: str | None = DEFAULT_FALLBACK
) -> str:
    """The text of the chosen sections (in the given order, joined by ``"\\n\\n"``), else of ``fallback``."""
    chosen = [sections.get(name, "") for name in names]
    text = "\n\n".join(part for part in chosen if part)
    if not text and fallback:
        text = sections.get(fallback, "")
    return text


def report_sentences(
    text: str, sections: Sequence[str] = DEFAULT_SECTIONS, fallback: str | None = DEFAULT_FALLBACK
) -> list[str]:
    """The sentences the model sees for one report, in order: findings, then impression (by default).

    When every chosen section is empty the ``fallback`` section (``last_paragraph`` by default) is used.
    This is the single definition of a report's sentence list in radmi.
    """
    return split_sentences(select_sections(parse_report(text), sections, fallback))
