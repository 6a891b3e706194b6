"""The engine contract's shared parts: errors by blame, the speed check, the wrapper that
makes every stream failure an ``EngineError``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from streamer.engines.base import (
    MAX_SPEED,
    MIN_SPEED,
    EngineError,
    Pcm,
    UnknownLanguageError,
    UnknownSpeakerError,
    UnknownVoiceError,
    VoiceSelectionError,
    check_speed,
    engine_errors,
)
from streamer.protocol import ErrorCode


def _chunk() -> Pcm:
    return np.zeros(4, dtype=np.float32)


@pytest.mark.parametrize("speed", [MIN_SPEED, 1.0, MAX_SPEED])
def test_speed_in_range_passes(speed: float) -> None:
    assert check_speed(speed) == speed


@pytest.mark.parametrize("speed", [MIN_SPEED - 0.01, MAX_SPEED + 0.01, 0.0, float("nan")])
def test_speed_out_of_range_is_the_callers_bug(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        check_speed(speed)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownLanguageError("no voice for xx", ["es"]), ErrorCode.UNKNOWN_LANGUAGE),
        (UnknownVoiceError("unknown voice 'v'", ["a", "b"]), ErrorCode.UNKNOWN_VOICE),
        (UnknownSpeakerError("v", "dave", ["alice"]), ErrorCode.UNKNOWN_SPEAKER),
    ],
)
def test_selection_errors_carry_protocol_codes(error: VoiceSelectionError, code: ErrorCode) -> None:
    assert error.code is code
    rendered = error.to_json()
    assert rendered["code"] == code.value
    assert rendered["available"] == error.available
    assert not isinstance(error, EngineError)  # the client's fault, not ours


def test_unknown_speaker_names_voice_and_choices() -> None:
    error = UnknownSpeakerError("piper-x", "dave", [])
    assert "dave" in error.message and "piper-x" in error.message
    assert "single-speaker" in error.message
    assert error.available == []


def test_library_exception_becomes_engine_error_with_cause() -> None:
    def chunks() -> Iterator[Pcm]:
        yield _chunk()
        raise KeyError("inside the library")

    stream = engine_errors(chunks(), "fake voice")
    assert next(stream).size == 4
    with pytest.raises(EngineError, match="fake voice failed: KeyError") as caught:
        next(stream)
    assert isinstance(caught.value.__cause__, KeyError)


def test_engine_error_passes_through_unwrapped() -> None:
    original = EngineError("model file vanished")

    def chunks() -> Iterator[Pcm]:
        raise original
        yield _chunk()  # pragma: no cover - makes this a generator

    with pytest.raises(EngineError) as caught:
        next(engine_errors(chunks(), "fake voice"))
    assert caught.value is original


def test_closing_the_wrapper_closes_the_stream_at_once() -> None:
    closed: list[str] = []

    def chunks() -> Iterator[Pcm]:
        try:
            while True:
                yield _chunk()
        finally:
            closed.append("closed")

    stream = engine_errors(chunks(), "fake voice")
    next(stream)
    stream.close()
    assert closed == ["closed"]


def test_wrapper_never_runs_ahead() -> None:
    made: list[int] = []

    def chunks() -> Iterator[Pcm]:
        for index in range(3):
            made.append(index)
            yield _chunk()

    stream = engine_errors(chunks(), "fake voice")
    assert made == []  # nothing before the first next()
    next(stream)
    assert made == [0]
    assert len(list(stream)) == 2
