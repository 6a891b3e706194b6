"""When streamed text goes to the engine: the buffering policy of a context, pure.

An LLM sends its answer a token at a time. Each token spoken on its own would sound
like a word list; waiting for the whole answer would waste its head start. So a
context's text is held in a ``TextBuffer`` and cut into *segments*, each synthesized as
one utterance, at the first of (``auto`` mode):

1. a sentence end followed by more text: ``.``, ``!``, ``?`` or ``…`` (closing quotes
   or brackets may follow), then whitespace, then a character that is not. Waiting for
   that next character is what keeps "3.5" whole and lets an abbreviation ("Dr.",
   "e.g.", an initial "J.") be recognised and kept with what follows. A line break
   followed by more text ends a segment too (list items, paragraphs);
2. for the first segment only, a clause mark (``, ; : — –``) once the text up to it
   holds ``first_min_chars`` characters: that is what starts speech early. A mark at
   the very end of the buffer counts at once, unless a digit precedes it ("1,000" and
   "10:30" may go on), in which case the next character decides; a mark followed by
   anything but whitespace is inside a number or a word ("1990–2000") and never cuts,
   but an em dash always may ("I think—no");
3. ``max_chars`` unsent characters: cut at the last whitespace at or before the limit
   (at the limit when there is none), so no segment outgrows an inference unit;
4. ``max_delay_ms`` since the oldest unsent character (``due``): the text up to its
   last whitespace goes (a word still arriving waits for its own deadline, counted
   from its first character), or all of it when it is one word — a stalled stream
   still gets spoken;
5. ``flush`` and ``close``: everything.

``none`` mode sends each appended text as it came (the client did the cutting).
Segments are spans of the context's text without their surrounding whitespace; text
that is only whitespace never becomes a segment of its own. Time is passed in: nothing
here reads a clock, so every rule is testable as plain function calls.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, NamedTuple

from ._errors import ClientError, ErrorCode
from ._messages import BufferConfig

#: A clause shorter than this sounds clipped on its own (the engines' own first-clause
#: rule, ``streamer.engines.text.MIN_FIRST_CLAUSE_CHARS``, measured the same way).
DEFAULT_FIRST_MIN_CHARS: Final = 12
#: The engines' largest inference unit (``MAX_SEGMENT_CHARS``): a longer segment would
#: be cut again there, with worse prosody than a cut at a space we choose.
DEFAULT_MAX_CHARS: Final = 300
#: A stalled stream is spoken after this long without a boundary. At 30 tokens/s
#: (~120 characters/s) every sentence of our test corpus reaches its end in under
#: 1 s, so this fires only on a real stall (a tool call, a slow network), never mid
#: sentence on a healthy stream (scripts.agent_latency counts the cuts it makes).
DEFAULT_MAX_DELAY_MS: Final = 1000
#: Bounds a client may set: a segment must hold a word, and no inference unit may grow
#: without bound; a delay beyond a minute is a forgotten context, not a policy.
MIN_MAX_CHARS: Final = 16
MAX_MAX_CHARS: Final = 2000
MAX_FIRST_MIN_CHARS: Final = 1000
MAX_MAX_DELAY_MS: Final = 60_000
BUFFER_MODES: Final = ("auto", "none")

#: Abbreviations that end with a period but seldom end a sentence (lower case, without
#: the period). Dotted ones ("e.g.", "U.S.") and single letters are recognised by shape.
ABBREVIATIONS: Final = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "sra", "srta", "dra", "vs",
        "no", "nos", "fig", "approx", "ca", "cf", "inc", "ltd", "co", "mt", "gen", "col",
        "lt", "sgt", "capt", "rev", "hon", "ud", "uds", "av", "avda", "pág", "núm",
    }
)  # fmt: skip

# Sentence-final punctuation, closers, whitespace, then more text.
_SENTENCE_END: Final = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s+\S)")
_LINE_BREAK: Final = re.compile(r"\S[^\S\n]*(?=\n\s*\S)")
_CLAUSE_MARK: Final = re.compile(r"[,;:，；：—–]")
#: Marks that cut even with no space after them (an em dash joins clauses; an en dash
#: joins numbers, "1990–2000", so it is not one of them).
_DASHES: Final = frozenset("—")
_WORD_BEFORE: Final = re.compile(r"(\S+)$")


@dataclass(frozen=True, slots=True)
class BufferPolicy:
    """The rules of one context's buffer (see the module docstring)."""

    mode: str = "auto"
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    first_min_chars: int = DEFAULT_FIRST_MIN_CHARS
    max_chars: int = DEFAULT_MAX_CHARS

    @staticmethod
    def from_config(config: BufferConfig | None, context_id: str | None = None) -> BufferPolicy:
        """The policy a ``buffer`` object asks for, defaults filled in. Raises
        ``ClientError(invalid_config)`` for a value out of range."""
        if config is None:
            return BufferPolicy()

        def bounded(name: str, value: int | None, default: int, low: int, high: int) -> int:
            if value is None:
                return default
            if not low <= value <= high:
                raise ClientError(
                    ErrorCode.INVALID_CONFIG,
                    f"buffer.{name} must be {low}-{high}; got {value}",
                    request_id=context_id,
                )
            return value

        return BufferPolicy(
            mode=config.mode or "auto",
            max_delay_ms=bounded(
                "max_delay_ms", config.max_delay_ms, DEFAULT_MAX_DELAY_MS, 0, MAX_MAX_DELAY_MS
            ),
            first_min_chars=bounded(
                "first_min_chars",
                config.first_min_chars,
                DEFAULT_FIRST_MIN_CHARS,
                0,
                MAX_FIRST_MIN_CHARS,
            ),
            max_chars=bounded(
                "max_chars", config.max_chars, DEFAULT_MAX_CHARS, MIN_MAX_CHARS, MAX_MAX_CHARS
            ),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "max_delay_ms": self.max_delay_ms,
            "first_min_chars": self.first_min_chars,
            "max_chars": self.max_chars,
        }


