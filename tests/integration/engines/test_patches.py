"""Our changes to third-party libraries (``streamer.engines.patches``): each applies to
the installed library, only once, and a version it was not made for is reported.

The tests against the installed library fail when it is upgraded: the fixes are then to
be re-checked (and their leaks re-measured, BENCHMARKS.md) before the pins move.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
import types
from types import SimpleNamespace

import pytest

from streamer.engines.base import SynthesisOptions
from streamer.engines.patches import PATCH_MARKER, marker_of
from streamer.engines.patches import melotts as melotts_patches
from streamer.engines.patches import piper_tts as piper_patches

# --- piper-tts ------------------------------------------------------------------------


def _fresh(text: str) -> list[tuple[str, str, bool]]:
    # Fresh tuples, as the C bridge builds them (not shared code constants).
    return [tuple([text + "1", ".", True]), tuple([text + "2", ",", False])]  # type: ignore[list-item]


def _leaking(text: str) -> list[tuple[str, str, bool]]:
    clauses = _fresh(text)
    for clause in clauses:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(clause))  # what 1.8.0 does
    return clauses


def _fake_bridge(calls: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        get_phonemes=_leaking,
        set_voice=calls.append,
        initialize=lambda path: calls.append("init"),
    )


def test_piper_patch_applies_to_the_installed_bridge() -> None:
    from piper import espeakbridge

    report = piper_patches.apply()
    assert report.version_matches, f"piper-tts {report.installed}: re-check the fixes"
    assert report.applied == (
        piper_patches.RELEASE_LEAKED_CLAUSES,
        piper_patches.SET_VOICE_ON_CHANGE,
    )
    assert marker_of(espeakbridge.get_phonemes) == piper_patches.RELEASE_LEAKED_CLAUSES
    assert marker_of(espeakbridge.set_voice) == piper_patches.SET_VOICE_ON_CHANGE
    assert marker_of(espeakbridge.initialize) == piper_patches.SET_VOICE_ON_CHANGE


def test_piper_patch_applied_twice_changes_nothing() -> None:
    from piper import espeakbridge

    first = piper_patches.apply()
    functions = (espeakbridge.get_phonemes, espeakbridge.set_voice, espeakbridge.initialize)
    assert piper_patches.apply() is first
    assert (espeakbridge.get_phonemes, espeakbridge.set_voice, espeakbridge.initialize) == (
        functions
    )
    # Patching the same bridge again directly does not wrap a wrapper either.
    piper_patches.patch_bridge(espeakbridge, piper_patches.WRITTEN_FOR)
    assert espeakbridge.get_phonemes is functions[0]
    assert espeakbridge.set_voice is functions[1]


def test_piper_patch_fixes_the_installed_bridge_leak() -> None:
    # piper-tts 1.8.0's bridge leaks a reference to every clause it returns; patched,
    # the result list alone owns each clause. (Synthesize first: the bridge may only be
    # called once piper has initialised espeak-ng.)
    from piper import espeakbridge

    from streamer.engines.piper import PiperEngine

    engine = PiperEngine(None, streaming="clause")
    list(engine.stream(engine.voices()[0], "Hello there.", SynthesisOptions()))
    clauses = espeakbridge.get_phonemes("Hello there, how are you? Fine.")
    assert len(clauses) == 3
    for clause in clauses:
        assert sys.getrefcount(clause) == 3  # the list, the loop variable, the argument


def test_piper_patch_on_another_version_is_reported_and_not_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    bridge = _fake_bridge(calls)
    with caplog.at_level(logging.WARNING, logger="streamer.engines.patches"):
        report = piper_patches.patch_bridge(bridge, "1.9.0")
    assert not report.version_matches
    assert report.installed == "1.9.0"
    assert report.applied == ()
    assert "1.9.0" in report.note and piper_patches.WRITTEN_FOR in report.note
    assert "1.9.0" in caplog.text
    assert bridge.get_phonemes is _leaking  # untouched
    assert marker_of(bridge.set_voice) is None


def test_piper_patch_needs_the_bridge_functions(caplog: pytest.LogCaptureFixture) -> None:
    bridge = SimpleNamespace(get_phonemes=_fresh)
    with caplog.at_level(logging.WARNING):
        report = piper_patches.patch_bridge(bridge, piper_patches.WRITTEN_FOR)
    assert report.applied == ()
    assert "set_voice" in report.note
    assert bridge.get_phonemes is _fresh


def test_leak_fix_releases_only_what_a_bridge_leaks() -> None:
    correct = SimpleNamespace(get_phonemes=_fresh)
    piper_patches.release_leaked_clauses(correct)
    for _ in range(2):
        for clause in correct.get_phonemes("x"):
            assert sys.getrefcount(clause) == 3  # left alone: not released twice

    leaky = SimpleNamespace(get_phonemes=_leaking)
    piper_patches.release_leaked_clauses(leaky)
    wrapped = leaky.get_phonemes
    piper_patches.release_leaked_clauses(leaky)
    assert leaky.get_phonemes is wrapped  # wrapped once only
    for _ in range(2):
        for clause in leaky.get_phonemes("x"):
            assert sys.getrefcount(clause) == 3


def test_set_voice_reaches_espeak_only_when_the_voice_changes() -> None:
    # espeak-ng keeps ~1.3 KB per set_voice call (piper-tts 1.8.0 calls it on every
    # phonemize): the wrapper passes a call through only for a new voice, and again
    # after initialize (which resets espeak-ng's voice).
    calls: list[str] = []
    bridge = _fake_bridge(calls)
    piper_patches.set_voice_only_on_change(bridge)
    wrapped = bridge.set_voice
    piper_patches.set_voice_only_on_change(bridge)
    assert bridge.set_voice is wrapped  # wrapped once only
    for voice in ("en-us", "en-us", "es", "es", "en-us"):
        bridge.set_voice(voice)
    bridge.initialize("data")
    bridge.set_voice("en-us")
    assert calls == ["en-us", "es", "en-us", "init", "en-us"]


# --- MeloTTS --------------------------------------------------------------------------


@pytest.mark.melo
def test_melo_patch_applies_to_the_installed_melo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline as the tests run (HF_HUB_OFFLINE given, as the melo fixture gives it),
    only the torchaudio stand-in is needed, and only while torchaudio cannot import."""
    if importlib.util.find_spec("melo") is None:
        pytest.skip("MeloTTS is not installed (make install-melo)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = melotts_patches.apply()
    assert report.version_matches, f"melo {report.installed}: re-check the stand-in"
    assert report.distribution == "melotts-krqnf"
    assert melotts_patches.HUB_OFFLINE not in report.applied  # the caller set it
    if isinstance(sys.modules.get("torchaudio"), melotts_patches.TorchaudioStandIn):
        assert report.applied == (melotts_patches.TORCHAUDIO_STAND_IN,)
    else:
        assert report.applied == ()  # a real torchaudio imports here
    assert melotts_patches.apply() is report  # once per process


def test_torchaudio_stand_in_replaces_only_a_broken_torchaudio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = types.ModuleType("torchaudio")
    monkeypatch.setitem(sys.modules, "torchaudio", real)
    assert not melotts_patches.stand_in_for_torchaudio()
    assert sys.modules["torchaudio"] is real

    # None in sys.modules makes the import fail, as a CUDA build's does here.
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    assert melotts_patches.stand_in_for_torchaudio()
    stand_in = sys.modules["torchaudio"]
    assert isinstance(stand_in, melotts_patches.TorchaudioStandIn)
    assert melotts_patches.stand_in_for_torchaudio()  # again: already in place
    assert sys.modules["torchaudio"] is stand_in
    with pytest.raises(ImportError, match="torchaudio is unavailable"):
        stand_in.load  # noqa: B018 - the attribute access is the test


def test_melo_patch_on_another_version_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing left to do (hub setting given, torchaudio importable), so only the
    # version decision shows.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
    with caplog.at_level(logging.WARNING, logger="streamer.engines.patches"):
        report = melotts_patches.patch("melotts", "0.2.0")
    assert not report.version_matches
    assert report.applied == ()
    assert "0.2.0" in report.note and melotts_patches.WRITTEN_FOR in report.note
    assert "0.2.0" in caplog.text


def test_melo_hub_switch_only_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "")  # unset for the code, restored afterwards
    monkeypatch.setattr(melotts_patches, "_hub_reachable", lambda: True)
    assert not melotts_patches.use_offline_hub_if_unreachable()
    monkeypatch.setattr(melotts_patches, "_hub_reachable", lambda: False)
    monkeypatch.delitem(sys.modules, "huggingface_hub", raising=False)
    assert melotts_patches.use_offline_hub_if_unreachable()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert not melotts_patches.use_offline_hub_if_unreachable()  # already set


def test_marker_names_the_fix() -> None:
    def replacement() -> None:
        pass

    assert marker_of(replacement) is None
    setattr(replacement, PATCH_MARKER, "some-fix")
    assert marker_of(replacement) == "some-fix"
