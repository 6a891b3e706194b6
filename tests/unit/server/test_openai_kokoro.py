"""OpenAI's voice names map to distinct Kokoro voices when Kokoro is installed, and to
the round-robin over English voices for any name whose Kokoro voice is missing."""

from __future__ import annotations

from streamer.engines.base import Voice
from streamer.engines.kokoro import OPENAI_VOICES as KOKORO_OPENAI_VOICES
from streamer.server.http import OPENAI_VOICES, openai_voice_map
from tests.support.fake_engine import FakeEngine
from tests.support.services import make_config, make_services


def _kokoro(voice_id: str) -> Voice:
    return Voice(voice_id, "fake", "en-US", voice_id, 24000, "medium", True)


def test_every_openai_name_has_a_distinct_kokoro_voice() -> None:
    assert set(KOKORO_OPENAI_VOICES) == set(OPENAI_VOICES)
    assert len(set(KOKORO_OPENAI_VOICES.values())) == len(OPENAI_VOICES)
    assert KOKORO_OPENAI_VOICES["alloy"] == "kokoro-af_alloy"
    assert KOKORO_OPENAI_VOICES["nova"] == "kokoro-af_nova"
    assert KOKORO_OPENAI_VOICES["echo"] == "kokoro-am_echo"


def test_openai_names_map_to_kokoro_voices_when_installed() -> None:
    voices = [Voice("piper-joe", "fake", "en-US", "Joe", 22050, "medium", True)]
    voices += [_kokoro(voice_id) for voice_id in KOKORO_OPENAI_VOICES.values()]
    services = make_services(make_config(), [FakeEngine(voices=voices)])
    mapping = {m.name: m.voice.id for m in openai_voice_map(services)}
    assert mapping == KOKORO_OPENAI_VOICES


def test_a_missing_kokoro_voice_falls_back_to_the_round_robin() -> None:
    voices = [
        Voice("piper-joe", "fake", "en-US", "Joe", 22050, "medium", True),
        _kokoro("kokoro-af_alloy"),
    ]
    services = make_services(make_config(), [FakeEngine(voices=voices)])
    mapping = {m.name: m.voice.id for m in openai_voice_map(services)}
    assert mapping["alloy"] == "kokoro-af_alloy"
    assert mapping["ash"] in {"piper-joe", "kokoro-af_alloy"}
