"""Property-based fuzzing of the sans-IO protocol (issue #12).

Whatever a client sends, ``ServerProtocol.receive`` returns a typed message or raises a
``ClientError`` whose code is an ``ErrorCode`` member, and everything the server would
send back (the ``error`` event, an echoed reason or id) renders to text that encodes as
UTF-8. Examples per property: ``TTS_FUZZ_EXAMPLES`` (see tests/hostile_input.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from streamer.protocol import (
    MAX_REASON_CHARS,
    AudioEnd,
    AudioStart,
    ClientError,
    ClientMessage,
    CloseCode,
    Connect,
    Connected,
    ConnectionState,
    Error,
    ErrorCode,
    Interrupt,
    Interrupted,
    Queued,
    ServerEvent,
    ServerProtocol,
    Synthesize,
    parse_interrupt_reason,
    parse_json_object,
    render,
)
from tests.support.hostile_input import (
    FUZZ,
    hostile_bytes,
    hostile_strings,
    hostile_texts,
    hostile_values,
)

MAX_TEXT_LENGTH = 200
#: Small enough that the long strings of the strategies cross it.
MAX_MESSAGE_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
T = TypeVar("T")


def _no_constants(name: str) -> object:
    raise AssertionError(f"rendered {name}, which is not JSON")


def sent(event: ServerEvent) -> dict[str, object]:
    """What the writer would send: rendering never raises, the text encodes as UTF-8
    and is strict JSON."""
    text = render(event)
    text.encode("utf-8")
    out = json.loads(text, parse_constant=_no_constants)
    assert isinstance(out, dict)
    return out


def check_refusal(error: ClientError) -> None:
    assert isinstance(error.code, ErrorCode)
    # Only a message over the size limit asks for a close (1009); all else is an event.
    if error.code is ErrorCode.MESSAGE_TOO_BIG:
        assert error.close_code is CloseCode.MESSAGE_TOO_BIG
    else:
        assert error.close_code is None
    out = sent(Error(error.code, error.message, error.request_id, error.details))
    assert out["code"] == error.code.value


def check_message(message: ClientMessage) -> None:
    """Every field the server keeps or echoes is bounded, printable and UTF-8."""
    if isinstance(message, Synthesize):
        assert message.text.strip() and len(message.text) <= MAX_TEXT_LENGTH
        assert not _CONTROL.search(message.text)
        message.text.encode("utf-8")
        sent(Queued(message.request_id or "r", 0))
        sent(AudioStart(message.request_id or "r", "wav", 22050, 1, message.priority.label, "v"))
        sent(AudioEnd(message.request_id or "r", 0, 0, 0))
    elif isinstance(message, Interrupt):
        assert message.reason.isprintable() and len(message.reason) <= MAX_REASON_CHARS
        assert sent(Interrupted(None, message.reason))["reason"] == message.reason
    else:
        assert isinstance(message, Connect)
        if message.session_id is not None:
            assert message.session_id.isascii() and message.session_id.isprintable()
    config = message.config.to_json() if not isinstance(message, Interrupt) else {}
    for value in config.values():
        if isinstance(value, str):
            assert value.isprintable()
    sent(Connected("s-x", config))


def feed(proto: ServerProtocol, data: str | bytes) -> None:
    before = proto.state
    try:
        message = proto.receive(data)
    except ClientError as error:
        check_refusal(error)
        assert proto.state is before  # a refused message changes nothing
    else:
        check_message(message)


@FUZZ
@given(text=hostile_texts(), connected=st.booleans())
def test_any_text_frame_is_a_message_or_a_documented_error(text: str, connected: bool) -> None:
    proto = ServerProtocol(max_text_length=MAX_TEXT_LENGTH, max_message_bytes=MAX_MESSAGE_BYTES)
    if connected:
        proto.receive('{"type":"connect"}')
        assert proto.state is ConnectionState.READY
    feed(proto, text)


@FUZZ
@given(data=hostile_bytes)
def test_any_binary_frame_is_a_documented_error(data: bytes) -> None:
    proto = ServerProtocol(max_text_length=MAX_TEXT_LENGTH, max_message_bytes=MAX_MESSAGE_BYTES)
    feed(proto, data)


def outcome(parse: Callable[[], T]) -> T | ClientError:
    """What ``parse`` returns, or the ``ClientError`` it raises."""
    try:
        return parse()
    except ClientError as error:
        return error


@FUZZ
@given(body=hostile_bytes)
def test_any_http_body_is_an_object_or_a_documented_error(body: bytes) -> None:
    obj = outcome(lambda: parse_json_object(body, max_bytes=MAX_MESSAGE_BYTES))
    if isinstance(obj, ClientError):
        assert obj.code in {
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_MESSAGE,
            ErrorCode.MESSAGE_TOO_BIG,
        }
        obj.message.encode("utf-8")
        return
    # Whatever came through can be echoed: no surrogates anywhere.
    json.dumps(obj, ensure_ascii=False).encode("utf-8")
    if "reason" in obj:
        reason = outcome(lambda: parse_interrupt_reason(obj["reason"]))
        if isinstance(reason, ClientError):
            assert reason.code is ErrorCode.INVALID_MESSAGE
        else:
            sent(Interrupted("r", reason))


_details = st.dictionaries(
    hostile_strings,
    st.one_of(
        hostile_values,
        st.floats(),
        st.frozensets(st.integers(), max_size=3),
        st.integers(0, 5000).map(lambda n: 10**n),
        st.binary(max_size=8),
    ),
    max_size=4,
)


@FUZZ
@given(
    code=st.sampled_from(ErrorCode),
    message=hostile_strings,
    request_id=st.one_of(st.none(), hostile_strings),
    details=_details,
    reason=hostile_strings,
    dropped=st.lists(hostile_strings, max_size=3),
)
def test_any_event_renders_to_utf8_json(
    code: ErrorCode,
    message: str,
    request_id: str | None,
    details: dict[str, object],
    reason: str,
    dropped: list[str],
) -> None:
    """Even events built from raw hostile strings (not through ``ClientError``, which
    cleans them) and details JSON cannot carry render and encode."""
    out = sent(Error(code, message, request_id, details))
    assert out["type"] == "error" and out["code"] == code.value
    sent(Interrupted(request_id, reason, tuple(dropped)))
    sent(Connected(reason, dict(details)))
