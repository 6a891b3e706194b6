"""MeloTTS (torch VITS2 voices at 44.1 kHz) behind the engine contract.

MeloTTS is optional: it is installed by ``deploy/install_melotts.sh``, imported only in
``load()``, and when it is missing ``status()`` says so and the other engines serve alone.
What melo needs changed around it to import here (a torchaudio stand-in, the hub's
offline switch) is in ``patches.melotts``, applied by ``load()``.

Models come from one of two places:

* ``checkpoint_dir`` given: one model per melo language key (``EN``, ``ES``, ``FR``,
  ``ZH``, ``JP``, ``KR``, ``EN_V2``...) laid out as
  ``<checkpoint_dir>/<LANG>/config.json`` and ``<checkpoint_dir>/<LANG>/checkpoint.pth``,
  the two files melo's hub repositories hold, passed to melo's ``TTS`` as
  ``config_path``/``ckpt_path``.
* ``checkpoint_dir`` is ``None``: melo's own ``TTS(language=...)``, which downloads the
  model from the Hugging Face hub. When the hub cannot be reached, the hub libraries are
  switched to offline mode before melo is imported (``patches.melotts``), so a warm
  cache still works and a cold one fails at once instead of waiting out network
  timeouts.

Either way, importing melo loads its text front-ends, which need the BERT tokenizers of
every language in the Hugging Face cache and NLTK's ``cmudict``; English also needs
NLTK's ``averaged_perceptron_tagger_eng`` (see ``streamer/testing/_tiny_melo.py`` for how
the tests provide all of them offline).

Synthesis follows melo's ``TTS.tts_to_file`` piece by piece, without its file output:
``split_for_streaming`` cuts the text, melo's own splitter cleans each segment, and every
``next()`` runs melo's front-end (``utils.get_text_for_tts_infer``) and
``SynthesizerTrn.infer`` on one piece, followed by melo's 50 ms inter-sentence pause.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
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
    UnknownVoiceError,
    Voice,
    check_speed,
    engine_errors,
)
from streamer.engines.patches import melotts as melotts_patches
from streamer.engines.text import split_for_streaming

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "melo"
CONFIG_FILE: Final = "config.json"
CHECKPOINT_FILE: Final = "checkpoint.pth"

#: melo's ``tts_to_file`` defaults: how much of the duration comes from the stochastic
#: duration predictor, and the two sampling temperatures. Kept so our audio is melo's.
SDP_RATIO: Final = 0.2
NOISE_SCALE: Final = 0.6
NOISE_SCALE_W: Final = 0.8
#: melo appends this much silence after every sentence (``audio_numpy_concat``).
SENTENCE_PAUSE_S: Final = 0.05
#: The published MeloTTS models all run at this rate; used for voices listed before a
#: hub model is loaded (a loaded model's config always wins).
HUB_SAMPLE_RATE: Final = 44100
#: Longest load or import error kept in ``status().reason``; NLTK's are screenfuls.
MAX_REASON_CHARS: Final = 400
#: Default torch intra-op threads (a process-wide torch setting). Callers run about one
#: synthesis per core at once (the server does); when each also spreads over every core,
#: OpenMP's spinning threads fight: with one other busy core, 2 threads ran the tiny
#: fixture 3-4x slower than 1 (RTF 0.03 -> 0.10), while on an idle 2-core CPU they
#: gained only ~20%. One thread per inference keeps latency steady under load.
TORCH_THREADS: Final = 1

#: Speakers of melo's published hub models, by language key, as in their
#: ``data.spk2id``. Only used to list voices before a hub model is loaded.
HUB_SPEAKERS: Final[Mapping[str, tuple[str, ...]]] = {
    "EN": ("EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default"),
    "ES": ("ES",),
    "FR": ("FR",),
    "ZH": ("ZH",),
    "JP": ("JP",),
    "KR": ("KR",),
}

#: BCP-47 tags for melo speaker names (normalised: upper case, ``_`` -> ``-``).
_SPEAKER_LANGUAGE: Final[Mapping[str, str]] = {
    "EN-US": "en-US",
    "EN-BR": "en-GB",
    "EN-AU": "en-AU",
    "EN-INDIA": "en-IN",
    "EN-DEFAULT": "en",
    "EN-NEWEST": "en",
}
#: BCP-47 tags for melo's text languages, for speakers not listed above.
_TEXT_LANGUAGE_TAG: Final[Mapping[str, str]] = {
    "EN": "en",
    "ES": "es",
    "SP": "es",
    "FR": "fr",
    "ZH": "zh",
    "ZH_MIX_EN": "zh",
    "JP": "ja",
    "KR": "ko",
}
#: melo's ``tts_to_file`` splits camelCase words for these front-ends.
_CAMEL_CASE_LANGUAGES: Final = frozenset({"EN", "ZH_MIX_EN"})
_CAMEL_CASE = re.compile(r"([a-z])([A-Z])")


def text_language(model_language: str) -> str:
    """melo's text front-end for a model language key, as ``TTS.__init__`` derives it."""
    base = model_language.split("_")[0]
    return "ZH_MIX_EN" if base == "ZH" else base


