"""Hostile client input for the reliability tool, drawn from a seeded ``random.Random``.

The same families as the test suite's Hypothesis strategies (``tests/support/hostile_input.py``,
which the tools do not import): lone surrogates, escaped (valid UTF-8, refused by the
JSON rules) and raw (a text frame that is not UTF-8), NUL and other control characters,
noncharacters, integers of thousands of digits, NaN and Infinity, numbers beyond a
double, deep and unclosed nesting, duplicate keys, wrong types at every field of our
messages, over-long strings, truncated messages, garbage, and binary frames.

Values are built as JSON *text*, because ``json.dumps`` cannot write half of these. A
text frame is returned as a ``str`` (lone surrogates possible: ``_raw_websocket``
writes them as the bytes a careless encoder would), a binary frame or a body as
``bytes``. The same seed gives the same input.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Final

#: Strings that have broken servers, and the plausible values of our fields.
SPECIAL_STRINGS: Final = (
    "", " ", "\ud800", "\udfff", "\ud83d", "\ude00\ud83d", "\ud83d\ude00", "\x00", "a\x00b",
    "\x1b[31m", "\x7f\x85", "\uffff", "\ufdd0", "\U0010ffff", "\u2028", "\u200b", "\ufeff",
    "hıgh", "NaN", "Infinity", "user_request", "normal", "high", "critical", "es", "en",
    "wav", "mp3", "s-abc", "r-1", "r1\n", "%s%n", "../../etc/passwd", "<script>",
)
#: Numbers as JSON text: ordinary, huge, beyond a double, and what JSON forbids.
SPECIAL_NUMBERS: Final = (
    "0", "-0", "1", "-1", "0.5", "1E+2", "1e999", "-1e999", "NaN", "Infinity", "-Infinity",
    str(2**64), str(-(2**70)), "1.7976931348623157e309", "4.9e-325",
)
#: Our protocol's message types.
MESSAGE_TYPES: Final = ("connect", "synthesize", "interrupt")
CONFIG_KEYS: Final = (
    "language", "voice_id", "speaker", "format", "sample_rate", "chunk_size", "bitrate",
    "speed", "volume", "trim_silence", "realtime",
)
#: Plausible values (as JSON text) of each field a message or body may carry.
PLAUSIBLE: Final[dict[str, tuple[str, ...]]] = {
    "text": ('"Hello there."', '"Hola."', '" "', '"a\\u0000b"', json.dumps("x" * 6000)),
    "request_id": ('"r1"', '"r-2.3:x"', '"a b"', json.dumps("r" * 129)),
    "priority": ('"normal"', '"high"', '"critical"', '"HIGH"', '"urgent"'),
    "reason": ('"user_request"', '"stop"', json.dumps("x" * 200)),
    "session_id": ('"s-abc"', '"s-nope"', '"s x"'),
    "language": ('"en"', '"es"', '"en-US"', '"xx"'),
    "voice_id": ("0", "1", "-2", '"piper-en_US-joe-medium"'),
    "speaker": ('"default"', '"Zoë"'),
    "format": ('"wav"', '"mp3"', '"opus"', '"pcm"', '"mp4"'),
    "sample_rate": ("16000", "22050", "0", "100000"),
    "chunk_size": ("1024", "0", "100000"),
    "bitrate": ("64", "0", "400"),
    "speed": ("1.0", "0.5", "3", "-1"),
    "volume": ("1.0", "-1", "5"),
    "trim_silence": ("true", "false"),
    "realtime": ("true", "false"),
    "model": ('"tts-1"', '"gpt-4o-mini-tts"', '" "'),
    "input": ('"Hello."', '"Hi there. Bye."', '"a\\u0000b"', json.dumps("x" * 6000)),
    "voice": ('"alloy"', '"nova"', '"nope"', '{"id":"alloy"}'),
    "response_format": ('"mp3"', '"wav"', '"pcm"', '"opus"', '"mp4"'),
    "instructions": ('"calm"', '""'),
    "stream_format": ('"audio"', '"sse"', '"ws"'),
}
#: Fields of an OpenAI speech request; the first three are required.
SPEECH_FIELDS: Final = (
    "model", "input", "voice", "response_format", "speed", "instructions", "stream_format",
)
#: Deepest nesting drawn (the server refuses beyond 16 levels, without recursing).
MAX_DEPTH: Final = 5000
#: Longest string drawn, in characters: past the default ``max_message_bytes`` (64 KiB)
#: in UTF-8 when its characters take more than one byte.
MAX_STRING_CHARS: Final = 40_000


class HostileInput:
    """Draws hostile frames and bodies (module docstring)."""

    def __init__(self, seed: int, *, session_ids: Sequence[str] = ()) -> None:
        self.rng = random.Random(seed)
        #: Other clients' sessions: a ``connect`` to one must be refused, never granted.
        self.session_ids = list(session_ids)

    def _pick(self, *choices: tuple[int, Callable[[], str]]) -> str:
        """One of ``choices`` called, picked by weight."""
        functions = [f for _, f in choices]
        return self.rng.choices(functions, weights=[w for w, _ in choices])[0]()

    # -- values ---------------------------------------------------------------------------

    def string(self) -> str:
        """A JSON string literal; raw lone surrogates in about half of the non-ASCII
        ones (the rest escaped)."""
        rng = self.rng
        value = self._pick(
            (6, lambda: rng.choice(SPECIAL_STRINGS)),
            (3, lambda: "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(12)))),
            (1, lambda: rng.choice("a é€\U0001f600\x00\ud800[") * rng.randrange(100,
                                                                            MAX_STRING_CHARS)),
        )
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)

    def number(self) -> str:
        rng = self.rng
        return self._pick(
            (4, lambda: rng.choice(SPECIAL_NUMBERS)),
            (2, lambda: "9" * rng.randrange(20, 5000)),
            (1, lambda: "1." + "5" * rng.randrange(20, 400)),
            (2, lambda: repr(rng.uniform(-1e6, 1e6))),
        )

    def value(self, depth: int = 0) -> str:
        """Any JSON-ish value: atoms, and (above) arrays and objects of them, with a
        duplicate key now and then."""
        rng = self.rng
        if depth >= 3:
            return self._atom()
        return self._pick(
            (5, self._atom),
            (2, lambda: "[" + ",".join(self.value(depth + 1)
                                       for _ in range(rng.randrange(4))) + "]"),
            (2, lambda: self._object([(self.string(), self.value(depth + 1))
                                      for _ in range(rng.randrange(4))])),
        )

    def _atom(self) -> str:
        return self._pick(
            (1, lambda: self.rng.choice(("null", "true", "false"))),
            (2, self.number),
            (3, self.string),
        )

    def _object(self, pairs: list[tuple[str, str]]) -> str:
        if pairs and self.rng.random() < 0.1:
            pairs.append(self.rng.choice(pairs))  # a duplicate key
        self.rng.shuffle(pairs)
        return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"

    def field(self, name: str) -> str:
        """A field's value: plausible, a hostile string, or anything."""
        return self._pick(
            (4, lambda: self.rng.choice(PLAUSIBLE[name])),
            (3, self.string),
            (3, self.value),
        )

    def deep_nesting(self) -> str:
        opener, closer = self.rng.choice(
            [("[", "]"), ('{"a":', "}"), ("[{", "}]"), ('{"type":"interrupt","x":[', "]}")]
        )
        depth = self.rng.randrange(1, MAX_DEPTH)
        return opener * depth + ("1" + closer * depth if self.rng.random() < 0.5 else "")

    # -- frames and bodies ----------------------------------------------------------------

    def message(self) -> str:
        """A message of our protocol with plausible or hostile values at every field."""
        rng = self.rng
        kind = json.dumps(rng.choice(MESSAGE_TYPES)) if rng.random() < 0.85 else self._atom()
        names = rng.sample(["text", "request_id", "priority", "reason", "session_id"],
                           rng.randrange(4))
        pairs = [('"type"', kind), *((json.dumps(n), self.field(n)) for n in names)]
        if rng.random() < 0.4:
            pairs.append(('"config"', self.config()))
        if rng.random() < 0.3:
            pairs.append((self.string(), self.value()))
        return self._object(pairs)

    def config(self) -> str:
        if self.rng.random() < 0.2:
            return self.value()
        keys = self.rng.sample(CONFIG_KEYS, self.rng.randrange(4))
        return self._object([(json.dumps(k), self.field(k)) for k in keys])

    def ws_frame(self) -> str | bytes:
        """One client frame: text (``str``) or binary (``bytes``)."""
        rng = self.rng
        if rng.random() < 0.04:
            if rng.random() < 0.5:
                return rng.randbytes(rng.randrange(64))
            return self.message().encode("utf-8", "surrogatepass")

        def truncated() -> str:
            whole = self.message()
            return whole[: rng.randrange(len(whole) + 1)]

        def takeover() -> str:
            if not self.session_ids:
                return self.message()
            return json.dumps({"type": "connect", "session_id": rng.choice(self.session_ids)})

        return self._pick(
            (70, self.message),
            (8, self.value),
            (6, self.deep_nesting),
            (5, lambda: "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(200)))),
            (5, truncated),
            (2, takeover),
        )

    def http_body(self, route: str) -> bytes:
        """A body for ``route`` (``sessions``, ``interrupt`` or ``speech``): shaped like
        the route's with hostile fields, or hostile JSON, or bytes that are not UTF-8."""
        rng = self.rng
        if rng.random() < 2 / 3:
            if route == "sessions":
                text = self._object([('"config"', self.config())])
            elif route == "interrupt":
                text = self._object([('"reason"', self.field("reason"))])
            else:
                present = [n for i, n in enumerate(SPEECH_FIELDS)
                           if rng.random() < (0.9 if i < 3 else 0.4)]
                text = self._object([(json.dumps(n), self._speech_field(n)) for n in present])
        else:
            text = self._pick(
                (3, self.value),
                (1, self.deep_nesting),
                (1, lambda: rng.randbytes(rng.randrange(200)).decode("latin-1")),
            )
        if rng.random() < 0.1:
            return rng.randbytes(rng.randrange(1, 300))  # not UTF-8, most likely
        return text.encode("utf-8", "surrogatepass")

    def _speech_field(self, name: str) -> str:
        # Mostly plausible: a speech request is synthesized only if every field is.
        if self.rng.random() < 0.75:
            return self.rng.choice(PLAUSIBLE[name])
        return self.field(name)
