"""Hypothesis strategies for hostile client input, shared by every surface's fuzz suite.

JSON-ish text, not just JSON: lone surrogates (escaped and raw), NUL and other control
characters, noncharacters, integers of thousands of digits, NaN and Infinity, deep and
unclosed nesting, duplicate keys, wrong types at every field of our messages, over-long
strings, truncated messages. ``json.dumps`` cannot write half of these, so values are
written by ``to_json`` below.

``TTS_FUZZ_EXAMPLES`` sets the examples per property (default ``DEFAULT_EXAMPLES``);
the ``tts-fuzz`` profile carries it with no deadline (CI machines are slow and shared:
a deadline would only add flakiness) and no example database (nothing written to the
tree).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Final, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Per property; the pure protocol suite's four properties take a few seconds with it.
DEFAULT_EXAMPLES: Final = 300
FUZZ_EXAMPLES: Final = int(os.environ.get("TTS_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))

settings.register_profile(
    "tts-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ: Final = settings.get_profile("tts-fuzz")
T = TypeVar("T")


@dataclass(frozen=True)
class Raw:
    """JSON text written as it is: numbers ``json.dumps`` refuses or rewrites."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """An object written from its pairs, so a key may appear twice."""

    pairs: tuple[tuple[str, object], ...]


def to_json(value: object, *, ascii_only: bool = True) -> str:
    """``value`` as JSON-ish text. ``ascii_only=False`` writes strings raw, lone
    surrogates included (a ``str`` can hold what no UTF-8 frame can)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, Pairs | dict):
        pairs = value.pairs if isinstance(value, Pairs) else tuple(value.items())
        inner = ",".join(
            f"{to_json(k, ascii_only=ascii_only)}:{to_json(v, ascii_only=ascii_only)}"
            for k, v in pairs
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v, ascii_only=ascii_only) for v in value) + "]"
    return json.dumps(value)  # None, bool, int, float (NaN and Infinity as such)


SPECIAL_STRINGS: Final = (
    "",
    " ",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\ude00\ud83d",
    "\ud83d\ude00",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\x7f\x85",
    "\uffff",
    "\ufdd0",
    "\U0010ffff",
    "\u2028",
    "\u200b",
    "\ufeff",
    "hıgh",
    "NaN",
    "Infinity",
    "user_request",
    "normal",
    "high",
    "critical",
    "es",
    "en",
    "wav",
    "mp3",
    "s-abc",
    "r-1",
    "r1\n",
)

#: Any code point, surrogates included (Hypothesis' default alphabet).
any_text: Final = st.text(max_size=40)
long_strings: Final = st.tuples(
    st.sampled_from(["a", " ", "é", "€", "\U0001f600", "\x00", "\ud800", "["]),
    st.integers(100, 20_000),
).map(lambda t: t[0] * t[1])
hostile_strings: Final = st.one_of(st.sampled_from(SPECIAL_STRINGS), any_text, long_strings)

hostile_numbers: Final = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and ±Infinity included, written as such
    st.integers(20, 5000).map(lambda n: Raw("9" * n)),
    st.integers(20, 400).map(lambda n: Raw("1." + "5" * n)),
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("-0"), Raw("1E+2"), Raw("0.5")]),
)

atoms: Final = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_strings)


