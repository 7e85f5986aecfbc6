"""The sentence splitter as it was before issue 17 (quadratic in the length of a line), kept as the reference
the linear :func:`radmi.data.reports.split_sentences` must equal; ``benchmarks/bench_split_sentences.py`` times
it against the new one.
"""

from __future__ import annotations

import re

from radmi.data.reports import (
    _ABBREVIATIONS,
    _BLANK_LINES,
    _DOTTED,
    _DOTTED_CAN_END,
    _LIST_MARKER,
    _SPACES,
    _normalize_text,
)

_CANDIDATE = re.compile(r"[.!?]+[\"')\]]*(?=\s+)")


def unwrap_reference(text: str) -> str:
    paragraphs = []
    for block in _BLANK_LINES.split(text.strip("\n")):
        lines: list[str] = []
        for raw in block.split("\n"):
            line = _SPACES.sub(" ", raw).strip()
            if not line:
                continue
            if lines and not _LIST_MARKER.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _ends_sentence(chunk: str, following: str) -> bool:
    following = following.lstrip()
    if not following:
        return True
    if chunk.endswith(("!", "?")):
        return True
    starts_upper = following[0].isupper() or following[0].isdigit() or following.startswith(("___", '"', "("))
    words = chunk.rstrip(".\"')]").split()
    last = words[-1] if words else ""
    bare = last.lstrip("([\"'")
    if _DOTTED.fullmatch(bare):
        return bare.lower() in _DOTTED_CAN_END and starts_upper
    if bare.lower() in _ABBREVIATIONS:
        return False
    if bare.isdigit() and len(words) == 1:
        return False
    return starts_upper


def split_sentences_reference(text: str) -> list[str]:
    sentences: list[str] = []
    for line in unwrap_reference(_normalize_text(text)).split("\n"):
        line = line.strip()
        start = 0
        for match in _CANDIDATE.finditer(line):
            end = match.end()
            if _ends_sentence(line[start:end].strip(), line[end:]):
                sentences.append(line[start:end])
                start = end
        sentences.append(line[start:])
    cleaned = (_LIST_MARKER.sub("", s.strip(), count=1).strip() for s in sentences)
    return [s for s in cleaned if any(c.isalnum() for c in s)]
