"""One catalogue of voices over every engine, and the rules that pick one for a request.

A request names a language (BCP-47, loosely spelt) and optionally a voice: an integer
index into that language's ordered voice list (the protocol's ``voice_id``), or a voice
id. Resolution:

1. A voice id string is looked up across every available engine; it must exist. It
   wins over the language: ``language`` is then ignored, even when it names another
   language or none the server knows (the client said exactly which voice it wants).
   A string of digits (``"1"``) is an index, not an id: no voice id is all digits.
2. Otherwise the language (``default_language`` when None) selects the voices whose
   language subtag matches, after normalisation: case-insensitive, ``_`` read as
   ``-``, legacy codes and MeloTTS's mapped (``JP`` → ``ja``, ``iw`` → ``he``; see
   ``languages.LANGUAGE_ALIASES``). None match: ``UnknownLanguageError``, listing the
   languages there are.
3. Those voices are ordered best first by, in turn: the ``preferred_engine``'s voices
   first (when one is configured); the voice's tier (``tier``: neural, then standard
   (SVOX Pico), each only from engines that keep the real-time promises here, then any
   voice of an engine that does not, then espeak-ng's formant fallback); regional
   closeness to the request (exact tag; same region with another variant; a
   macro-region that contains the region, ``es-419`` for ``es-MX``; the bare language;
   any other region); quality ``high`` > ``medium`` > ``low`` > ``x_low`` > anything
   else; then voice id. So ``es-MX`` with no ``es-MX`` voice falls back to other
   Spanish voices, and a neural Castilian voice still beats espeak's Latin American one.

   Quality comes first, but a default must keep the server's promises: an engine whose
   status says it is not ``realtime`` on this machine (Kokoro on a CPU too slow for it,
   measured when it loads) has its voices ranked after every real-time voice but
   before espeak-ng. It is still chosen by voice id, by index, by ``tts.engine``
   (the preferred engine comes first whatever its speed), or by default on a machine
   fast enough (a GPU).

   A voice *list* (``listing()``, what ``GET /api/v1/voices`` shows) is ordered by
   quality alone: the same keys with every engine counted as real-time, so on a CPU
   too slow for Kokoro the Spanish list reads Kokoro, Pico, espeak-ng while the
   default stays Pico. Each listed voice carries its resolution index (the integer
   ``voice_id`` that picks it) and whether it is the default, so a client never has to
   guess which entry a request without a voice gets.
4. The index (0 when no voice is given) picks from that list; out of range (or a
   negative index) raises ``UnknownVoiceError`` listing that language's voice ids.

Engines whose ``status().available`` is False contribute no voices.

Queries read a snapshot, never the engines or the disk: resolution runs on the
caller's event loop for every request, and that loop may run at real-time priority,
where a ``stat`` that blocks on a slow disk stalls every stream. ``refresh()`` (blocking,
for a worker thread) asks the engines to look again and publishes a new snapshot in one
assignment, so a query sees the old catalogue or the new one, never half of each. A
Piper voice dropped into the voices directory is offered after the next ``refresh()``;
the caller runs one every ``VOICE_RESCAN_INTERVAL_S``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from streamer.engines.base import (
    Engine,
    EngineStatus,
    UnknownLanguageError,
    UnknownVoiceError,
    Voice,
    VoiceSelectionError,
)
from streamer.engines.languages import Closeness, LanguageTag, closeness, parse_tag

__all__ = [
    "DEFAULT_LANGUAGE",
    "QUALITY_RANK",
    "VOICE_RESCAN_INTERVAL_S",
    "ListedVoice",
    "Tier",
    "UnknownLanguageError",
    "UnknownVoiceError",
    "VoiceRegistry",
    "VoiceSelectionError",
    "tier",
]

logger = logging.getLogger(__name__)

#: The language resolved when a request names none: the config's default
#: (``tts.default_language``), which the server passes explicitly.
DEFAULT_LANGUAGE: Final = "es"

#: Rank of each neural quality grade, best first; unknown grades come after all of them.
QUALITY_RANK: Final[dict[str, int]] = {"high": 0, "medium": 1, "low": 2, "x_low": 3}

#: How often the caller should run ``refresh()``: the longest an operator waits for a
#: voice file dropped into the voices directory to be offered. A refresh with nothing
#: new costs one ``stat`` of that directory (in a worker thread), so this is set by
#: patience, not cost.
VOICE_RESCAN_INTERVAL_S: Final = 5.0


def _quality_rank(voice: Voice) -> int:
    return QUALITY_RANK.get(voice.quality, len(QUALITY_RANK))


class Tier(IntEnum):
    """How a voice ranks before language closeness and quality; lower is better."""

    #: A neural voice of an engine that keeps the real-time promises here.
    NEURAL = 0
    #: A natural-sounding non-neural voice (SVOX Pico) of such an engine.
    STANDARD = 1
    #: Any voice (but a fallback) of an engine too slow here to be a default.
    SLOW = 2
    #: Formant synthesis (espeak-ng): robotic, the voice of last resort.
    FALLBACK = 3


def tier(voice: Voice, *, realtime: bool) -> Tier:
    """``voice``'s tier, given whether its engine is ``realtime`` on this machine."""
    if voice.quality == "fallback":
        return Tier.FALLBACK
    if not realtime:
        return Tier.SLOW
    return Tier.NEURAL if voice.neural else Tier.STANDARD


