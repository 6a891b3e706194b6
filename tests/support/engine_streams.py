"""Driving a real engine's streams in tests: a voice by id, a stream's whole audio, and
the same texts synthesized from several threads at once.

The engines themselves are loaded once per package by
``tests/integration/engines/conftest.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Final

import numpy as np

from streamer.engines.base import Engine, Pcm, SynthesisOptions, Voice

#: Bound on a thread's join, for failure detection only (never a speed claim): generous
#: enough for a neural model on a loaded two-core machine.
THREAD_TIMEOUT_S: Final = 120.0


def voice_of(engine: Engine, voice_id: str) -> Voice:
    """``engine``'s voice ``voice_id`` (``StopIteration`` when it offers none by that id)."""
    return next(voice for voice in engine.voices() if voice.id == voice_id)


def whole(chunks: Iterator[Pcm]) -> Pcm:
    """All of a stream's samples, in order."""
    return np.concatenate(list(chunks))


def synthesize_concurrently(
    engine: Engine, jobs: Mapping[str, tuple[Voice, str]], rounds: int
) -> dict[str, Pcm]:
    """Each job's text, synthesized ``rounds`` times over in a thread of its own, all the
    threads released at once (so their segments interleave); the last round's audio of
    each. Any thread's exception is raised here, in the test's thread."""
    results: dict[str, Pcm] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(key: str) -> None:
        voice, text = jobs[key]
        try:
            start.wait()
            for _ in range(rounds):
                results[key] = whole(engine.stream(voice, text, SynthesisOptions()))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(key,)) for key in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT_S)
    if errors:
        raise errors[0]
    assert sorted(results) == sorted(jobs), "a thread did not finish in time"
    return results
