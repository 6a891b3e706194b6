"""Word timing as the client sees it, and what a listener heard of it (pure).

Times are integer milliseconds from the first sample of a request or context; they keep
counting across a context's segments. ``char_start``/``char_end`` index the text as
the client sent it (Unicode code points, not UTF-16 units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: A word counts as heard once at least this share of it was played.
HEARD_FRACTION: Final = 0.5


@dataclass(frozen=True, slots=True)
class WordTimestamp:
    word: str
    start_ms: int
    end_ms: int
    char_start: int
    char_end: int

    def to_json(self) -> dict[str, object]:
        return {
            "word": self.word,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }


def heard_char_end(words: Sequence[WordTimestamp], played_ms: float) -> int:
    """Offset just past the last word heard after ``played_ms`` of playback (0: none).

    A word is heard when at least ``HEARD_FRACTION`` of it was played; words are in
    order, so the first one not heard ends the count.
    """
    end = 0
    for word in words:
        if word.start_ms + (word.end_ms - word.start_ms) * HEARD_FRACTION > played_ms:
            break
        end = word.char_end
    return end


@dataclass(frozen=True, slots=True)
class CharAlignment:
    """ElevenLabs' alignment shape: one entry per character of ``text[start:end]``."""

    chars: tuple[str, ...]
    char_start_ms: tuple[int, ...]
    char_dur_ms: tuple[int, ...]


def char_alignment(text: str, words: Sequence[WordTimestamp]) -> CharAlignment:
    """Every character from the first word's start to the last word's end, timed: a
    word's characters share its span evenly; characters between words (spaces,
    punctuation) share the gap between them."""
    chars: list[str] = []
    starts: list[int] = []
    durations: list[int] = []

    def spread(first: int, last: int, start_ms: float, end_ms: float) -> None:
        count = last - first
        if count <= 0:
            return
        step = max(0.0, end_ms - start_ms) / count
        for index in range(count):
            begin = round(start_ms + index * step)
            finish = round(start_ms + (index + 1) * step)
            chars.append(text[first + index])
            starts.append(begin)
            durations.append(finish - begin)

    previous: WordTimestamp | None = None
    for word in words:
        if previous is not None:
            spread(previous.char_end, word.char_start, previous.end_ms, word.start_ms)
        spread(word.char_start, word.char_end, word.start_ms, word.end_ms)
        previous = word
    return CharAlignment(tuple(chars), tuple(starts), tuple(durations))
