"""The engine contract (``streamer/engines/base.py``), checked on every real engine.

Each engine's own module (``test_espeak.py``, ``test_pico.py``, ``test_kokoro.py``,
``test_piper.py``) keeps only what is that engine's: its voices and languages, its
chunking, its rate mapping, its install checks, its library's failure modes.
The engines come from ``conftest.py`` (skipped with their status's reason where they
cannot run). MeloTTS keeps its own checks in ``test_melo.py``: its test checkpoint has
random weights, so its audio is noise of no predictable length.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final

import numpy as np
import pytest

from streamer.engines.base import (
    MAX_SPEED,
    MIN_SPEED,
    Engine,
    EngineError,
    Pcm,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.timings import TimedEngine, words_of
from tests.support.engine_streams import (
    THREAD_TIMEOUT_S,
    synthesize_concurrently,
    voice_of,
    whole,
)

SPANISH: Final = "Hola, ¿cómo estás? El tren de alta velocidad sale de Madrid por la mañana."
#: Two segments still, for the engine whose every call is dear.
SPANISH_SHORT: Final = "Hola, ¿cómo estás? Buenos días."
ENGLISH: Final = "The quick brown fox jumps over the lazy dog."
#: Several sentences, so both of Piper's modes yield several chunks.
ENGLISH_LONG: Final = (
    "Good morning, and welcome to the streaming test. "
    "This second sentence is a little longer than the first one. "
    "And here is a third."
)
#: Quality labels ``Voice.quality`` may carry: neural, then ``standard`` and ``fallback``.
NEURAL_QUALITIES: Final = frozenset({"high", "medium", "low", "x_low"})
#: A BCP-47 tag as voices carry them (``es``, ``es-419``, ``en-US``, ``ca-x-balear``).
BCP47: Final = re.compile(r"[a-z]{2,8}(-[A-Za-z0-9]{1,8})*")
#: How much slower the slowest speed must be than speed 1.0: about twice as long, less
#: the pauses, which stretch less.
MIN_SLOW_RATIO: Final = 1.3


def _same_samples(result: Pcm, expected: Pcm) -> None:
    np.testing.assert_array_equal(result, expected)


def _same_length_and_level(result: Pcm, expected: Pcm) -> None:
    assert result.size == expected.size
    level = float(np.sqrt(np.mean(result**2)))
    assert level == pytest.approx(float(np.sqrt(np.mean(expected**2))), rel=0.1)


def _about_as_long(rel: float) -> Callable[[Pcm, Pcm], None]:
    def check(result: Pcm, expected: Pcm) -> None:
        assert result.size == pytest.approx(expected.size, rel=rel)
        assert np.isfinite(result).all()

    return check


@dataclass(frozen=True)
class EngineCase:
    """One real engine as these tests drive it."""

    #: The ``conftest.py`` fixture that loads it.
    fixture: str
    voice_id: str
    #: Several segments in the voice's language.
    text: str
    #: How long ``text`` lasts at speed 1.0, in seconds: real speech, not a beep or a
    #: truncated segment.
    seconds: tuple[float, float]
    #: Another voice (or the same) and text, synthesized alongside ``text``.
    other: tuple[str, str]
    #: Whether its word times are estimates (``WordTiming.estimated``).
    words_estimated: bool
    #: How alike two syntheses of one text are (run to run, in threads, with timings).
    alike: Callable[[Pcm, Pcm], None]
    #: Speed ``MAX_SPEED``'s duration is below this fraction of speed 1.0's.
    fast_ratio: float = 0.8
    #: Rounds of synthesis per thread in the concurrency test, so that segments
    #: interleave; one suffices where a segment takes long (neural models).
    rounds: int = 3


CASES: Final = [
    pytest.param(
        EngineCase(
            "espeak_engine",
            "espeak-es",
            SPANISH,
            (2.5, 9.0),
            ("espeak-en-US", ENGLISH),
            words_estimated=False,
            # espeak-ng is not bit-exact from run to run (lengths vary by ~0.2 %).
            alike=_about_as_long(0.02),
            fast_ratio=0.7,
        ),
        id="espeak",
    ),
    pytest.param(
        EngineCase(
            "pico_engine",
            "pico-es-ES",
            SPANISH,
            (2.5, 10.0),
            ("pico-en-US", ENGLISH),
            words_estimated=True,
            # Pico's timing is deterministic, its excitation phases are not (samples
            # differ from run to run): another instance's state would show as another
            # length or level.
            alike=_same_length_and_level,
        ),
        id="pico",
    ),
    pytest.param(
        EngineCase(
            "kokoro_engine",
            "kokoro-ef_dora",
            SPANISH_SHORT,
            (0.8, 4.0),
            ("kokoro-af_heart", ENGLISH),
            words_estimated=False,
            alike=_same_samples,
            rounds=1,
        ),
        id="kokoro",
        marks=pytest.mark.slow,
    ),
    *(
        pytest.param(
            EngineCase(
                f"piper_{mode}_engine",
                "piper-en_US-joe-medium",
                ENGLISH_LONG,
                (4.0, 20.0),
                ("piper-en_US-joe-medium", ENGLISH),
                # Windowed mode times words by the model's durations; clause mode
                # estimates them.
                words_estimated=mode == "clause",
                # Durations are sampled (noise_w): ±5 % from run to run, measured.
                alike=_about_as_long(0.2),
                # And pauses do not halve: over 12 runs each the ratio at speed 2 was
                # 0.64 on average, 0.67 at worst; 0.8 still means "clearly shorter".
                fast_ratio=0.8,
                rounds=1,
            ),
            id=f"piper-{mode}",
            marks=pytest.mark.slow,
        )
        for mode in ("clause", "windowed")
    ),
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> EngineCase:
    param: EngineCase = request.param
    return param


@pytest.fixture
def engine(case: EngineCase, request: pytest.FixtureRequest) -> Engine:
    loaded: Engine = request.getfixturevalue(case.fixture)
    return loaded


@pytest.fixture
def voice(engine: Engine, case: EngineCase) -> Voice:
    return voice_of(engine, case.voice_id)


def _seconds(chunks: list[Pcm], voice: Voice) -> float:
    return sum(chunk.size for chunk in chunks) / voice.sample_rate


def test_status_after_load(engine: Engine) -> None:
    status = engine.status()
    assert status.available
    assert status.loaded
    assert status.name == engine.name
    assert status.device == "cpu"
    engine.load()  # idempotent
    assert engine.status().loaded


def test_voices_carry_the_voice_fields(engine: Engine, case: EngineCase) -> None:
    voices = engine.voices()
    assert case.voice_id in {voice.id for voice in voices}
    assert len({voice.id for voice in voices}) == len(voices)
    for voice in voices:
        assert voice.engine == engine.name
        assert voice.id.startswith(f"{engine.name}-")
        assert BCP47.fullmatch(voice.language), voice.language
        assert voice.name
        assert 8000 <= voice.sample_rate <= 48000
        assert voice.neural == (voice.quality in NEURAL_QUALITIES)
        assert voice.neural or voice.quality in ("standard", "fallback")
        assert all(isinstance(speaker, str) and speaker for speaker in voice.speakers)
        assert len(set(voice.speakers)) == len(voice.speakers)


def test_stream_is_float32_mono_speech_at_the_voices_rate(
    engine: Engine, case: EngineCase, voice: Voice
) -> None:
    chunks = list(engine.stream(voice, case.text, SynthesisOptions()))
    assert chunks
    for chunk in chunks:
        assert isinstance(chunk, np.ndarray)
        assert chunk.dtype == np.float32
        assert chunk.ndim == 1
        assert chunk.size > 0
        assert np.isfinite(chunk).all()
        assert np.abs(chunk).max() <= 1.0
    low, high = case.seconds
    assert low < _seconds(chunks, voice) < high
    audio = np.concatenate(chunks)
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # speech, not silence


def test_speed_changes_duration(engine: Engine, case: EngineCase, voice: Voice) -> None:
    def samples(speed: float) -> int:
        return whole(engine.stream(voice, case.text, SynthesisOptions(speed=speed))).size

    normal = samples(1.0)
    assert samples(MAX_SPEED) < case.fast_ratio * normal
    assert samples(MIN_SPEED) > MIN_SLOW_RATIO * normal


def test_invalid_requests_raise_at_call(engine: Engine, voice: Voice) -> None:
    # Raised by the call itself, before any inference: nothing is iterated here.
    for speed in (MIN_SPEED / 2, MAX_SPEED * 1.5):
        with pytest.raises(ValueError, match="speed"):
            engine.stream(voice, "Hola.", SynthesisOptions(speed=speed))
    with pytest.raises(UnknownSpeakerError) as speaker:
        engine.stream(voice, "Hola.", SynthesisOptions(speaker="nobody"))
    assert speaker.value.voice_id == voice.id
    assert speaker.value.available == list(voice.speakers)
    stranger = Voice(
        f"{engine.name}-nobody", engine.name, "xx", "x", voice.sample_rate, voice.quality, False
    )
    with pytest.raises(UnknownVoiceError) as unknown:
        engine.stream(stranger, "Hola.", SynthesisOptions())
    assert voice.id in unknown.value.available


def test_warm_up_and_nothing_speakable(engine: Engine, voice: Voice) -> None:
    engine.warm_up(voice)
    assert list(engine.stream(voice, "", SynthesisOptions())) == []
    # Punctuation alone: nothing, or a pause, but never an empty chunk.
    for text in ("...", "... !!"):
        assert all(chunk.size > 0 for chunk in engine.stream(voice, text, SynthesisOptions()))


def test_close_midway_holds_nothing_and_stops(
    engine: Engine, case: EngineCase, voice: Voice
) -> None:
    stream = engine.stream(voice, case.text, SynthesisOptions())
    assert isinstance(stream, Generator)
    assert next(stream).size > 0

    # While the generator is suspended, another thread synthesizes to the end: no lock
    # is held across a yield.
    done = threading.Event()

    def other() -> None:
        whole(engine.stream(voice, "Otra frase.", SynthesisOptions()))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(THREAD_TIMEOUT_S)
    assert done.is_set()

    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    # The engine is still usable afterwards.
    assert next(engine.stream(voice, "Sigue funcionando.", SynthesisOptions())).size > 0


def test_failure_mid_stream_is_an_engine_error(
    engine: Engine, case: EngineCase, voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every engine cuts its text with split_for_streaming inside the generator: a
    # failure there stands for any failure underneath, after the call has validated.
    def broken(text: str) -> list[str]:
        raise RuntimeError("fake failure underneath")

    with monkeypatch.context() as patch:
        patch.setattr(sys.modules[type(engine).__module__], "split_for_streaming", broken)
        stream = engine.stream(voice, case.text, SynthesisOptions())
        with pytest.raises(EngineError, match="fake failure underneath") as caught:
            next(stream)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert whole(engine.stream(voice, case.text, SynthesisOptions())).size > 0


def test_concurrent_streams_match_sequential(engine: Engine, case: EngineCase) -> None:
    other_id, other_text = case.other
    jobs = {
        "first": (voice_of(engine, case.voice_id), case.text),
        "other": (voice_of(engine, other_id), other_text),
        "again": (voice_of(engine, case.voice_id), case.text),
    }
    expected = {
        key: whole(engine.stream(voice, text, SynthesisOptions()))
        for key, (voice, text) in jobs.items()
    }
    results = synthesize_concurrently(engine, jobs, case.rounds)
    # Each synthesis stays whole under concurrency: the voice never switches
    # mid-segment, no instance is shared mid-synthesis.
    for key in jobs:
        case.alike(results[key], expected[key])


def test_word_timings_ride_on_the_chunk_they_start_in(
    engine: Engine, case: EngineCase, voice: Voice
) -> None:
    if not isinstance(engine, TimedEngine):
        pytest.skip(f"{engine.name} gives no word timings of its own")
    chunks = list(engine.stream_with_timings(voice, case.text, SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert [w.word for w in words] == words_of(case.text) == case.text.split()
    assert all(w.estimated == case.words_estimated for w in words)
    assert all(w.end_s > w.start_s for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and starts[0] >= 0
    # Each chunk carries the words that start in it (float sums: a nanosecond's slack).
    offset = 0.0
    for chunk in chunks:
        duration = chunk.pcm.size / voice.sample_rate
        assert all(offset - 1e-9 <= w.start_s < offset + duration + 1e-9 for w in chunk.words)
        offset += duration
    assert words[-1].end_s <= offset + 1e-9
    # The same audio as the plain stream, as alike as two plain runs are.
    plain = whole(engine.stream(voice, case.text, SynthesisOptions()))
    case.alike(np.concatenate([chunk.pcm for chunk in chunks]), plain)