#: Parsed tags remembered: every voice's tag is matched on every request (142 espeak
#: voices: ~0.45 ms in the event loop before ``queued`` goes out, measured). Bounded,
#: since requested tags come from clients.
TAG_CACHE_SIZE: Final = 4096


@functools.lru_cache(maxsize=TAG_CACHE_SIZE)
def _tag_or_none(tag: str) -> LanguageTag | None:
    try:
        return parse_tag(tag)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """What ``refresh()`` found: immutable, so readers need no lock."""

    #: Voices of available engines, in engine order; the first of duplicate ids wins.
    voices: tuple[Voice, ...]
    by_id: Mapping[str, Voice]
    #: The distinct language tags of ``voices``, sorted.
    languages: tuple[str, ...]
    #: Engines whose status said they are not real-time here (``EngineStatus.realtime``).
    slow_engines: frozenset[str] = frozenset()


_EMPTY: Final = _Catalogue((), MappingProxyType({}), ())


@dataclass(frozen=True, slots=True)
class ListedVoice:
    """One entry of a voice list (``VoiceRegistry.listing``)."""

    voice: Voice
    #: The integer ``voice_id`` that selects this voice for the listed language (its
    #: place in resolution order); None in a list of every language.
    index: int | None
    #: Whether a request for this language without a voice gets this one: for a list of
    #: one language, that language's; for a list of all, the voice's own tag's.
    default: bool

    def to_json(self) -> dict[str, object]:
        return {**self.voice.to_json(), "index": self.index, "default": self.default}


