"""espeak-ng formant synthesis: every language, robotic but instant, the fallback voice.

The library is ``libespeak-ng`` 1.52 as shipped by ``espeakng-loader`` (with its data),
driven through ctypes. It is initialised once per process in synchronous mode with a
synth callback: ``espeak_Synth`` blocks the calling thread and hands the callback the
audio as 22050 Hz int16 buffers of ``CALLBACK_BUFFER_MS`` each. (The retrieval mode,
which hands back one buffer per call instead, crashed when tried.)

The library keeps one global state (current voice, parameters, callback) and is not
thread-safe, so one module-level lock is held around set-voice, set-parameters and
synth, and the callback writes into the collector of whichever call holds that lock.

Streaming: the text is cut by ``split_for_streaming``; a generator's ``next()``
synthesizes at most one segment (a clause or a sentence, ≤ 300 characters, a few
milliseconds of work at RTF ≈ 0.001) under the lock, then hands out that segment's
buffers one per ``next()`` without it. The lock is therefore never held while the
generator is suspended: closing it, or abandoning it, at any point leaves nothing
locked and nothing running, and an interrupt waits at most one segment's synthesis.
The callback aborts a synthesis (returns 1) only when it fails to take the samples.

This copy of espeak-ng is separate from the one statically linked into Piper's
phonemizer (``piper.espeakbridge``), which keeps its own state.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

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
from streamer.engines.languages import espeak_to_bcp47
from streamer.engines.text import split_for_streaming

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "espeak"
#: What espeak-ng 1.52 produces; checked against what ``espeak_Initialize`` reports.
SAMPLE_RATE: Final = 22050
#: Length of the buffers handed to the callback, and so of the chunks we yield: the
#: library's own default, small enough that a cut-off stream wastes little audio and
#: large enough that one thread hop per chunk costs < 0.2 % of the chunk's duration.
CALLBACK_BUFFER_MS: Final = 60
#: espeak-ng's speaking rate at speed 1.0, in words per minute (its documented default).
NORMAL_RATE: Final = 175
#: espeak-ng's accepted rate range; values outside are clamped by the library anyway.
MIN_RATE: Final = 80
MAX_RATE: Final = 450
#: Speakers every espeak voice offers: the voice as designed (male for every voice in
#: 1.52) and the ``f3`` variant, the most natural of the shipped female variants.
SPEAKER_VARIANTS: Final[dict[str, str | None]] = {"male": None, "female": "f3"}

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
# Without it, espeak_Initialize calls exit() when its data directory is missing.
_INITIALIZE_DONT_EXIT: Final = 0x8000
_CHARS_UTF8: Final = 0x1
# Adds a sentence pause after each segment, so consecutive segments do not run together.
_ENDPAUSE: Final = 0x1000
_POS_CHARACTER: Final = 1
_PARAMETER_RATE: Final = 1
_EE_OK: Final = 0
_CALLBACK_CONTINUE: Final = 0
_CALLBACK_ABORT: Final = 1
_INT16_SCALE: Final = 32768.0

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class _VoiceStruct(ctypes.Structure):
    """``espeak_VOICE``; ``languages`` is a raw pointer because it holds several
    NUL-terminated strings back to back (a ``c_char_p`` would stop at the first)."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)


@dataclass(slots=True)
class _Collector:
    """Where the callback puts one segment's audio; owned by the lock holder."""

    chunks: list[Pcm] = field(default_factory=list)
    error: BaseException | None = None

    def add(self, address: int, count: int) -> None:
        raw = np.frombuffer(ctypes.string_at(address, count * 2), dtype=np.int16)
        self.chunks.append(np.multiply(raw, 1.0 / _INT16_SCALE, dtype=np.float32))


@dataclass(frozen=True, slots=True)
class _EspeakVoice:
    voice: Voice
    #: The voice file, relative to ``espeak-ng-data/voices`` (``roa/es-419``).
    identifier: str


@dataclass(slots=True)
class _State:
    """The process-wide library: espeak-ng itself is one global state. Every field is
    written under ``_LOCK`` (``library`` is also read without it by ``status``, where a
    stale answer is harmless, and ``catalog`` by ``_catalog`` once it is set)."""

    library: ctypes.CDLL | None = None
    load_error: str | None = None
    catalog: dict[str, _EspeakVoice] | None = None
    #: The collector of the synthesis in progress; None between syntheses.
    collector: _Collector | None = None


_LOCK: Final = threading.Lock()
_state = _State()


