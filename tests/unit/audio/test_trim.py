"""Streaming silence trimming: ends trimmed, middle intact, silence held only while silent."""

from __future__ import annotations

import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from streamer.audio import TRIM_PAD_SECONDS, TRIM_THRESHOLD, SilenceTrimmer

RATE = 22050
PAD = round(RATE * TRIM_PAD_SECONDS)
Pcm = npt.NDArray[np.float32]


def sound(n: int, seed: int = 0) -> Pcm:
    # Every sample clearly above the threshold, so the boundaries are exact.
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.1, 0.5, n)
    return (magnitude * rng.choice([-1.0, 1.0], n)).astype(np.float32)


def quiet(n: int) -> Pcm:
    # Silence as engines make it: not zero, under the threshold.
    return np.full(n, TRIM_THRESHOLD / 2, dtype=np.float32)


def run(trimmer: SilenceTrimmer, chunks: list[Pcm]) -> tuple[list[Pcm], Pcm]:
    outs = [trimmer.push(chunk) for chunk in chunks]
    return outs, trimmer.finish()


def test_trims_ends_keeps_middle() -> None:
    lead, a, middle, b, tail = quiet(5000), sound(3000, 1), quiet(4000), sound(2000, 2), quiet(6000)
    signal = np.concatenate([lead, a, middle, b, tail])
    # Irregular chunks whose boundaries fall inside every region.
    cuts = [1200, 4700, 5100, 7999, 9000, 12500, 14000, 15500, 19000]
    chunks = np.split(signal, cuts)
    outs, end = run(SilenceTrimmer(RATE), chunks)
    out = np.concatenate([*outs, end])
    expected = np.concatenate([lead[-PAD:], a, middle, b, tail[:PAD]])
    assert np.array_equal(out, expected)


def test_holds_only_the_current_silence() -> None:
    trimmer = SilenceTrimmer(RATE)
    a, gap, b = sound(1000, 3), quiet(3000), sound(500, 4)
    assert np.array_equal(trimmer.push(a), a)
    # Silence after sound is held: it may turn out to be the end.
    assert trimmer.push(gap).size == 0
    # Sound follows: the held silence is released untouched, ahead of the sound.
    assert np.array_equal(trimmer.push(b), np.concatenate([gap, b]))
    assert np.array_equal(trimmer.finish(), np.zeros(0, dtype=np.float32))


def test_sound_then_silence_in_one_chunk() -> None:
    trimmer = SilenceTrimmer(RATE)
    a, gap = sound(800, 5), quiet(700)
    assert np.array_equal(trimmer.push(np.concatenate([a, gap])), a)
    assert np.array_equal(trimmer.finish(), gap[:PAD])


def test_lead_in_pad_reaches_into_earlier_chunks() -> None:
    trimmer = SilenceTrimmer(RATE)
    lead = quiet(50)  # shorter than the pad, in several chunks
    assert trimmer.push(lead[:20]).size == 0
    assert trimmer.push(lead[20:]).size == 0
    a = sound(300, 6)
    assert np.array_equal(trimmer.push(a), np.concatenate([lead, a]))


def test_all_silence_gives_nothing() -> None:
    outs, end = run(SilenceTrimmer(RATE), [quiet(1000), quiet(3000), np.zeros(0, np.float32)])
    assert all(o.size == 0 for o in outs)
    assert end.size == 0


def test_leading_silence_memory_is_bounded() -> None:
    trimmer = SilenceTrimmer(RATE)
    chunk = quiet(1000)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        for _ in range(10):
            trimmer.push(chunk)
        settled, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            trimmer.push(chunk)
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    # Only the last pad of silence can ever be sent: what is held stays under a pad and
    # a chunk (not the 200 chunks pushed since).
    assert grown < (PAD + chunk.size) * chunk.itemsize
    # ... and it is that pad which leads the sound once it comes.
    out = trimmer.push(sound(100))
    assert PAD <= out.size < PAD + chunk.size + 100


@pytest.mark.parametrize("chunk", [1, 7, 441])
def test_chunking_does_not_change_the_result(chunk: int) -> None:
    signal = np.concatenate([quiet(900), sound(1500, 7), quiet(600), sound(700, 8), quiet(900)])
    whole_out, whole_end = run(SilenceTrimmer(RATE), [signal])
    pieces = [signal[i : i + chunk] for i in range(0, signal.size, chunk)]
    outs, end = run(SilenceTrimmer(RATE), pieces)
    assert np.array_equal(np.concatenate([*outs, end]), np.concatenate([*whole_out, whole_end]))


def test_does_not_keep_the_callers_buffer() -> None:
    trimmer = SilenceTrimmer(RATE)
    trimmer.push(sound(100, 9))
    buffer = quiet(500)
    trimmer.push(buffer)
    buffer[:] = 0.9  # the caller reuses its buffer
    assert np.all(trimmer.finish() < TRIM_THRESHOLD)