class VoiceRegistry:
    """Every voice of every available engine, and resolution of requests to one of them.

    Queries (``voices``, ``languages``, ``get``, ``resolve``) read the snapshot the last
    ``refresh()`` published and touch neither the engines nor the disk; the constructor
    takes the first one. Thread-safe: ``refresh()`` may run in a worker thread while
    other threads (or an event loop) query.
    """

    def __init__(
        self,
        engines: Sequence[Engine],
        *,
        default_language: str = DEFAULT_LANGUAGE,
        preferred_engine: str | None = None,
    ) -> None:
        """``preferred_engine`` (an engine name, e.g. the config's ``tts.engine`` when it
        is not ``auto``) ranks that engine's voices first in every language it speaks.
        Raises ``ValueError`` if two engines share a name.

        Blocking: takes the first snapshot (``refresh()``), so build the registry at
        start-up or in a worker thread."""
        self._engines = tuple(engines)
        self._by_name: dict[str, Engine] = {}
        for engine in self._engines:
            if engine.name in self._by_name:
                raise ValueError(f"two engines named {engine.name!r}")
            self._by_name[engine.name] = engine
        self._default_language = default_language
        self._preferred_engine = preferred_engine
        # Serialises refreshes, so an older scan never replaces a newer one. Readers
        # never take it: they read ``_catalogue`` once per query.
        self._refresh_lock = threading.Lock()
        self._catalogue = _EMPTY
        # Ids already warned about as duplicates (under the refresh lock): once, not on
        # every rescan.
        self._duplicates_logged: set[str] = set()
        self.refresh()

    def engines(self) -> Sequence[Engine]:
        return self._engines

    def statuses(self) -> list[EngineStatus]:
        """Each engine's status, asked now (cheap by the engine contract)."""
        return [engine.status() for engine in self._engines]

    def refresh(self) -> None:
        """Ask every engine to look for voices again, then publish the new catalogue.

        Blocking (engines may read the disk): run it in a worker thread, e.g. every
        ``VOICE_RESCAN_INTERVAL_S`` and once after the engines are loaded (loading can
        change what an engine offers, or whether it is available). Queries meanwhile see
        the previous catalogue; the new one replaces it whole. Never raises: an engine
        that fails to look is logged and contributes nothing this time, and the others'
        voices are still published.
        """
        with self._refresh_lock:
            for engine in self._engines:
                try:
                    engine.refresh_voices()
                except Exception:
                    logger.exception("engine %s failed to rescan its voices", engine.name)
            catalogue = self._scan()
            self._catalogue = catalogue  # one assignment: readers see old or new, whole

    def _scan(self) -> _Catalogue:
        """The catalogue the engines offer now. Call with the refresh lock held."""
        seen: dict[str, Voice] = {}
        slow: set[str] = set()
        for engine in self._engines:
            try:
                status = engine.status()
                if not status.available:
                    continue
                if not status.realtime:
                    slow.add(engine.name)
                offered = engine.voices()
            except Exception:
                # One broken engine must not hide the others' voices.
                logger.exception("engine %s failed to list its voices", engine.name)
                continue
            for voice in offered:
                if voice.id in seen:
                    if voice.id not in self._duplicates_logged:
                        self._duplicates_logged.add(voice.id)
                        logger.warning("voice id %s offered twice; keeping the first", voice.id)
                    continue
                seen[voice.id] = voice
        voices = tuple(seen.values())
        return _Catalogue(
            voices=voices,
            by_id=MappingProxyType(seen),
            languages=tuple(sorted({voice.language for voice in voices})),
            slow_engines=frozenset(slow),
        )

    def _rank(
        self, voice: Voice, match: Closeness | None, slow: frozenset[str]
    ) -> tuple[bool, int, int, int, str]:
        return (
            voice.engine != self._preferred_engine if self._preferred_engine else False,
            int(tier(voice, realtime=voice.engine not in slow)),
            -1 if match is None else int(match),
            _quality_rank(voice),
            voice.id,
        )

    def _matching(self, catalogue: _Catalogue, language: str) -> list[Voice]:
        requested = _tag_or_none(language)
        if requested is None:
            return []
        ranked: list[tuple[tuple[bool, int, int, int, str], Voice]] = []
        for voice in catalogue.voices:
            offered = _tag_or_none(voice.language)
            match = None if offered is None else closeness(requested, offered)
            if match is not None:
                ranked.append((self._rank(voice, match, catalogue.slow_engines), voice))
        ranked.sort(key=lambda item: item[0])
        return [voice for _, voice in ranked]

    def voices(self, language: str | None = None) -> list[Voice]:
        """Available voices, best first. With ``language``: only that language's voices
        in resolution order (``es`` gives every Spanish voice, ``es-MX`` too but the
        closest regions first); an unknown or malformed tag gives an empty list.
        Without: every voice, grouped by language tag, best first within each."""
        catalogue = self._catalogue
        if language is not None:
            return self._matching(catalogue, language)
        slow = catalogue.slow_engines
        return sorted(
            catalogue.voices, key=lambda voice: (voice.language, self._rank(voice, None, slow))
        )

    def listing(self, language: str | None = None) -> list[ListedVoice]:
        """Available voices in order of quality (module docstring, 3), each with its
        resolution index and whether it is the default. With ``language``: only the
        voices ``voices(language)`` holds (an unknown tag: an empty list); without: every
        voice, grouped by language tag."""
        catalogue = self._catalogue
        if language is not None:
            resolution = self._matching(catalogue, language)
            index = {voice.id: place for place, voice in enumerate(resolution)}
            requested = _tag_or_none(language)
            by_quality = sorted(
                resolution,
                key=lambda voice: self._quality_key(voice, requested),
            )
            return [
                ListedVoice(voice, index[voice.id], index[voice.id] == 0) for voice in by_quality
            ]
        defaults = {
            tag: candidates[0].id
            for tag in catalogue.languages
            if (candidates := self._matching(catalogue, tag))
        }
        ordered = sorted(
            catalogue.voices,
            key=lambda voice: (voice.language, self._quality_key(voice, None)),
        )
        return [
            ListedVoice(voice, None, defaults.get(voice.language) == voice.id)
            for voice in ordered
        ]

    def _quality_key(
        self, voice: Voice, requested: LanguageTag | None
    ) -> tuple[int, int, int, str]:
        """Resolution's keys without speed: the tier as if every engine were real-time."""
        offered = _tag_or_none(voice.language)
        match = None if requested is None or offered is None else closeness(requested, offered)
        return (
            int(tier(voice, realtime=True)),
            -1 if match is None else int(match),
            _quality_rank(voice),
            voice.id,
        )

    def languages(self) -> list[str]:
        """The distinct language tags of the available voices, sorted."""
        return list(self._catalogue.languages)

    def get(self, voice_id: str) -> Voice:
        """The available voice with this id. Raises ``UnknownVoiceError``."""
        catalogue = self._catalogue
        voice = catalogue.by_id.get(voice_id)
        if voice is None:
            raise UnknownVoiceError(f"unknown voice {voice_id!r}", sorted(catalogue.by_id))
        return voice

    def engine_for(self, voice: Voice) -> Engine:
        """The engine that speaks ``voice``. Raises ``UnknownVoiceError`` for a voice of
        an engine this registry does not hold."""
        engine = self._by_name.get(voice.engine)
        if engine is None:
            raise UnknownVoiceError(
                f"voice {voice.id!r} belongs to engine {voice.engine!r}, which is not loaded",
                [],
            )
        return engine

    def resolve(self, language: str | None, voice_id: int | str | None) -> Voice:
        """The voice for a request, by the rules in this module's docstring.

        Raises ``UnknownLanguageError`` or ``UnknownVoiceError`` (each listing what is
        available) when nothing fits.
        """
        catalogue = self._catalogue  # one snapshot for the whole resolution
        if isinstance(voice_id, str) and not voice_id.isdecimal():
            return self._resolve_id(catalogue, language, voice_id)
        if isinstance(voice_id, bool):
            raise UnknownVoiceError(f"invalid voice {voice_id!r}", [])
        index = 0 if voice_id is None else int(voice_id)
        requested = self._default_language if language is None else language
        candidates = self._matching(catalogue, requested)
        if not candidates:
            raise UnknownLanguageError(
                f"no voice for language {requested!r}", list(catalogue.languages)
            )
        if not 0 <= index < len(candidates):
            raise UnknownVoiceError(
                f"voice index {index} out of range for language {requested!r} "
                f"({len(candidates)} voices)",
                [voice.id for voice in candidates],
            )
        return candidates[index]

    def _resolve_id(self, catalogue: _Catalogue, language: str | None, voice_id: str) -> Voice:
        voice = catalogue.by_id.get(voice_id)
        if voice is not None:
            return voice
        # List the voices of the requested language when there are any: that is what
        # the client was choosing among.
        listed = self._matching(catalogue, language) if language is not None else []
        available = [voice.id for voice in listed] or sorted(catalogue.by_id)
        raise UnknownVoiceError(f"unknown voice {voice_id!r}", available)