class Cut(NamedTuple):
    """A segment: ``text`` starts at offset ``start`` of the context's text (whitespace
    stripped from both ends)."""

    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


#: How far back from a period the word before it is looked for.
_MAX_WORD_CHARS: Final = 64


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at ``text[dot]`` ends an abbreviation, not a sentence."""
    found = _WORD_BEFORE.search(text, max(0, dot - _MAX_WORD_CHARS), dot)
    if found is None:
        return False
    word = found.group(1).lstrip("\"'“‘«([¿¡").lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. R. R. Tolkien"
    if "." in word and all(part.isalpha() and len(part) <= 2 for part in word.split(".") if part):
        return True  # dotted: "e.g.", "U.S.", "a.m."
    return word in ABBREVIATIONS


def _sentence_cut(text: str) -> int | None:
    """End of the first sentence in ``text`` that more text follows."""
    for match in _SENTENCE_END.finditer(text):
        punctuation = match.group()
        if punctuation.rstrip("\"'”’»)]") == "." and _is_abbreviation(text, match.start()):
            continue
        return match.end()
    found = _LINE_BREAK.search(text)
    return found.end() if found else None


def _clause_cut(text: str, min_chars: int) -> int | None:
    """End of the first clause mark in ``text`` with ``min_chars`` before it."""
    for match in _CLAUSE_MARK.finditer(text):
        mark = match.start()
        if len(text[: mark + 1].strip()) < min_chars:
            continue
        after = text[mark + 1 : mark + 2]
        if match.group() in _DASHES or after.isspace():
            return mark + 1
        if not after and not text[mark - 1 : mark].isdigit():
            return mark + 1
    return None


def _space_cut(text: str, limit: int) -> int:
    """A cut in ``text[:limit]`` after its last whitespace (``limit`` when none)."""
    last = max(text.rfind(" ", 0, limit + 1), text.rfind("\n", 0, limit + 1))
    return last if last > 0 and text[:last].strip() else limit


class TextBuffer:
    """The unsent tail of one context's text and the rules that cut it (pure).

    ``append`` / ``flush`` / ``due`` return the segments to send now; ``deadline`` is
    when ``due`` will next have something to say (``None``: not before more text).
    Only the unsent tail is kept (bounded by ``max_chars`` in ``auto`` mode), so a long
    context costs no more per token than a short one.
    """

    def __init__(self, policy: BufferPolicy) -> None:
        self.policy = policy
        #: Characters appended so far.
        self.length = 0
        self._pending = ""
        self._first = True
        #: (end offset, time) of each append not wholly sent: when characters came.
        self._arrivals: deque[tuple[int, float]] = deque()

    @property
    def pending(self) -> str:
        """The text not sent yet."""
        return self._pending

    @property
    def oldest(self) -> float | None:
        """When the oldest unsent character other than whitespace arrived."""
        unsent = self._pending.lstrip()
        if not unsent:
            return None
        first = self.length - len(unsent)
        for end, at in self._arrivals:
            if end > first:
                return at
        return None  # unreachable: every unsent character came with an append

    @property
    def deadline(self) -> float | None:
        oldest = self.oldest
        if oldest is None or self.policy.mode != "auto" or not self.policy.max_delay_ms:
            return None
        return oldest + self.policy.max_delay_ms / 1000

    def append(self, text: str, now: float) -> list[Cut]:
        """Add ``text`` (exactly as sent); the segments it completes."""
        self._pending += text
        self.length += len(text)
        if text:
            self._arrivals.append((self.length, now))
        if self.policy.mode == "none":
            return self._take(len(self._pending))
        cuts: list[Cut] = []
        while True:
            end = self._find_cut()
            if end is None:
                return cuts
            cuts += self._take(end)

    def flush(self) -> list[Cut]:
        """Everything unsent (``flush`` and ``close``)."""
        return self._take(len(self._pending))

    def due(self, now: float) -> list[Cut]:
        """What ``max_delay_ms`` releases at ``now`` (nothing before ``deadline``);
        afterwards ``deadline`` is None or later than ``now``."""
        cuts: list[Cut] = []
        while (deadline := self.deadline) is not None and now >= deadline:
            # Up to the last whitespace: a word still arriving waits for its own
            # deadline (it may have passed too: then it goes on the next turn).
            cuts += self._take(_space_cut(self._pending, len(self._pending)))
        return cuts

    def _find_cut(self) -> int | None:
        text = self._pending
        found = [_sentence_cut(text)]
        if self._first:
            found.append(_clause_cut(text, self.policy.first_min_chars))
        if len(text) >= self.policy.max_chars:
            found.append(_space_cut(text, self.policy.max_chars))
        cuts = [c for c in found if c is not None]
        return min(cuts) if cuts else None

    def _take(self, end: int) -> list[Cut]:
        """Send ``pending[:end]`` as one segment (none if it is only whitespace)."""
        chunk = self._pending[:end]
        base = self.length - len(self._pending)
        self._pending = self._pending[end:]
        sent = self.length - len(self._pending)
        while self._arrivals and self._arrivals[0][0] <= sent:
            self._arrivals.popleft()
        text = chunk.strip()
        if not text:
            return []
        self._first = False
        return [Cut(base + len(chunk) - len(chunk.lstrip()), text)]
