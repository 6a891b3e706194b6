"""Refusals by the shared rules in Wyoming's shape: ``error`` has text and code only."""

from __future__ import annotations

from streamer.adapters.wyoming import WyomingCode, WyomingError
from streamer.protocol import ClientError, ErrorCode


def test_busy_keeps_its_retry_hint_in_the_text() -> None:
    error = WyomingError.from_client_error(
        ClientError(ErrorCode.BUSY, "the server is overloaded", details={"retry_after_ms": 750})
    )
    assert error.code == "busy" and not error.fatal
    assert error.text == "the server is overloaded (retry after 750 ms)"


def test_an_unknown_voice_lists_what_is_available() -> None:
    error = WyomingError.from_client_error(
        ClientError(ErrorCode.UNKNOWN_VOICE, "unknown voice 'x'", details={"available": ["a", "b"]})
    )
    assert error.code == "unknown_voice"
    assert error.text == "unknown voice 'x'; available: a, b"


def test_text_that_quotes_a_lone_surrogate_still_encodes() -> None:
    error = WyomingError(WyomingCode.NO_STREAM, "got \ud800")
    assert error.text.encode("utf-8")


def test_codes_are_stable_strings() -> None:
    assert {c.value for c in WyomingCode} == {
        "no_stream", "stream_open", "unsupported_text_format", "unknown_program",
        "event_timeout", "idle_timeout", "too_many_connections",
    }  # fmt: skip
