"""What the adapters ask of the server for a context (``streamer/adapters/_options.py``)."""

from __future__ import annotations

import pytest

from streamer.adapters._options import VoiceOptions, auth_headers, voice_id


@pytest.mark.parametrize(
    ("given", "sent"),
    [(None, None), (0, 0), ("2", 2), ("piper-en_US-joe-medium", "piper-en_US-joe-medium")],
)
def test_a_voice_is_an_index_or_an_id(given: int | str | None, sent: int | str | None) -> None:
    assert voice_id(given) == sent


def test_a_context_asks_for_pcm_at_the_frameworks_rate_with_word_timings() -> None:
    assert VoiceOptions().audio_options(16000) == {
        "format": "pcm",
        "sample_rate": 16000,
        "timestamps": "word",
    }
    assert VoiceOptions(voice="1", language="es-MX", speed=1.25).audio_options(24000) == {
        "format": "pcm",
        "sample_rate": 24000,
        "timestamps": "word",
        "voice_id": 1,
        "language": "es-MX",
        "speed": 1.25,
    }


def test_the_api_key_goes_in_the_authorization_header() -> None:
    assert auth_headers("k-1") == {"Authorization": "Bearer k-1"}
    assert auth_headers(None) == {} and auth_headers("") == {}
