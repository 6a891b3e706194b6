"""Text segmentation for streaming: sentences, with the first clause on its own.

Engines synthesize one segment per inference call. Latency to first audio is the time
of the first call, so the first sentence is cut at its first clause boundary (comma,
semicolon, colon, dash) when that leaves a clause long enough to sound natural; later
sentences stay whole, because a whole sentence has better prosody and by then audio is
already playing.
"""

from __future__ import annotations

import re

#: A clause shorter than this (characters) sounds clipped on its own; keep it joined.
MIN_FIRST_CLAUSE_CHARS = 12
#: Sentences longer than this are cut at clause boundaries too, so no single inference
#: call (and so no interrupt wait) grows without bound on run-on text.
MAX_SEGMENT_CHARS = 300

# A sentence ends at . ! ? … (and their CJK / Spanish forms) followed by space or end.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:，；：—–])\s+")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, whitespace-normalised, empties dropped."""
    text = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _split_long(sentence: str) -> list[str]:
    if len(sentence) <= MAX_SEGMENT_CHARS:
        return [sentence]
    parts: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        if current and len(current) + 1 + len(clause) > MAX_SEGMENT_CHARS:
            parts.append(current)
            current = clause
        else:
            current = f"{current} {clause}" if current else clause
    if current:
        parts.append(current)
    # A clause with no boundary at all is cut at the last space before the limit.
    out: list[str] = []
    for part in parts:
        while len(part) > MAX_SEGMENT_CHARS:
            cut = part.rfind(" ", 0, MAX_SEGMENT_CHARS)
            cut = cut if cut > 0 else MAX_SEGMENT_CHARS
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        if part:
            out.append(part)
    return out


def split_for_streaming(text: str) -> list[str]:
    """Segments to synthesize in order: the first clause of the first sentence alone,
    then whole sentences (long ones cut at clause boundaries)."""
    segments: list[str] = []
    for index, sentence in enumerate(split_sentences(text)):
        if index == 0:
            pieces = _CLAUSE_END.split(sentence, maxsplit=1)
            if len(pieces) == 2 and len(pieces[0]) >= MIN_FIRST_CLAUSE_CHARS:
                segments.append(pieces[0])
                segments.extend(_split_long(pieces[1]))
                continue
        segments.extend(_split_long(sentence))
    return segments