def _on_audio(wav: int | None, numsamples: int, events: int | None) -> int:
    """The synth callback: runs inside ``espeak_Synth``, in the thread holding _LOCK."""
    collector = _state.collector
    if collector is None:
        return _CALLBACK_ABORT  # nobody to deliver to: cannot happen under the lock
    if not wav or numsamples <= 0:
        return _CALLBACK_CONTINUE  # the end-of-synthesis call carries no audio
    try:
        collector.add(wav, numsamples)
    except BaseException as exc:  # an exception cannot cross the C frames: keep it
        collector.error = exc
        return _CALLBACK_ABORT
    return _CALLBACK_CONTINUE


# Module-level so the C function pointer outlives every synthesis.
_SYNTH_CALLBACK: Final = _SynthCallback(_on_audio)


def _library_paths() -> tuple[str, str]:
    """The shared library and its data directory, from ``espeakng-loader``."""
    # Imported here, not at module level: when it is missing, status() says so.
    import espeakng_loader

    library = str(espeakng_loader.get_library_path())
    data = str(espeakng_loader.get_data_path())  # raises RuntimeError when missing
    return library, data


def _open_library() -> ctypes.CDLL:
    """Load and initialise espeak-ng once per process. Call with ``_LOCK`` held.

    A failure is remembered: the library does not appear later in a running process.
    """
    if _state.library is not None:
        return _state.library
    if _state.load_error is not None:
        raise EngineError(_state.load_error)
    try:
        library_path, data_path = _library_paths()
        cdll = ctypes.CDLL(library_path)
        _declare(cdll)
        rate = int(
            cdll.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS,
                CALLBACK_BUFFER_MS,
                data_path.encode(),
                _INITIALIZE_DONT_EXIT,
            )
        )
        if rate != SAMPLE_RATE:
            raise EngineError(f"espeak_Initialize returned {rate}, expected {SAMPLE_RATE} Hz")
        cdll.espeak_SetSynthCallback(_SYNTH_CALLBACK)
    except (ImportError, OSError, RuntimeError, AttributeError, EngineError) as exc:
        _state.load_error = f"espeak-ng unavailable: {exc}"
        raise EngineError(_state.load_error) from exc
    _state.library = cdll
    return cdll


def _declare(cdll: ctypes.CDLL) -> None:
    """Prototypes, so ctypes converts arguments to the C types and never guesses."""
    cdll.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    cdll.espeak_Initialize.restype = ctypes.c_int
    cdll.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
    cdll.espeak_SetSynthCallback.restype = None
    cdll.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
    cdll.espeak_SetVoiceByName.restype = ctypes.c_int
    cdll.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
    cdll.espeak_SetParameter.restype = ctypes.c_int
    cdll.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
    cdll.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
    cdll.espeak_Synth.argtypes = (
        ctypes.c_void_p,  # text
        ctypes.c_size_t,  # size in bytes, terminator included
        ctypes.c_uint,  # position
        ctypes.c_int,  # position type
        ctypes.c_uint,  # end position (0: none)
        ctypes.c_uint,  # flags
        ctypes.c_void_p,  # unique identifier out-pointer (unused)
        ctypes.c_void_p,  # user data (unused)
    )
    cdll.espeak_Synth.restype = ctypes.c_int


def _read_languages(address: int | None) -> list[str]:
    """``espeak_VOICE.languages``: (priority byte, NUL-terminated code) pairs, ended by
    a zero priority byte."""
    codes: list[str] = []
    while address:
        if ctypes.c_ubyte.from_address(address).value == 0:
            break
        code = ctypes.string_at(address + 1)
        codes.append(code.decode("ascii", "replace"))
        address += 2 + len(code)
    return codes


def _list_voices(cdll: ctypes.CDLL) -> dict[str, _EspeakVoice]:
    """Every voice espeak-ng lists (variants excluded), keyed by voice id. Under _LOCK."""
    catalog: dict[str, _EspeakVoice] = {}
    entries = cdll.espeak_ListVoices(None)
    index = 0
    while entries[index]:
        entry = entries[index].contents
        index += 1
        identifier = (entry.identifier or b"").decode("utf-8", "replace")
        name = (entry.name or b"").decode("utf-8", "replace").strip()
        basename = identifier.rsplit("/", 1)[-1]
        codes = _read_languages(entry.languages)
        try:
            language = espeak_to_bcp47(codes[0] if codes else basename)
        except ValueError:
            logger.debug("espeak voice %s has no usable language code; skipped", identifier)
            continue
        voice_id = f"{ENGINE_NAME}-{_UNSAFE_ID_CHARS.sub('-', basename)}"
        if not basename or voice_id in catalog:
            logger.warning("espeak voice %s skipped: duplicate or empty id", identifier)
            continue
        voice = Voice(
            id=voice_id,
            engine=ENGINE_NAME,
            language=language,
            name=name or basename,
            sample_rate=SAMPLE_RATE,
            quality="fallback",
            neural=False,
            speakers=tuple(SPEAKER_VARIANTS),
        )
        catalog[voice_id] = _EspeakVoice(voice, identifier)
    return catalog


