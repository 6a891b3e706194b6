"""Property-based tests of streamed-text contexts, pure: hostile context messages get a
typed message or a documented error, and whatever pieces and timings the text comes
in, the buffer's segments are the text, in order, each exactly where it says."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.protocol import (
    BufferPolicy,
    Cancel,
    ClientError,
    Close,
    Error,
    ErrorCode,
    Flush,
    Keepalive,
    ServerProtocol,
    StreamedText,
    Text,
    TextBuffer,
    render,
)
from tests.support.hostile_input import FUZZ, Pairs, hostile_strings, hostile_values, to_json

MAX_TEXT_LENGTH = 200
T = TypeVar("T")


def outcome(parse: Callable[[], T]) -> T | ClientError:
    """What ``parse`` returns, or the ``ClientError`` it raises."""
    try:
        return parse()
    except ClientError as error:
        return error

_fields = {
    "context_id": st.one_of(st.sampled_from(["c1", "c-2.3:x", "a b", "c" * 129, ""]),
                            hostile_values),
    "text": st.one_of(st.sampled_from(["Hel", " lo.", "", " ", "a\x00b", "x" * 201]),
                      hostile_values),
    "flush": st.one_of(st.booleans(), hostile_values),
    "flush_id": st.one_of(st.sampled_from(["f1", "", "f 1"]), hostile_values),
    "played_ms": st.one_of(st.integers(-5, 10**9), st.floats(), hostile_values),
    "priority": st.one_of(st.sampled_from(["high", "critical", "x"]), hostile_values),
    "buffer": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "mode": st.sampled_from(["auto", "none", "x"]),
                "max_delay_ms": st.one_of(st.integers(-10, 10**6), hostile_values),
                "max_chars": st.one_of(st.integers(-10, 10**4), hostile_values),
                "first_min_chars": st.integers(-10, 10**4),
            },
        ),
        hostile_values,
    ),
    "config": st.one_of(
        st.fixed_dictionaries({}, optional={"timestamps": st.sampled_from(["word", "x"])}),
        hostile_values,
    ),
}  # fmt: skip


@st.composite
def context_messages(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "flush", "close", "cancel", "keepalive", "interrupt"]))
    names = draw(st.lists(st.sampled_from(sorted(_fields)), unique=True, max_size=5))
    pairs: list[tuple[str, object]] = [("type", kind)]
    pairs += [(name, draw(_fields[name])) for name in names]
    if draw(st.booleans()):
        pairs.append((draw(hostile_strings), draw(hostile_values)))
    return to_json(Pairs(tuple(draw(st.permutations(pairs)))))


@FUZZ
@given(data=context_messages())
def test_any_context_message_is_typed_or_a_documented_error(data: str) -> None:
    proto = ServerProtocol(max_text_length=MAX_TEXT_LENGTH, max_message_bytes=4096)
    proto.receive('{"type":"connect"}')
    message = outcome(lambda: proto.receive(data))
    if isinstance(message, ClientError):
        error = message
        assert isinstance(error.code, ErrorCode)
        assert (error.close_code is None) == (error.code is not ErrorCode.MESSAGE_TOO_BIG)
        text = render(Error(error.code, error.message, error.request_id, error.details))
        text.encode("utf-8")
        return
    if isinstance(message, Text | Flush | Close | Cancel):
        context_id = message.context_id
        assert 0 < len(context_id) <= 128 and context_id.isascii() and context_id.isprintable()
    if isinstance(message, Text):
        assert len(message.text) <= MAX_TEXT_LENGTH
        assert "\x00" not in message.text
    if isinstance(message, Cancel) and message.played_ms is not None:
        assert 0 <= message.played_ms <= 86_400_000
    if isinstance(message, Keepalive):
        assert message.context_id is None or message.context_id.isprintable()


_pieces = st.lists(
    st.one_of(
        st.sampled_from(["Hello", " there", ",", ".", " Dr.", " 3", ".5", "\n", "  ", "!",
                         " e.g.", " U.S.", " —", "1,", "000", ":", "30", " a"]),
        st.text(max_size=12),
    ),
    max_size=60,
)  # fmt: skip


@FUZZ
@given(
    pieces=_pieces,
    gaps=st.lists(st.floats(0, 2), max_size=60),
    policy=st.builds(
        BufferPolicy,
        mode=st.sampled_from(["auto", "none"]),
        max_delay_ms=st.integers(0, 3000),
        first_min_chars=st.integers(0, 40),
        max_chars=st.integers(16, 120),
    ),
    flush_every=st.integers(0, 7),
)
def test_segments_are_the_text_in_order(
    pieces: list[str], gaps: list[float], policy: BufferPolicy, flush_every: int
) -> None:
    buffer = TextBuffer(policy)
    text, now, cuts = "", 0.0, []
    for index, piece in enumerate(pieces):
        now += gaps[index] if index < len(gaps) else 0.01
        cuts += buffer.due(now)
        deadline = buffer.deadline
        assert deadline is None or deadline > now  # nothing overdue is left
        text += piece
        cuts += buffer.append(piece, now)
        if flush_every and index % flush_every == 0:
            cuts += buffer.flush()
    cuts += buffer.flush()
    position = 0
    for cut in cuts:
        assert cut.text and cut.text == cut.text.strip()
        assert text[cut.start : cut.end] == cut.text  # exactly where it says
        assert cut.start >= position  # in order, never overlapping
        assert not text[position : cut.start].strip()  # only whitespace skipped
        position = cut.end
        if policy.mode == "auto" and cut is not cuts[-1]:
            assert len(cut.text) <= max(policy.max_chars, len(cut.text.split()[-1]))
    assert not text[position:].strip()  # everything was said
    assert buffer.pending.strip() == ""


@FUZZ
@given(pieces=_pieces, idle=st.floats(0.1, 5))
def test_a_context_accepts_nothing_after_close(pieces: list[str], idle: float) -> None:
    context = StreamedText("c1", BufferPolicy(), idle_s=idle, now=0.0)
    said: list[str] = []
    for piece in pieces:
        said += [s.text for s in context.append(piece, 0.0)]
    said += [s.text for s in context.close(0.0)]
    assert "".join("".join(said).split()) == "".join("".join(pieces).split())
    with pytest.raises(ClientError) as caught:
        context.append("more", 1.0)
    assert caught.value.code is ErrorCode.CONTEXT_CLOSED
    assert json.loads(render(Error(ErrorCode.CONTEXT_CLOSED, "m", "c1")))["code"]
