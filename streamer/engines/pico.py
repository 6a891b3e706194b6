"""SVOX Pico: six languages, natural-sounding for its cost, instant, the fast CPU tier.

The library is SVOX Pico as built by the ``ttspico`` package (C sources compiled at
install, plus a text-analysis and a signal-generation file for each of es-ES, en-US,
en-GB, de-DE, fr-FR and it-IT), driven through that package's extension module
``ctts``: ``engine_speak`` runs Pico's whole synthesis loop in C with the GIL released
and calls back into Python only with finished audio (16 kHz, 16-bit, mono). Loading a
language takes ~2 ms; synthesis costs ~1/140 of real time on one core (BENCHMARKS.md).

Pico is not neural (HMM-based parametric synthesis), but is far more natural than
espeak-ng's formant synthesis: its voices rank between the neural voices and espeak-ng
(``registry``).

Threading: a Pico engine instance (one ``pico_System`` with its own memory pool and
language resources, a few MiB) may be used by one thread at a time. Each language keeps
a small pool of idle instances; a synthesis takes one out for one segment and puts it
back, so concurrent streams never share an instance and nothing is held while a stream
is suspended between chunks.

Streaming: the text is cut by ``split_for_streaming``; each ``next()`` synthesizes one
segment (a clause or a sentence, at most ``MAX_SEGMENT_CHARS``: under 1 ms per second
of speech) and yields its audio. So first audio waits for the first clause only, and
an interrupt for at most one segment.

Pico reads markup in its input (``<speed>``, ``<pitch>``, and ``<play file=...>``, which
would read a file from the server's disk); client text never reaches it as markup:
``<`` and ``>`` are replaced by spaces. Speed and output level are set by markup of our
own before the text (``<speed>``, ``<volume>``): the speaking rate changes in the model,
not by resampling, and the level is lowered to where Pico no longer clips.

Word timings: Pico reports none (its API has no mark events), so ``stream_with_timings``
estimates them from each segment's text and the span of its speech
(``timings.estimate_word_timings``), marked ``estimated``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from streamer.engines.base import (
    Engine,
    EngineError,
    EngineStatus,
    Pcm,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
    check_speed,
    engine_errors,
)
from streamer.engines.languages import language_name
from streamer.engines.text import split_for_streaming
from streamer.engines.timings import (
    SILENCE_LEVEL,
    TimedChunk,
    WordTiming,
    estimate_word_timings,
    speech_bounds,
    words_of,
)

__all__ = [
    "ENGINE_NAME",
    "LANGUAGES",
    "SAMPLE_RATE",
    "PicoEngine",
    "pico_rate",
    "sanitize",
]

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "pico"
#: What every Pico language file produces (ctts reports the format as 16000/16/1).
SAMPLE_RATE: Final = 16000
#: The languages ``ttspico`` 0.3.2 ships, with the voice each one has (all female).
LANGUAGES: Final[dict[str, str]] = {
    "es-ES": "zl0",
    "en-US": "lh0",
    "en-GB": "kh0",
    "de-DE": "gl0",
    "fr-FR": "nk0",
    "it-IT": "cm0",
}
#: Pico's speaking rate at speed 1.0 (percent of normal), and the range it accepts
#: (``tts_engine.c`` clamps to it): speed 0.5..2.0 maps to 50..200, well inside.
NORMAL_RATE: Final = 100
MIN_RATE: Final = 20
MAX_RATE: Final = 500
#: Pico's output level (percent; 100 is its default): at 100 Pico clips about 1 % of
#: the samples of a normal sentence (es-ES, en-US, de-DE, it-IT; audible crackle), and at
#: 60 Spanish still clipped a few ("Hola, ¿cómo estás?"). At 50 no sentence of the six
#: languages we tried came closer than 0.87 of full scale.
VOLUME: Final = 50
#: Idle engine instances kept per language: each holds a few MiB (its memory pool and
#: language files) and takes ~2 ms to create, so a handful covers the concurrency one
#: language sees between bursts, and more would only hold memory.
MAX_IDLE_INSTANCES: Final = 4
#: Where Pico looks besides ``ttspico``'s own folder: Debian's ``libttspico-data``.
SYSTEM_LANGUAGE_DIR: Final = Path("/usr/share/pico/lang")
_INT16_SCALE: Final = 32768.0


def sanitize(text: str) -> str:
    """``text`` as Pico may read it: no markup (``<``/``>`` become spaces, so no client
    can reach ``<play file=...>`` or change the rate mid-text) and no NUL (Pico's end of
    input, and unrepresentable in the C string ``ctts`` passes)."""
    return text.replace("<", " ").replace(">", " ").replace("\x00", " ")


def pico_rate(speed: float) -> int:
    """Pico's rate level for a speed factor: 100 × speed, within its 20..500."""
    return min(MAX_RATE, max(MIN_RATE, round(NORMAL_RATE * speed)))