def _catalog() -> dict[str, _EspeakVoice]:
    """The voice list, read from the library once per process; empty if it cannot load.

    Once read it is returned without taking ``_LOCK``: ``stream`` is called from the
    caller's event loop, which must not wait for another thread's synthesis.
    """
    catalog = _state.catalog  # set once, never mutated: safe to read without the lock
    if catalog is not None:
        return catalog
    with _LOCK:
        if _state.catalog is None:
            try:
                cdll = _open_library()
            except EngineError as exc:
                logger.warning("espeak-ng voices unavailable: %s", exc)
                return {}
            _state.catalog = _list_voices(cdll)
        return _state.catalog


def espeak_rate(speed: float) -> int:
    """Words per minute for a speed factor: 175 × speed, within espeak's 80..450."""
    return min(MAX_RATE, max(MIN_RATE, round(NORMAL_RATE * speed)))


def _synthesize(name: str, rate: int, text: str) -> list[Pcm]:
    """One blocking ``espeak_Synth`` of ``text``; its buffers, in order.

    Holds ``_LOCK`` for the whole call and releases it before returning, also on error.
    """
    # c_void_p + explicit size: a NUL inside the text would otherwise cut it short.
    data = text.replace("\x00", " ").encode("utf-8") + b"\x00"
    collector = _Collector()
    with _LOCK:
        cdll = _open_library()
        if cdll.espeak_SetVoiceByName(name.encode("utf-8")) != _EE_OK:
            raise EngineError(f"espeak-ng cannot select voice {name!r}")
        cdll.espeak_SetParameter(_PARAMETER_RATE, rate, 0)
        _state.collector = collector
        try:
            result = cdll.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
        finally:
            _state.collector = None
    if collector.error is not None:
        raise EngineError(f"espeak-ng callback failed: {collector.error!r}") from collector.error
    if result != _EE_OK:
        raise EngineError(f"espeak_Synth failed with code {result}")
    return collector.chunks


class EspeakEngine(Engine):
    """espeak-ng voices for every language it ships (about 140), 22050 Hz, CPU only.

    Loading takes about a millisecond; ``voices()`` loads the library on first use.
    """

    name = ENGINE_NAME

    def status(self) -> EngineStatus:
        reason = _state.load_error
        if reason is None and _state.library is None:
            try:
                _library_paths()
            except Exception as exc:  # status() must never raise, whatever the loader does
                reason = f"espeak-ng unavailable: {exc}"
        return EngineStatus(
            name=ENGINE_NAME,
            available=reason is None,
            loaded=_state.library is not None,
            reason=reason or "",
            device="cpu",
        )

    def load(self) -> None:
        with _LOCK:
            _open_library()

    def voices(self) -> Sequence[Voice]:
        return [entry.voice for entry in _catalog().values()]

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Validate now (``Engine.stream`` says what raises here), then return a
        generator whose ``next()`` synthesizes at most one segment. No lock is held
        while it is suspended, so closing it at any point stops it at once."""
        catalog = _catalog()
        entry = catalog.get(voice.id)
        if entry is None:
            raise UnknownVoiceError(f"unknown espeak voice {voice.id}", sorted(catalog))
        speed = check_speed(options.speed)
        name = entry.identifier
        if options.speaker is not None:
            if options.speaker not in SPEAKER_VARIANTS:
                raise UnknownSpeakerError(voice.id, options.speaker, tuple(SPEAKER_VARIANTS))
            variant = SPEAKER_VARIANTS[options.speaker]
            if variant is not None:
                name = f"{name}+{variant}"
        return engine_errors(self._generate(name, espeak_rate(speed), text), f"espeak {voice.id}")

    def _generate(self, name: str, rate: int, text: str) -> Iterator[Pcm]:
        for segment in split_for_streaming(text):
            # The whole segment is synthesized before its first buffer is yielded: the
            # lock must not be held across a yield, and a segment costs milliseconds.
            yield from _synthesize(name, rate, segment)
