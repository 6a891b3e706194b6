"""Voice ranking across quality tiers: neural, standard (SVOX Pico), engines too slow to
be a default here (Kokoro on a slow CPU), espeak-ng's fallback; over fake engines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from streamer.engines.base import Engine, EngineStatus, Pcm, SynthesisOptions, Voice
from streamer.engines.languages import language_name
from streamer.engines.registry import Tier, VoiceRegistry, tier


class Fake(Engine):
    def __init__(self, name: str, voices: Sequence[Voice], *, realtime: bool = True) -> None:
        self.name = name
        self.offered = list(voices)
        self.realtime = realtime

    def status(self) -> EngineStatus:
        reason = "" if self.realtime else "fake: slower than real time here"
        return EngineStatus(self.name, True, True, reason=reason, realtime=self.realtime)

    def load(self) -> None:
        pass

    def voices(self) -> Sequence[Voice]:
        return list(self.offered)

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        yield np.zeros(160, dtype=np.float32)


def _v(engine: str, voice_id: str, language: str, quality: str, neural: bool) -> Voice:
    return Voice(voice_id, engine, language, voice_id, 24000, quality, neural)


def _engines(*, kokoro_realtime: bool) -> list[Engine]:
    return [
        Fake(
            "kokoro",
            [
                _v("kokoro", "kokoro-ef_dora", "es", "medium", True),
                _v("kokoro", "kokoro-af_heart", "en-US", "high", True),
            ],
            realtime=kokoro_realtime,
        ),
        Fake("piper", [_v("piper", "piper-en_US-joe-medium", "en-US", "medium", True)]),
        Fake(
            "pico",
            [
                _v("pico", "pico-es-ES", "es-ES", "standard", False),
                _v("pico", "pico-en-US", "en-US", "standard", False),
            ],
        ),
        Fake(
            "espeak",
            [
                _v("espeak", "espeak-es", "es", "fallback", False),
                _v("espeak", "espeak-es-419", "es-419", "fallback", False),
            ],
        ),
    ]


def _ids(voices: Sequence[Voice]) -> list[str]:
    return [voice.id for voice in voices]


def test_fast_kokoro_ranks_first_then_pico_then_espeak() -> None:
    registry = VoiceRegistry(_engines(kokoro_realtime=True))
    assert _ids(registry.voices("es")) == [
        "kokoro-ef_dora",
        "pico-es-ES",
        "espeak-es",
        "espeak-es-419",
    ]
    assert registry.resolve("es", None).id == "kokoro-ef_dora"
    # Kokoro's "high" beats Piper's "medium" among real-time neural voices.
    assert _ids(registry.voices("en"))[:3] == [
        "kokoro-af_heart",
        "piper-en_US-joe-medium",
        "pico-en-US",
    ]


def test_slow_kokoro_is_offered_after_pico_before_espeak() -> None:
    registry = VoiceRegistry(_engines(kokoro_realtime=False))
    # Pico es-ES beats espeak's bare "es" although espeak is the closer tag: tier first.
    assert _ids(registry.voices("es")) == [
        "pico-es-ES",
        "kokoro-ef_dora",
        "espeak-es",
        "espeak-es-419",
    ]
    assert registry.resolve("es", 0).id == "pico-es-ES"
    assert registry.resolve("es", 1).id == "kokoro-ef_dora"
    assert registry.resolve(None, "kokoro-ef_dora").id == "kokoro-ef_dora"
    assert _ids(registry.voices("en")) == [
        "piper-en_US-joe-medium",
        "pico-en-US",
        "kokoro-af_heart",
    ]
    # Closeness still orders within a tier: es-MX prefers espeak's Latin American voice.
    assert _ids(registry.voices("es-MX"))[2:] == ["espeak-es-419", "espeak-es"]


def test_a_list_is_ordered_by_quality_and_marks_the_default() -> None:
    """On a CPU too slow for Kokoro the Spanish list still reads Kokoro, Pico, espeak-ng
    (quality), while the default, flagged, is Pico; each entry's index is the integer
    ``voice_id`` that selects it."""
    registry = VoiceRegistry(_engines(kokoro_realtime=False))
    listed = registry.listing("es")
    assert _ids([entry.voice for entry in listed]) == [
        "kokoro-ef_dora",
        "pico-es-ES",
        "espeak-es",
        "espeak-es-419",
    ]
    assert [entry.default for entry in listed] == [False, True, False, False]
    for entry in listed:
        assert entry.index is not None
        assert registry.resolve("es", entry.index) == entry.voice
    assert listed[1].to_json()["default"] is True and listed[0].to_json()["index"] == 1
    assert registry.listing("xx") == []


def test_a_list_of_every_language_flags_each_tags_default() -> None:
    registry = VoiceRegistry(_engines(kokoro_realtime=False))
    listed = registry.listing()
    assert {entry.voice.id for entry in listed} == {voice.id for voice in registry.voices()}
    defaults = {entry.voice.language: entry.voice.id for entry in listed if entry.default}
    # A voice is flagged when a request for its own tag gets it: "es" and "es-419"
    # requests get Pico's es-ES voice, so no voice tagged "es" or "es-419" is flagged.
    assert defaults == {"es-ES": "pico-es-ES", "en-US": "piper-en_US-joe-medium"}
    assert all(registry.resolve(tag, None).id == voice for tag, voice in defaults.items())
    assert all(entry.index is None for entry in listed)
    # Grouped by tag, best quality first within a tag: en-US reads Kokoro, Piper, Pico.
    english = [entry.voice.id for entry in listed if entry.voice.language == "en-US"]
    assert english == ["kokoro-af_heart", "piper-en_US-joe-medium", "pico-en-US"]


def test_preferred_engine_first_even_when_slow() -> None:
    registry = VoiceRegistry(_engines(kokoro_realtime=False), preferred_engine="kokoro")
    assert registry.resolve("es", None).id == "kokoro-ef_dora"
    assert _ids(registry.voices("es"))[1] == "pico-es-ES"


@pytest.mark.parametrize(
    ("quality", "neural", "realtime", "expected"),
    [
        ("high", True, True, Tier.NEURAL),
        ("standard", False, True, Tier.STANDARD),
        ("high", True, False, Tier.SLOW),
        ("standard", False, False, Tier.SLOW),
        ("fallback", False, True, Tier.FALLBACK),
        ("fallback", False, False, Tier.FALLBACK),
    ],
)
def test_tier(quality: str, neural: bool, realtime: bool, expected: Tier) -> None:
    assert tier(_v("x", "x-1", "es", quality, neural), realtime=realtime) is expected


def test_voice_json_and_status_json_carry_the_new_fields() -> None:
    voice = _v("pico", "pico-es-ES", "es-ES", "standard", False)
    assert voice.to_json()["language_name"] == "Spanish (Spain)"
    status = Fake("kokoro", [], realtime=False).status().to_json()
    assert status["realtime"] is False and "slower" in str(status["reason"])


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("es", "Spanish"),
        ("es-ES", "Spanish (Spain)"),
        ("es_419", "Spanish (Latin America)"),
        ("en-US", "English (United States)"),
        ("pt-BR", "Portuguese (Brazil)"),
        ("en-GB-x-rp", "English (United Kingdom)"),
        ("zh-Latn-pinyin", "Chinese"),
        ("xx-YY", "xx (YY)"),
        ("not a tag", "not a tag"),
    ],
)
def test_language_name(tag: str, name: str) -> None:
    assert language_name(tag) == name


def test_timed_stream_of_an_engine_without_timings_has_no_words() -> None:
    from streamer.engines.base import SynthesisOptions as Options
    from streamer.engines.timings import TimedEngine, timed_stream

    engine = Fake("espeak", [])
    voice = _v("espeak", "espeak-es", "es", "fallback", False)
    assert not isinstance(engine, TimedEngine)
    chunks = list(timed_stream(engine, voice, "Hola.", Options()))
    assert len(chunks) == 1 and chunks[0].words == () and chunks[0].pcm.size == 160