def _language_dirs() -> list[Path]:
    """Where ``ttspico`` installs its language files, in the order it looks: beside its
    module, under the environment's prefix (pip's data_files), then the system's."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec("ttspico")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "languages")
    dirs.append(Path(sys.prefix) / "languages")
    dirs.append(SYSTEM_LANGUAGE_DIR)
    return dirs


def _find_languages(dirs: Sequence[Path]) -> tuple[Path | None, tuple[str, ...], str]:
    """The first of ``dirs`` holding both files of any Pico language, the languages it
    holds, and why none was found (empty when one was)."""
    if importlib.util.find_spec("ctts") is None:
        return None, (), "SVOX Pico unavailable: ttspico is not installed (pip install ttspico)"
    for directory in dirs:
        found = tuple(
            lang
            for lang, speaker in LANGUAGES.items()
            if (directory / f"{lang}_ta.bin").is_file()
            and (directory / f"{lang}_{speaker}_sg.bin").is_file()
        )
        if found:
            return directory, found, ""
    searched = ", ".join(str(d) for d in dirs)
    return None, (), f"SVOX Pico unavailable: no language files in {searched}"


@dataclass(slots=True)
class _Pool:
    """Idle Pico instances of one language (``ctts`` capsules); under ``_PicoState.lock``."""

    idle: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class _PicoState:
    """What a ``PicoEngine`` found on disk, and its instance pools."""

    language_dir: Path | None
    languages: tuple[str, ...]
    reason: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    pools: dict[str, _Pool] = field(default_factory=dict)


def _voice_for(language: str) -> Voice:
    return Voice(
        id=f"{ENGINE_NAME}-{language}",
        engine=ENGINE_NAME,
        language=language,
        name=f"SVOX Pico {language_name(language)}",
        sample_rate=SAMPLE_RATE,
        # Neither neural nor espeak's formant fallback: the registry ranks "standard"
        # between the two.
        quality="standard",
        neural=False,
    )


class PicoEngine(Engine):
    """SVOX Pico voices for es-ES, en-US, en-GB, de-DE, fr-FR, it-IT; 16 kHz, CPU only."""

    name = ENGINE_NAME

    def __init__(self, language_dir: Path | None = None) -> None:
        """``language_dir`` overrides where the language files are looked for (tests);
        by default ``ttspico``'s own install location, then the system's."""
        self._override = language_dir
        self._state: _PicoState | None = None
        self._state_lock = threading.Lock()
        self._voices: Mapping[str, Voice] = {}
        self._loaded = False

    def _find(self) -> _PicoState:
        """What is installed, looked up once (a few ``stat`` calls) and then remembered:
        ``status`` is asked on every health check."""
        state = self._state
        if state is not None:
            return state
        with self._state_lock:
            if self._state is None:
                dirs = [self._override] if self._override is not None else _language_dirs()
                directory, languages, reason = _find_languages(dirs)
                self._voices = {v.id: v for v in map(_voice_for, languages)}
                self._state = _PicoState(directory, languages, reason)
            return self._state

    def status(self) -> EngineStatus:
        try:
            state = self._find()
        except Exception as exc:  # status() must never raise
            return EngineStatus(ENGINE_NAME, available=False, loaded=False, reason=str(exc))
        return EngineStatus(
            name=ENGINE_NAME,
            available=not state.reason,
            loaded=self._loaded,
            reason=state.reason,
            device="cpu",
        )

    def load(self) -> None:
        """Create one instance of every language (milliseconds each), so a broken
        install fails here rather than on a request."""
        state = self._find()
        if state.reason:
            raise EngineError(state.reason)
        for language in state.languages:
            self._release(language, self._take(language))
        self._loaded = True

    def voices(self) -> Sequence[Voice]:
        self._find()
        return list(self._voices.values())

    # -- instances -------------------------------------------------------------------

    def _take(self, language: str) -> Any:
        """An idle instance of ``language``, or a new one. Raises ``EngineError``."""
        state = self._find()
        with state.lock:
            pool = state.pools.setdefault(language, _Pool())
            if pool.idle:
                return pool.idle.pop()
        if state.language_dir is None:
            raise EngineError(state.reason)
        try:
            import ctts

            return ctts.engine_create(language=language, language_dir=str(state.language_dir))
        except Exception as exc:
            raise EngineError(f"cannot load SVOX Pico {language}: {exc}") from exc

    def _release(self, language: str, instance: Any) -> None:
        state = self._find()
        with state.lock:
            pool = state.pools.setdefault(language, _Pool())
            if len(pool.idle) < MAX_IDLE_INSTANCES:
                pool.idle.append(instance)
        # Beyond the bound the capsule is dropped: its destructor frees the instance.

    def _synthesize(self, language: str, rate: int, text: str) -> Pcm:
        """One segment's audio, in one blocking ``engine_speak`` (GIL released)."""
        import ctts

        parts: list[bytes] = []
        failure: list[BaseException] = []

        def on_audio(audio_format: object, audio: bytes, final: int) -> bool:
            # Runs in this thread, inside engine_speak; an exception cannot cross the C
            # frames, so keep it and stop the synthesis.
            try:
                parts.append(audio)
            except BaseException as exc:
                failure.append(exc)
                return False
            return True

        # Opening tags only: ctts's own rate and volume properties wrap the text in
        # closing tags too, and Pico makes a closing tag a ~0.5 s pause (measured), which
        # would end every segment with extra silence. The instance's properties stay at
        # their defaults, so ctts adds no tags of its own.
        marked = f"<speed level='{rate}'><volume level='{VOLUME}'>{text}"
        instance = self._take(language)
        try:
            ctts.engine_speak(instance, marked, on_audio)
        except BaseException:
            # An instance whose synthesis failed midway may hold half a sentence: do
            # not pool it.
            instance = None
            raise
        finally:
            if instance is not None:
                self._release(language, instance)
        if failure:
            raise EngineError(f"SVOX Pico callback failed: {failure[0]!r}") from failure[0]
        raw = np.frombuffer(b"".join(parts), dtype=np.int16)
        return np.multiply(raw, 1.0 / _INT16_SCALE, dtype=np.float32)

    # -- synthesis -------------------------------------------------------------------

    def _validate(self, voice: Voice, options: SynthesisOptions) -> tuple[str, int]:
        state = self._find()
        if voice.id not in self._voices or state.reason:
            raise UnknownVoiceError(f"unknown Pico voice {voice.id}", sorted(self._voices))
        if options.speaker is not None:
            raise UnknownSpeakerError(voice.id, options.speaker, ())
        return self._voices[voice.id].language, pico_rate(check_speed(options.speed))

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Validate now (``Engine.stream`` says what raises here), then return a
        generator whose ``next()`` synthesizes one segment. Nothing is held while it is
        suspended, so closing it at any point stops it at once."""
        language, rate = self._validate(voice, options)
        timed = self._generate(language, rate, text, with_words=False)
        return engine_errors((chunk.pcm for chunk in timed), f"Pico {voice.id}")

    def stream_with_timings(
        self, voice: Voice, text: str, options: SynthesisOptions
    ) -> Iterator[TimedChunk]:
        """As ``stream``, each chunk with the words that start in it; the times are
        estimated (``timings``), since Pico reports none."""
        language, rate = self._validate(voice, options)
        return engine_errors(
            self._generate(language, rate, text, with_words=True), f"Pico {voice.id}"
        )

    def _generate(
        self, language: str, rate: int, text: str, *, with_words: bool
    ) -> Iterator[TimedChunk]:
        offset = 0.0
        for segment in split_for_streaming(sanitize(text)):
            audio = self._synthesize(language, rate, segment)
            if not np.any(np.abs(audio) > SILENCE_LEVEL):
                # Nothing speakable (punctuation only): Pico makes a pause of it, which
                # would only delay what follows. No empty or silent chunk.
                continue
            words: tuple[WordTiming, ...] = ()
            if with_words:
                start, end = speech_bounds(audio, SAMPLE_RATE)
                words = estimate_word_timings(words_of(segment), offset + start, offset + end)
            yield TimedChunk(audio, words)
            offset += audio.size / SAMPLE_RATE
