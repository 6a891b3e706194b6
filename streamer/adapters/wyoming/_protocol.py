"""One Wyoming connection's protocol, sans-IO: events in, what to do out.

``WyomingProtocol.receive`` reads a client event and returns actions for the server
(answer ``describe``, speak a text, open a stream, feed it segments, end its input), or
raises ``WyomingError``. It keeps the connection's only state: whether a text stream is
open (``StreamState``, its moves in ``STREAM_TRANSITIONS``), that stream's
``StreamedText`` (the server's own text buffer, cutting streamed text into segments as
the WebSocket's contexts do), and how many requests are waiting or running. Time is
passed in; nothing here reads a clock or a socket.

The event flow (the ``wyoming`` package's README, "Text to Speech"):

- ``synthesize`` {text, voice?} → ``Speak``; the server answers ``audio-start``,
  ``audio-chunk``..., ``audio-stop``;
- ``synthesize-start`` {voice?} → ``OpenStream``; ``synthesize-chunk`` {text} →
  ``StreamSegments`` as the buffer cuts them; ``synthesize-stop`` → ``EndStream``; the
  server answers with one audio stream and then ``synthesize-stopped``;
- a ``synthesize`` inside a stream is the copy of the whole text that streaming clients
  send "for backwards compatibility" (Home Assistant sends it before
  ``synthesize-stop``): ignored. So is one right after ``synthesize-stop`` whose text is
  the stream's;
- ``describe`` → ``SendInfo``; ``ping`` → ``SendPong``; ``select-program`` naming our
  program is accepted (there is one).

Requests may be pipelined: each waits for the one before (answers come in order), up
to ``MAX_PENDING_REQUESTS`` per connection; the server calls ``request_done`` as each
ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from wyoming.event import Event
from wyoming.info import Describe, SelectProgram
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from ...protocol import (
    MAX_CONFIG_STRING_CHARS,
    BufferPolicy,
    ClientError,
    ErrorCode,
    Segment,
    StreamedText,
    parse_synthesis_text,
    quote,
)
from ._errors import WyomingCode, WyomingError

#: Requests (``synthesize`` or streams) a connection may have waiting or running. Home
#: Assistant sends one per connection; a few more allow pipelining, and a bound keeps a
#: client from queueing work without limit (one more gets ``queue_full``).
MAX_PENDING_REQUESTS: Final = 4
#: Text formats we speak: plain text (no engine here reads SSML).
TEXT_FORMATS: Final = frozenset({"text"})


class StreamState(Enum):
    """Whether a text stream's input is open on this connection."""

    #: No stream is taking text (none started, or the last one's input ended).
    IDLE = "idle"
    #: After ``synthesize-start``, before ``synthesize-stop`` (or the idle limit).
    OPEN = "open"


#: The legal moves of ``StreamState``: open on ``synthesize-start``, back to idle when
#: the input ends.
STREAM_TRANSITIONS: Final = {
    StreamState.IDLE: frozenset({StreamState.OPEN}),
    StreamState.OPEN: frozenset({StreamState.IDLE}),
}


@dataclass(frozen=True, slots=True)
class VoiceChoice:
    """The voice a request asked for: ``name`` (our voice id) wins over ``language``;
    all None means the server's default voice."""

    name: str | None = None
    language: str | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class SendInfo:
    """Answer ``describe`` with ``info``."""


@dataclass(frozen=True, slots=True)
class SendPong:
    """Answer ``ping`` with ``pong`` (the ping's text echoed)."""

    text: str | None


@dataclass(frozen=True, slots=True)
class Speak:
    """A one-shot ``synthesize``: speak ``text``, end with ``audio-stop``."""

    text: str
    voice: VoiceChoice


@dataclass(frozen=True, slots=True)
class OpenStream:
    """A ``synthesize-start``: a stream (number ``stream``) whose text follows in
    ``StreamSegments``; it ends with ``synthesize-stopped`` after ``EndStream``."""

    stream: int
    voice: VoiceChoice


@dataclass(frozen=True, slots=True)
class StreamSegments:
    """Segments of the stream's text to speak, in order."""

    stream: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class EndStream:
    """No more text for the stream (``synthesize-stop``, or the idle limit)."""

    stream: int


Action = SendInfo | SendPong | Speak | OpenStream | StreamSegments | EndStream


