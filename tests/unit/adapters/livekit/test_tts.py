"""The LiveKit plugin's pure parts (``streamer/adapters/livekit/_tts.py``): word timings
as ``TimedString``s, and our client's errors as LiveKit's."""

from __future__ import annotations

import pytest

pytest.importorskip("livekit.agents")

from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError

from streamer.adapters.livekit._tts import _api_errors, _Transcript
from streamer.client import ErrorEvent, TTSConnectionError, TTSServerError, TTSTimeoutError, Word


def test_timed_strings_add_up_to_the_text_as_sent() -> None:
    transcript = _Transcript()
    transcript.text = "Sure, I can"
    first = transcript.timed((Word("Sure", 20, 300, 0, 4),))
    transcript.text += " help."
    rest = transcript.timed((Word("I", 700, 800, 6, 7), Word("can", 850, 940, 8, 11)))
    rest += transcript.timed((Word("help", 990, 1200, 12, 16),))
    tail = transcript.rest(1.3)
    assert [str(t) for t in first + rest] == ["Sure", ", I", " can", " help"]
    assert tail == "." and tail.start_time == 1.3
    assert "".join([*first, *rest, tail]) == "Sure, I can help."
    assert [(t.start_time, t.end_time) for t in first + rest] == [
        (0.02, 0.3), (0.7, 0.8), (0.85, 0.94), (0.99, 1.2),
    ]  # fmt: skip
    assert transcript.rest(1.4) is None


def test_a_word_timed_twice_adds_no_text() -> None:
    transcript = _Transcript()
    transcript.text = "Hi there"
    transcript.timed((Word("there", 100, 300, 3, 8),))
    assert transcript.timed((Word("Hi", 0, 90, 0, 2),)) == [""]


@pytest.mark.parametrize(
    ("error", "expected", "retryable"),
    [
        (TTSTimeoutError("no answer"), APITimeoutError, True),
        (TTSConnectionError("connection_refused", "nothing there"), APIConnectionError, True),
        (TTSServerError(ErrorEvent("busy", "full", None)), APIStatusError, True),
        (TTSServerError(ErrorEvent("unknown_voice", "no such voice", None)), APIStatusError, False),
    ],
)
def test_client_errors_become_livekits(
    error: Exception, expected: type[Exception], retryable: bool
) -> None:
    with pytest.raises(expected) as caught, _api_errors():
        raise error
    assert caught.value.retryable is retryable  # type: ignore[attr-defined]
