"""Fixes to piper-tts 1.8.0's espeak-ng bridge (``piper.espeakbridge``, C), and the
lock its phonemizer is used under.

Both fixes stop memory leaks found by ``python -m scripts.soak_memory`` (figures in
BENCHMARKS.md); neither changes a phoneme:

- ``release-leaked-clauses``: ``get_phonemes`` appends each clause's freshly built
  ``(phonemes, terminator, end_of_sentence)`` tuple to its result list without
  releasing its own reference, so no clause is ever freed: ~290 B per clause, without
  bound.
- ``set-voice-on-change``: ``PiperVoice.phonemize`` calls ``set_voice`` every time, and
  the espeak-ng linked into the bridge keeps ~1.3 KB of C heap per call, even for the
  voice already set: at 20 speaking sessions ~0.5 MiB/min, the whole of the process's
  growth in a 30-minute soak.

Version guard: on any version other than ``WRITTEN_FOR`` nothing is patched and a
warning is logged once. Both fixes rest on the bridge's exact behaviour, and a wrong
guess costs more than the leak: dropping a reference the bridge does not leak frees a
tuple still in use (a crash), and skipping a ``set_voice`` a newer phonemizer relies on
would phonemize with another language's rules. The leaks cost memory slowly and are
measured, so running unpatched is the safe failure;
``tests/integration/engines/test_patches.py`` fails on another version, so an upgrade
gets re-measured instead of silently unpatched.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from typing import Any, Final

from streamer.engines.patches import PatchReport, installed_version, mark, marker_of, warn_version

__all__ = [
    "DISTRIBUTION",
    "PHONEMIZE_LOCK",
    "RELEASE_LEAKED_CLAUSES",
    "SET_VOICE_ON_CHANGE",
    "WRITTEN_FOR",
    "apply",
    "patch_bridge",
    "release_leaked_clauses",
    "set_voice_only_on_change",
]

logger = logging.getLogger(__name__)

DISTRIBUTION: Final = "piper-tts"
WRITTEN_FOR: Final = "1.8.0"
RELEASE_LEAKED_CLAUSES: Final = "release-leaked-clauses"
SET_VOICE_ON_CHANGE: Final = "set-voice-on-change"
#: What the bridge must offer for the fixes to apply.
_BRIDGE_FUNCTIONS: Final = ("get_phonemes", "set_voice", "initialize")

#: piper-tts's phonemizer drives one process-wide espeak-ng: its set-voice and
#: get-phonemes calls must not interleave between threads (voices of two languages).
#: Hold it around every ``PiperVoice.phonemize``. piper-tts 1.8.0 also serialises them
#: with a lock of its own; this one keeps each pair together, which the
#: ``set-voice-on-change`` fix depends on, whatever the library does.
PHONEMIZE_LOCK: Final = threading.Lock()

#: References a fresh clause tuple has in ``release_leaked_clauses``' check when only
#: the result list owns it: the list's slot, the loop variable, ``getrefcount``'s argument.
_OWNED_CLAUSE_REFS: Final = 3

_apply_lock = threading.Lock()
_report: PatchReport | None = None


def apply() -> PatchReport:
    """Patch the installed piper-tts's espeak bridge, once per process.

    The first call imports ``piper.espeakbridge`` and decides (see the module's
    docstring); later calls return the first call's report and change nothing.
    """
    global _report
    with _apply_lock:
        if _report is None:
            from piper import espeakbridge

            _report = patch_bridge(espeakbridge, installed_version(DISTRIBUTION))
        return _report


def patch_bridge(bridge: Any, installed: str | None) -> PatchReport:
    """Apply both fixes to ``bridge`` if ``installed`` is ``WRITTEN_FOR`` and the bridge
    has the functions they wrap; otherwise leave it alone, logged. Idempotent: a
    function already replaced (marked) is not wrapped again."""
    if installed != WRITTEN_FOR:
        note = warn_version(DISTRIBUTION, WRITTEN_FOR, installed, "espeak bridge left unpatched")
        return PatchReport(DISTRIBUTION, WRITTEN_FOR, installed, (), note)
    missing = [name for name in _BRIDGE_FUNCTIONS if not callable(getattr(bridge, name, None))]
    if missing:
        note = f"espeak bridge lacks {', '.join(missing)}; left unpatched"
        logger.warning("piper-tts %s: %s", installed, note)
        return PatchReport(DISTRIBUTION, WRITTEN_FOR, installed, (), note)
    release_leaked_clauses(bridge)
    set_voice_only_on_change(bridge)
    return PatchReport(
        DISTRIBUTION, WRITTEN_FOR, installed, (RELEASE_LEAKED_CLAUSES, SET_VOICE_ON_CHANGE)
    )


def release_leaked_clauses(bridge: Any) -> None:
    """Wrap ``bridge.get_phonemes`` so every clause it returns is owned by the list alone.

    Its first non-empty result tells whether the bridge leaks (a fresh tuple with a
    reference beyond the list's); if so every clause's extra reference is dropped from
    then on, and a bridge that does not leak passes through untouched. (The check
    cannot run at patch time: the bridge crashes if called before piper has initialised
    espeak-ng.)
    """
    original = bridge.get_phonemes
    if marker_of(original) == RELEASE_LEAKED_CLAUSES:
        return
    leaks: bool | None = None

    def get_phonemes(text: str) -> list[tuple[str, str, bool]]:
        nonlocal leaks
        clauses: list[tuple[str, str, bool]] = original(text)
        if leaks is None and clauses:
            leaks = any(sys.getrefcount(clause) > _OWNED_CLAUSE_REFS for clause in clauses)
        if leaks:
            for clause in clauses:
                ctypes.pythonapi.Py_DecRef(ctypes.py_object(clause))
        return clauses

    bridge.get_phonemes = mark(get_phonemes, RELEASE_LEAKED_CLAUSES)


def set_voice_only_on_change(bridge: Any) -> None:
    """Wrap ``bridge.set_voice`` to call through only when the voice changes (or after
    a re-``initialize``, which resets espeak-ng's voice).

    ``PHONEMIZE_LOCK`` keeps each set-voice + get-phonemes pair together, so skipping a
    call never leaves another thread's voice in place.
    """
    original_set = bridge.set_voice
    if marker_of(original_set) == SET_VOICE_ON_CHANGE:
        return
    original_initialize = bridge.initialize
    current: str | None = None

    def set_voice(voice: str) -> None:
        nonlocal current
        if voice != current:
            original_set(voice)
            current = voice

    def initialize(data_dir: str) -> None:
        nonlocal current
        current = None
        original_initialize(data_dir)

    bridge.set_voice = mark(set_voice, SET_VOICE_ON_CHANGE)
    bridge.initialize = mark(initialize, SET_VOICE_ON_CHANGE)
