"""The input side of one context, pure: text arriving in pieces, cut into segments.

A *context* is one utterance whose text streams in (``text`` messages), ended by
``close`` (or by ``tts.context_idle_s`` without text). ``StreamedText`` keeps its
state, its ``TextBuffer`` and its idle timer; every method takes the time as an
argument and returns the segments to speak now, in order. The session owns the audio
side (queueing, playing, replies); this class never sees a clock or a socket.

A segment may be empty: a ``flush`` with nothing buffered still needs its ``flushed``
reply, which must follow the audio of everything sent before it, so it travels in
order with the segments as one that carries only its ``flush_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._buffer import BufferPolicy, Cut, TextBuffer
from ._errors import ClientError, ErrorCode
from ._state import ContextState, check_context_transition

#: A context's whole text is kept (``char_*`` offsets and ``heard_text`` index it):
#: ~2 hours of speech at 15 characters per second, far beyond one agent's turn.
MAX_CONTEXT_CHARS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Segment:
    """Text of a context to synthesize as one utterance, in order.

    ``start`` is its offset in the context's text; ``flush_ids`` are the flushes whose
    ``flushed`` reply follows this segment's audio; ``released_at`` when the buffer let
    it go (time to first audio counts from there).
    """

    start: int
    text: str
    released_at: float
    flush_ids: tuple[str, ...] = ()
    #: The first segment of its context.
    first: bool = False

    @property
    def end(self) -> int:
        return self.start + len(self.text)


class StreamedText:
    """One context's text as it arrives (see the module docstring)."""

    def __init__(self, context_id: str, policy: BufferPolicy, *, idle_s: float, now: float) -> None:
        """``idle_s``: ``tts.context_idle_s`` (0: never idle)."""
        self.context_id = context_id
        self.state = ContextState.OPEN
        self.buffer = TextBuffer(policy)
        self._pieces: list[str] = []
        self._idle_s = idle_s
        self._last_text_at = now
        self._released = 0

    # --- views ---------------------------------------------------------------------
    @property
    def text(self) -> str:
        """Everything appended, as sent."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    @property
    def open(self) -> bool:
        return self.state is ContextState.OPEN

    @property
    def deadline(self) -> float | None:
        """When ``tick`` next has something to do (``None``: not before a message)."""
        if self.state is not ContextState.OPEN:
            return None
        deadlines = [self.buffer.deadline]
        if self._idle_s > 0:
            deadlines.append(self._last_text_at + self._idle_s)
        found = [d for d in deadlines if d is not None]
        return min(found) if found else None

    # --- messages ------------------------------------------------------------------
    def append(
        self, text: str, now: float, *, flush_id: str | None = None, flush: bool = False
    ) -> list[Segment]:
        """A ``text`` message (``flush`` when it said ``"flush": true``).

        Raises ``ClientError``: ``context_closed`` once the input ended,
        ``text_too_long`` past ``MAX_CONTEXT_CHARS`` in all.
        """
        self._check_open("text")
        if self.buffer.length + len(text) > MAX_CONTEXT_CHARS:
            raise ClientError(
                ErrorCode.TEXT_TOO_LONG,
                f"context {self.context_id} would hold more than {MAX_CONTEXT_CHARS} "
                "characters; close it and open another",
                request_id=self.context_id,
            )
        self._last_text_at = now
        if text:
            self._pieces.append(text)
        segments = self._segments(self.buffer.append(text, now), now)
        if flush:
            segments += self._flushed(flush_id, now)
        return segments

    def flush(self, flush_id: str | None, now: float) -> list[Segment]:
        """A ``flush``: everything buffered, then its ``flushed`` marker. Raises
        ``ClientError(context_closed)`` once the input ended (``close`` flushed it)."""
        self._check_open("flush")
        return self._flushed(flush_id, now)

    def close(self, now: float) -> list[Segment]:
        """A ``close``: everything buffered; no more text. Raises
        ``ClientError(context_closed)`` when already closed."""
        self._check_open("close")
        self.state = check_context_transition(self.state, ContextState.CLOSED)
        return self._segments(self.buffer.flush(), now)

    def keepalive(self, now: float) -> None:
        """Resets the idle timer (nothing else)."""
        self._last_text_at = now

    def tick(self, now: float) -> tuple[list[Segment], bool]:
        """What time releases at ``now``: ``max_delay_ms`` segments, or, once idle for
        ``idle_s``, the rest with the input closed (then the second value is True:
        the session reports ``context_idle``)."""
        if self.state is not ContextState.OPEN:
            return [], False
        if self._idle_s > 0 and now >= self._last_text_at + self._idle_s:
            return self.close(now), True
        return self._segments(self.buffer.due(now), now), False

    def end(self) -> None:
        """The context is over (finished, cancelled, dropped, failed); idempotent."""
        if self.state is not ContextState.ENDED:
            self.state = check_context_transition(self.state, ContextState.ENDED)

    # --- internals -----------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self.state is not ContextState.OPEN:
            ended = "has ended" if self.state is ContextState.ENDED else "was closed"
            raise ClientError(
                ErrorCode.CONTEXT_CLOSED,
                f"{what} for context {self.context_id}, whose input {ended}",
                request_id=self.context_id,
            )

    def _flushed(self, flush_id: str | None, now: float) -> list[Segment]:
        segments = self._segments(self.buffer.flush(), now)
        if flush_id is None:
            return segments
        if segments:
            last = segments[-1]
            segments[-1] = Segment(
                last.start, last.text, last.released_at, (*last.flush_ids, flush_id), last.first
            )
            return segments
        return [Segment(self.buffer.length, "", now, (flush_id,))]

    def _segments(self, cuts: list[Cut], now: float) -> list[Segment]:
        out = []
        for cut in cuts:
            out.append(Segment(cut.start, cut.text, now, first=self._released == 0))
            self._released += 1
        return out