def speaker_language(speaker: str, model_language: str) -> str:
    """BCP-47 tag of a melo speaker (``EN-BR`` -> ``en-GB``, ``JP`` -> ``ja``)."""
    key = speaker.upper().replace("_", "-")
    if key in _SPEAKER_LANGUAGE:
        return _SPEAKER_LANGUAGE[key]
    base = _TEXT_LANGUAGE_TAG.get(text_language(model_language), model_language.lower())
    region = key.split("-", 1)[1] if "-" in key else ""
    if len(region) == 2 and region.isalpha():
        return f"{base}-{region}"
    return base


@dataclass(frozen=True, slots=True)
class _VoiceEntry:
    voice: Voice
    model_language: str
    speaker_id: int


@dataclass(slots=True)
class _LoadedModel:
    """One melo ``TTS`` object and the lock that serialises its use (see ``stream``)."""

    tts: Any
    language: str
    text_language: str
    sample_rate: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def _short(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class MeloEngine(Engine):
    """MeloTTS voices: one ``Voice`` per (model language, speaker), ids ``melo-en-us``.

    Thread safety: melo's text front-end shares module-level tokenizers and taggers, and
    its vocoder recomputes weight-normalised weights on every call, so each model is
    used by one thread at a time (a lock per model). Different languages run in
    parallel; bounding the total on a small CPU is the caller's job (its limiter on
    inference threads).

    ``device`` is ``cpu``, ``cuda[:N]`` or ``auto`` (CUDA when torch sees it).
    ``threads`` sets torch's intra-op threads, a process-wide setting, at load.
    """

    name = ENGINE_NAME

    def __init__(
        self,
        *,
        languages: Sequence[str],
        checkpoint_dir: Path | None,
        device: str = "cpu",
        threads: int = TORCH_THREADS,
    ) -> None:
        self._languages = tuple(dict.fromkeys(language.upper() for language in languages))
        self._checkpoint_dir = checkpoint_dir
        self._requested_device = device
        self._threads = max(1, threads)
        self._device = device
        self._load_lock = threading.Lock()
        self._models: dict[str, _LoadedModel] = {}
        self._load_error = ""
        self._entries: dict[str, _VoiceEntry] | None = None
        # ``_unavailable_reason()`` as last computed: it looks at the disk, and status()
        # must not (callers ask on every health check). Recomputed by refresh_voices().
        self._checked_reason: str | None = None

    # --- Engine contract ------------------------------------------------------------

    def status(self) -> EngineStatus:
        if self._models:
            return EngineStatus(ENGINE_NAME, available=True, loaded=True, device=self._device)
        if self._checked_reason is None:
            self._checked_reason = self._unavailable_reason()
        reason = self._load_error or self._checked_reason
        if reason:
            return EngineStatus(ENGINE_NAME, False, False, reason=reason, device=self._device)
        note = (
            "not loaded yet"
            if self._checkpoint_dir is not None
            else "not loaded yet; load downloads models from the Hugging Face hub"
        )
        return EngineStatus(ENGINE_NAME, True, False, reason=note, device=self._device)

    def load(self) -> None:
        """Import melo and load every language's model.

        Idempotent. Raises ``EngineError`` (also remembered for ``status()``) when melo is
        missing, a checkpoint cannot be read, or hub models can be neither downloaded
        nor found in the cache.
        """
        with self._load_lock:
            if self._models:
                return
            try:
                self._load_locked()
            except EngineError as exc:
                self._load_error = str(exc)
                raise

    def voices(self) -> Sequence[Voice]:
        return [entry.voice for entry in self._voice_entries().values()]

    def refresh_voices(self) -> None:
        """Check again whether the models' files are there (the voices themselves are
        fixed: one per configured language's speaker)."""
        if not self._models:
            self._checked_reason = self._unavailable_reason()

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Yield one chunk per sentence (the first clause of the first sentence alone).

        ``options.speaker`` is ignored: every melo speaker is a voice of its own.
        Closing the generator between chunks stops before the next inference call.
        Raises as ``Engine.stream`` says (``EngineError`` when not loaded).
        """
        entries = self._voice_entries()
        entry = entries.get(voice.id)
        if entry is None:
            raise UnknownVoiceError(f"unknown MeloTTS voice {voice.id!r}", sorted(entries))
        speed = check_speed(options.speed)
        model = self._models.get(entry.model_language)
        if model is None:
            raise EngineError("MeloTTS is not loaded")
        return engine_errors(
            self._stream(model, entry.speaker_id, text, speed), f"MeloTTS {voice.id}"
        )

    # --- loading --------------------------------------------------------------------

    def _unavailable_reason(self) -> str:
        """Why the engine cannot load, from cheap checks only (no heavy imports)."""
        if not self._languages:
            return "no MeloTTS languages configured"
        for module in ("melo", "torch"):
            if importlib.util.find_spec(module) is None:
                return (
                    f"MeloTTS is not installed (ModuleNotFoundError: No module named "
                    f"'{module}'); run deploy/install_melotts.sh"
                )
        if self._checkpoint_dir is not None:
            for language in self._languages:
                for name in (CONFIG_FILE, CHECKPOINT_FILE):
                    path = self._checkpoint_dir / language / name
                    if not path.is_file():
                        return f"MeloTTS {language} model file missing: {path}"
        return ""

    def _load_locked(self) -> None:
        reason = self._unavailable_reason()
        if reason:
            raise EngineError(reason)
        started = time.perf_counter()
        melotts_patches.apply()  # before melo or the hub libraries are imported
        try:
            import torch
        except Exception as exc:
            raise EngineError(f"cannot import torch: {_short(exc)}") from exc
        device = self._resolve_device(torch)
        torch.set_num_threads(self._threads)
        try:
            from melo.api import TTS
        except Exception as exc:
            raise EngineError(self._import_failure(exc)) from exc
        models: dict[str, _LoadedModel] = {}
        for language in self._languages:
            models[language] = self._load_model(TTS, language, device)
        self._check_english_tagger(models)
        self._device = device
        self._entries = self._entries_from_models(models)
        self._models = models
        self._load_error = ""
        logger.info(
            "MeloTTS loaded %s on %s (%d torch threads) in %.1f s",
            ",".join(self._languages),
            device,
            torch.get_num_threads(),
            time.perf_counter() - started,
        )

    def _resolve_device(self, torch: Any) -> str:
        device = self._requested_device
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"device {device!r} requested but torch sees no CUDA device")
        return device

    def _import_failure(self, exc: Exception) -> str:
        if isinstance(exc, OSError) and self._is_offline():
            return (
                "MeloTTS text front-end models (BERT tokenizers) are not in the local "
                f"Hugging Face cache, and the hub is offline or unreachable: {_short(exc)}"
            )
        return f"cannot import MeloTTS: {_short(exc)}"

    @staticmethod
    def _is_offline() -> bool:
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")

    def _load_model(self, tts_class: Any, language: str, device: str) -> _LoadedModel:
        try:
            if self._checkpoint_dir is None:
                tts = tts_class(language=language, device=device)
            else:
                folder = self._checkpoint_dir / language
                tts = tts_class(
                    language=language,
                    device=device,
                    config_path=str(folder / CONFIG_FILE),
                    ckpt_path=str(folder / CHECKPOINT_FILE),
                )
        except Exception as exc:
            where = "hub" if self._checkpoint_dir is None else str(self._checkpoint_dir)
            offline = " (offline: local cache only)" if self._is_offline() else ""
            raise EngineError(
                f"cannot load MeloTTS {language} model from {where}{offline}: {_short(exc)}"
            ) from exc
        return _LoadedModel(
            tts=tts,
            language=language,
            text_language=str(tts.language),
            sample_rate=int(tts.hps.data.sampling_rate),
        )

    def _check_english_tagger(self, models: Mapping[str, _LoadedModel]) -> None:
        """g2p_en POS-tags every English sentence with NLTK's ``_eng`` tagger, which it
        does not download itself (it fetches only the pre-NLTK-3.9 one); check it now
        rather than fail on the first request. With a reachable hub, fetch it as
        g2p_en fetches its own data."""
        if not any(m.text_language in ("EN", "ZH_MIX_EN") for m in models.values()):
            return
        import nltk

        resource = "taggers/averaged_perceptron_tagger_eng/"
        try:
            nltk.data.find(resource)
            return
        except LookupError:
            pass
        if self._checkpoint_dir is None and not self._is_offline():
            nltk.download("averaged_perceptron_tagger_eng", quiet=True)
            try:
                nltk.data.find(resource)
                return
            except LookupError:
                pass
        raise EngineError(
            "NLTK data 'averaged_perceptron_tagger_eng' (used by MeloTTS English g2p) is "
            "missing; run `python -m nltk.downloader averaged_perceptron_tagger_eng` "
            "where a network is available, or point NLTK_DATA at a copy"
        )

    # --- voices ---------------------------------------------------------------------

    def _voice_entries(self) -> dict[str, _VoiceEntry]:
        if self._entries is None:
            self._entries = self._entries_before_load()
        return self._entries

    def _entries_before_load(self) -> dict[str, _VoiceEntry]:
        """Voices from the config files (or melo's published speakers for hub models),
        without loading any model."""
        speakers: list[tuple[str, Mapping[str, int], int]] = []
        for language in self._languages:
            if self._checkpoint_dir is None:
                names = HUB_SPEAKERS.get(language, ())
                speakers.append((language, {n: i for i, n in enumerate(names)}, HUB_SAMPLE_RATE))
                continue
            try:
                config = json.loads((self._checkpoint_dir / language / CONFIG_FILE).read_text())
                data = config["data"]
                speakers.append((language, dict(data["spk2id"]), int(data["sampling_rate"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("MeloTTS %s config unreadable: %s", language, exc)
        return _voice_table(speakers)

    @staticmethod
    def _entries_from_models(models: Mapping[str, _LoadedModel]) -> dict[str, _VoiceEntry]:
        speakers = [
            (language, dict(model.tts.hps.data.spk2id.items()), model.sample_rate)
            for language, model in models.items()
        ]
        return _voice_table(speakers)

    # --- synthesis ------------------------------------------------------------------

    def _stream(
        self, model: _LoadedModel, speaker_id: int, text: str, speed: float
    ) -> Iterator[Pcm]:
        pause = np.zeros(int(model.sample_rate * SENTENCE_PAUSE_S / speed), dtype=np.float32)
        for segment in split_for_streaming(text):
            # melo's own splitter also cleans the text (brackets, quotes, CJK marks)
            # and only splits segments longer than ours; usually one piece each.
            pieces = model.tts.split_sentences_into_pieces(segment, model.text_language, True)
            for piece in pieces:
                audio = self._synthesize(model, piece, speaker_id, speed)
                yield np.concatenate([audio, pause])

    @staticmethod
    def _synthesize(model: _LoadedModel, text: str, speaker_id: int, speed: float) -> Pcm:
        """melo's ``tts_to_file`` loop body for one sentence, returning its samples."""
        import torch
        from melo import utils

        if model.text_language in _CAMEL_CASE_LANGUAGES:
            text = _CAMEL_CASE.sub(r"\1 \2", text)
        tts = model.tts
        device = tts.device
        try:
            with model.lock, torch.no_grad():
                bert, ja_bert, phones, tones, lang_ids = utils.get_text_for_tts_infer(
                    text, model.text_language, tts.hps, device, tts.symbol_to_id
                )
                audio = tts.model.infer(
                    phones.to(device).unsqueeze(0),
                    torch.LongTensor([phones.size(0)]).to(device),
                    torch.LongTensor([speaker_id]).to(device),
                    tones.to(device).unsqueeze(0),
                    lang_ids.to(device).unsqueeze(0),
                    bert.to(device).unsqueeze(0),
                    ja_bert.to(device).unsqueeze(0),
                    sdp_ratio=SDP_RATIO,
                    noise_scale=NOISE_SCALE,
                    noise_scale_w=NOISE_SCALE_W,
                    length_scale=1.0 / speed,
                )[0][0, 0]
                samples = audio.data.cpu().float().numpy()
        except Exception as exc:
            raise EngineError(
                f"MeloTTS {model.language} failed on {text!r}: {_short(exc)}"
            ) from exc
        pcm: Pcm = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32)
        return pcm


def _voice_table(speakers: Sequence[tuple[str, Mapping[str, int], int]]) -> dict[str, _VoiceEntry]:
    """One voice per (model language, speaker); ids ``melo-<speaker>`` unless two models
    name a speaker alike, when the later one becomes ``melo-<language>-<speaker>``."""
    table: dict[str, _VoiceEntry] = {}
    for language, spk2id, sample_rate in speakers:
        for speaker, speaker_id in spk2id.items():
            slug = speaker.lower().replace("_", "-")
            voice_id = f"melo-{slug}"
            if voice_id in table:
                voice_id = f"melo-{language.lower().replace('_', '-')}-{slug}"
            voice = Voice(
                id=voice_id,
                engine=ENGINE_NAME,
                language=speaker_language(speaker, language),
                name=f"MeloTTS {speaker}",
                sample_rate=sample_rate,
                quality="high",
                neural=True,
            )
            table[voice_id] = _VoiceEntry(voice, language, int(speaker_id))
    return table