def _objects(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    pairs = st.lists(st.tuples(hostile_strings, children), max_size=4)
    with_duplicate = pairs.filter(bool).map(lambda p: Pairs((*p, p[0])))
    return st.one_of(pairs.map(lambda p: Pairs(tuple(p))), with_duplicate)


hostile_values: Final = st.recursive(
    atoms,
    lambda children: st.one_of(st.lists(children, max_size=4), _objects(children)),
    max_leaves=8,
)

CONFIG_KEYS: Final = (
    "language",
    "voice_id",
    "speaker",
    "format",
    "sample_rate",
    "chunk_size",
    "bitrate",
    "speed",
    "volume",
    "trim_silence",
    "realtime",
)
_plausible_config: Final = {
    "language": st.sampled_from(["es", "en", "en-US", "xx"]),
    "voice_id": st.one_of(st.integers(-2, 5), st.sampled_from(["piper-en_US-joe-medium"])),
    "speaker": st.sampled_from(["default", "Zoë"]),
    "format": st.sampled_from(["wav", "mp3", "opus", "pcm", "mp4"]),
    "sample_rate": st.integers(0, 100_000),
    "chunk_size": st.integers(0, 100_000),
    "bitrate": st.integers(0, 400),
    "speed": st.floats(0, 3),
    "volume": st.floats(-1, 5),
    "trim_silence": st.booleans(),
    "realtime": st.booleans(),
}


@st.composite
def _weighted(draw: st.DrawFn, *choices: tuple[int, st.SearchStrategy[object]]) -> object:
    """A draw from one of ``choices`` picked by weight (``st.one_of`` flattens nested
    ``one_of``s, so it cannot weigh a plausible value against a family of hostile ones).
    The first choice is the one examples shrink towards."""
    pick = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
    for weight, strategy in choices:
        if pick < weight:
            return draw(strategy)
        pick -= weight
    raise AssertionError("unreachable")


def _field(plausible: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """A field's value: plausible, a hostile string (the likeliest wrong value), a
    wrong scalar, or any value at all."""
    return _weighted((4, plausible), (3, hostile_strings), (1, atoms), (2, hostile_values))


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``choices`` picked by weight (the first is what examples shrink towards)."""
    return _weighted(*choices)  # type: ignore[return-value]


def hostile_field(plausible: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """A field of some other surface's body (an HTTP route's): plausible most often,
    else hostile, as every field of our messages is drawn."""
    return _field(plausible)


config_values: Final = _weighted(
    (
        4,
        st.lists(
            _weighted(
                (
                    3,
                    st.sampled_from(CONFIG_KEYS).flatmap(
                        lambda key: st.tuples(st.just(key), _field(_plausible_config[key]))
                    ),
                ),
                (1, st.tuples(hostile_strings, hostile_values)),
            ),
            max_size=5,
        ).map(lambda pairs: Pairs(tuple(pairs))),  # type: ignore[arg-type]
    ),
    (1, hostile_values),
)

_message_fields: Final = {
    "text": _field(st.sampled_from(["Hola.", "hi", " ", "a\x00b", "x" * 200])),
    "request_id": _field(st.sampled_from(["r1", "r-2.3:x", "a b", "r" * 129])),
    "priority": _field(st.sampled_from(["normal", "high", "critical", "HIGH", "urgent"])),
    "reason": _field(st.sampled_from(["user_request", "stop", "x" * 200])),
    "session_id": _field(st.sampled_from(["s-abc", "s-nope", "s x"])),
    "config": config_values,
}


@st.composite
def messages(draw: st.DrawFn) -> Pairs:
    """A message of our protocol with plausible or hostile values at every field,
    sometimes an unknown or duplicated key."""
    kind = draw(_weighted((8, st.sampled_from(["connect", "synthesize", "interrupt"])), (1, atoms)))
    pairs: list[tuple[str, object]] = [("type", kind)]
    names = draw(st.lists(st.sampled_from(sorted(_message_fields)), unique=True, max_size=6))
    pairs += [(name, draw(_message_fields[name])) for name in names]
    if draw(st.booleans()):
        pairs.append((draw(hostile_strings), draw(hostile_values)))
    pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 9)) == 0:
        pairs.append(draw(st.sampled_from(pairs)))
    return Pairs(tuple(pairs))


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    opener = draw(st.sampled_from(["[", '{"a":', "[{", '{"type":"interrupt","x":[']))
    depth = draw(st.integers(1, 5000))
    closed = draw(st.booleans())
    closer = {"[": "]", '{"a":': "}", "[{": "}]", '{"type":"interrupt","x":[': "]}"}[opener]
    return opener * depth + ("1" + closer * depth if closed else "")


@st.composite
def hostile_texts(draw: st.DrawFn) -> str:
    """One client text frame's content (a ``str``: raw surrogates possible)."""
    ascii_only = draw(st.booleans())
    choice = draw(st.integers(0, 9))
    if choice <= 5:
        text = to_json(draw(messages()), ascii_only=ascii_only)
    elif choice == 6:
        text = to_json(draw(hostile_values), ascii_only=ascii_only)
    elif choice == 7:
        text = draw(deep_nesting())
    elif choice == 8:
        text = draw(st.text(max_size=200))
    else:  # a message cut short
        whole = to_json(draw(messages()), ascii_only=ascii_only)
        text = whole[: draw(st.integers(0, len(whole)))]
    return text


def as_bytes(text: str) -> bytes:
    """``text`` as it would be on the wire; lone surrogates as the bytes a careless
    encoder writes (not UTF-8)."""
    return text.encode("utf-8", "surrogatepass")


hostile_bytes: Final = st.one_of(hostile_texts().map(as_bytes), st.binary(max_size=300))