class WyomingProtocol:
    """One connection's protocol state (see the module docstring)."""

    def __init__(
        self,
        *,
        program: str,
        max_text_chars: int,
        idle_s: float,
        policy: BufferPolicy | None = None,
    ) -> None:
        """``program``: our program's name in ``info``; ``max_text_chars``: a
        ``synthesize`` (and a chunk) at most (``tts.max_text_length``); ``idle_s``: an
        open stream without text this long has its input ended
        (``tts.context_idle_s``, 0 = never)."""
        self.program = program
        self.state = StreamState.IDLE
        self.pending = 0
        self._max_text_chars = max_text_chars
        self._idle_s = idle_s
        self._policy = policy or BufferPolicy()
        self._streams = 0
        self._text: StreamedText | None = None
        #: The text of the stream that just ended: a ``synthesize`` next with this text
        #: is that stream's compatibility copy.
        self._compat_text: str | None = None

    @property
    def deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: not before an event)."""
        return self._text.deadline if self._text is not None else None

    def receive(self, event: Event, now: float) -> list[Action]:
        """The actions for ``event``; raises ``WyomingError`` (the connection goes on)."""
        compat_text, self._compat_text = self._compat_text, None
        kind = event.type
        try:
            if Synthesize.is_type(kind):
                return self._synthesize(event.data, compat_text)
            if SynthesizeStart.is_type(kind):
                return self._start(event.data, now)
            if SynthesizeChunk.is_type(kind):
                return self._chunk(event.data, now)
            if SynthesizeStop.is_type(kind):
                return self._stop(now)
            if Describe.is_type(kind):
                return [SendInfo()]
            if Ping.is_type(kind):
                text = event.data.get("text")
                return [SendPong(text if isinstance(text, str) else None)]
            if SelectProgram.is_type(kind):
                name = event.data.get("name")
                if name != self.program:
                    raise WyomingError(
                        WyomingCode.UNKNOWN_PROGRAM,
                        f"no program {quote(name)}; this server offers {self.program!r}",
                    )
                return []
        except ClientError as exc:  # the shared rules (text, buffer limits)
            raise WyomingError.from_client_error(exc) from None
        raise WyomingError(
            ErrorCode.UNKNOWN_TYPE,
            f"{quote(kind)} is not an event this text-to-speech server handles",
        )

    def tick(self, now: float) -> list[Action]:
        """What time releases at ``now``: stream segments held past the buffer's
        ``max_delay_ms``, or the end of a stream idle for ``idle_s``."""
        text = self._text
        if text is None:
            return []
        segments, idle = text.tick(now)
        actions: list[Action] = self._segments(segments)
        if idle:
            actions.append(self._end_input())
        return actions

    def finish(self, now: float) -> list[Action]:
        """The client will send nothing more (it closed its side): an open stream's
        input ends as if by ``synthesize-stop``, so what it sent is still spoken."""
        if self._text is None:
            return []
        self._compat_text = None
        return self._stop(now)

    def request_done(self) -> None:
        """A ``Speak`` or a stream has ended (answered, refused or failed)."""
        self.pending = max(0, self.pending - 1)

    # --- events --------------------------------------------------------------------
    def _synthesize(self, data: dict[str, Any], compat_text: str | None) -> list[Action]:
        if self.state is StreamState.OPEN:
            return []  # the stream's compatibility copy of its text
        text = parse_synthesis_text(data.get("text"), max_chars=self._max_text_chars)
        if compat_text is not None and text.split() == compat_text.split():
            return []
        voice = _voice(data)
        self._take_request()
        return [Speak(text, voice)]

    def _start(self, data: dict[str, Any], now: float) -> list[Action]:
        if self.state is StreamState.OPEN:
            raise WyomingError(
                WyomingCode.STREAM_OPEN,
                "synthesize-start while a stream is open; end it with synthesize-stop first",
            )
        voice = _voice(data)
        self._take_request()
        self._streams += 1
        self._move(StreamState.OPEN)
        self._text = StreamedText(
            f"stream {self._streams}", self._policy, idle_s=self._idle_s, now=now
        )
        return [OpenStream(self._streams, voice)]

    def _chunk(self, data: dict[str, Any], now: float) -> list[Action]:
        text = self._open_text("synthesize-chunk")
        value = data.get("text")
        if not isinstance(value, str):
            raise WyomingError(
                ErrorCode.INVALID_MESSAGE, "synthesize-chunk: 'text' must be a string"
            )
        if value.strip():
            # The shared cleaning (control characters become spaces) and length limit.
            value = parse_synthesis_text(value, max_chars=self._max_text_chars)
        return self._segments(text.append(value, now))

    def _stop(self, now: float) -> list[Action]:
        text = self._open_text("synthesize-stop")
        actions: list[Action] = self._segments(text.close(now))
        actions.append(self._end_input())
        return actions

    # --- internals -----------------------------------------------------------------
    def _open_text(self, what: str) -> StreamedText:
        if self._text is None:
            raise WyomingError(WyomingCode.NO_STREAM, f"{what} without synthesize-start")
        return self._text

    def _take_request(self) -> None:
        if self.pending >= MAX_PENDING_REQUESTS:
            raise WyomingError(
                ErrorCode.QUEUE_FULL,
                f"{MAX_PENDING_REQUESTS} requests are already waiting or running on this "
                "connection; wait for their answers",
            )
        self.pending += 1

    def _segments(self, segments: list[Segment]) -> list[Action]:
        if not segments:
            return []
        return [StreamSegments(self._streams, tuple(segments))]

    def _end_input(self) -> EndStream:
        text = self._text
        assert text is not None
        text.end()
        self._compat_text = text.text
        self._text = None
        self._move(StreamState.IDLE)
        return EndStream(self._streams)

    def _move(self, target: StreamState) -> None:
        if target not in STREAM_TRANSITIONS[self.state]:  # our bug, not the client's
            raise AssertionError(f"stream state {self.state.value} -> {target.value}")
        self.state = target


def _voice(data: dict[str, Any]) -> VoiceChoice:
    """The ``voice`` and ``text_format`` of a ``synthesize`` or ``synthesize-start``."""
    text_format = data.get("text_format")
    if text_format is not None and (
        not isinstance(text_format, str) or text_format not in TEXT_FORMATS
    ):
        raise WyomingError(
            WyomingCode.UNSUPPORTED_TEXT_FORMAT,
            f"text_format {quote(text_format)} is not supported; send plain text",
        )
    voice = data.get("voice")
    if voice is None:
        return VoiceChoice()
    if not isinstance(voice, dict):
        raise WyomingError(
            ErrorCode.INVALID_MESSAGE, f"'voice' must be an object, got {quote(voice)}"
        )
    fields = {key: voice.get(key) for key in ("name", "language", "speaker")}
    for key, value in fields.items():
        if value is not None and (
            not isinstance(value, str) or not 0 < len(value) <= MAX_CONFIG_STRING_CHARS
        ):
            raise WyomingError(
                ErrorCode.INVALID_CONFIG,
                f"voice.{key} must be a string of 1-{MAX_CONFIG_STRING_CHARS} characters, "
                f"got {quote(value)}",
            )
    return VoiceChoice(**fields)

