"""Admission's arithmetic, without sessions: measured costs, work estimates, the
deadline-feasibility test, the bound's feedback and the line of waiting starts.

Times are trio's clock; the tests that need it run under ``autojump_clock`` and use no
threads."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from streamer.server.runtime import (
    BOUND_FLOOR,
    COST_HALF_LIFE_AUDIO_S,
    ESTIMATE_MARGIN,
    FORGET_S,
    MAX_WAITING_PER_WORKER,
    PRIOR_SECONDS_PER_CHAR,
    RELAX_BELOW,
    RELAX_PER_S,
    RELAX_QUIET_S,
    TIGHTEN_COOLDOWN_S,
    TIGHTEN_FACTOR,
    UNMEASURED_COST,
    Admission,
    Reservation,
)


def measured(cost: float, *, first_wall: float = 0.02, first_audio: float = 0.2,
             largest: float = 1.0, max_load: float = 1.0, workers: int = 2) -> Admission:
    """Admission that has seen voice ``v`` cost ``cost`` worker-seconds per audio second."""
    admission = Admission(workers, max_load)
    admission.observe_chunk("v", first_wall, first_audio, first=True)
    admission.observe_chunk("v", cost * largest, largest)
    v = admission.voice("v")
    v.wall, v.audio = cost * 100, 100.0  # a long history at exactly ``cost``
    return admission


def test_cost_is_wall_time_over_audio_weighted_by_audio() -> None:
    admission = Admission(2, 1.0)
    assert admission.cost("piper") == UNMEASURED_COST
    admission.observe_chunk("piper", 0.08, 1.0)
    assert admission.cost("piper") == pytest.approx(0.08)
    # A short dear chunk counts for the audio it made: (0.08 k + 0.03) / (1 k + 0.1).
    admission.observe_chunk("piper", 0.03, 0.1)
    keep = 0.5 ** (0.1 / COST_HALF_LIFE_AUDIO_S)
    assert admission.cost("piper") == pytest.approx((0.08 * keep + 0.03) / (keep + 0.1))
    # Old audio fades: after many seconds at 0.25 the average is 0.25 (a slower CPU).
    for _ in range(100):
        admission.observe_chunk("piper", 0.5, 2.0)
    assert admission.cost("piper") == pytest.approx(0.25, rel=1e-3)
    admission.observe_chunk("piper", 1.0, 0.0)  # no audio: nothing learned
    assert admission.cost("piper") == pytest.approx(0.25, rel=1e-3)
    assert admission.voice("piper").largest_chunk == 2.0
    assert admission.voice("piper").first_wall is None  # no first chunk seen yet


def test_work_is_estimated_from_the_text_and_learned_per_voice() -> None:
    admission = Admission(2, 1.0)
    m = ESTIMATE_MARGIN
    assert admission.estimate("v", "x" * 100, 1.0) == pytest.approx(
        100 * PRIOR_SECONDS_PER_CHAR * m
    )
    admission.observe_text("v", 100, 5.0, speed=1.0)  # 0.05 s per character
    assert admission.estimate("v", "x" * 40, 1.0) == pytest.approx(2.0 * m)
    assert admission.estimate("v", "x" * 40, 2.0) == pytest.approx(1.0 * m)  # twice as fast
    admission.observe_text("w", 100, 2.5, speed=2.0)  # normalised to speed 1
    assert admission.estimate("w", "x" * 100, 1.0) == pytest.approx(5.0 * m)


async def test_a_stream_alone_fits_and_the_steady_sum_bounds_how_many() -> None:
    # 0.3 worker-s per audio-s, 2 workers at 0.9: six 20 s streams need 1.8: they fit;
    # a seventh would need 2.1.
    admission = measured(0.3, max_load=0.9)
    now = trio.current_time()
    admitted = []
    for _ in range(10):
        r = Reservation("v", 20.0)
        if not admission.try_admit(r, now):
            break
        admitted.append(r)
        r.produced_s, r.playback_end = 2.0, now + 2.0  # each got 2 s ahead
    assert len(admitted) == 6
    assert admission.load() == pytest.approx(1.8)


async def test_short_requests_are_bounded_work() -> None:
    # The same cost, but 1 s sentences, each with 0.6 s made and buffered: what they
    # still need ends within the second, so more of them are in flight at once than
    # the steady sum (six) would allow.
    admission = measured(0.3, max_load=0.9, largest=0.5)
    now = trio.current_time()
    count = 0
    while count < 50:
        r = Reservation("v", 1.0)
        if not admission.try_admit(r, now):
            break
        r.produced_s, r.playback_end = 0.6, now + 0.6
        count += 1
    assert count > 6


async def test_simultaneous_first_chunks_start_one_per_worker() -> None:
    # Nothing made yet: each newcomer's first chunk must run now, one per worker.
    admission = measured(0.3, max_load=0.9)
    now = trio.current_time()
    assert admission.try_admit(Reservation("v", 1.0), now)
    assert admission.try_admit(Reservation("v", 1.0), now)
    assert not admission.try_admit(Reservation("v", 1.0), now)


async def test_a_stream_about_to_run_dry_blocks_newcomers_until_it_is_served() -> None:
    admission = measured(0.5, max_load=0.9, largest=2.0)
    now = trio.current_time()
    hungry = Reservation("v", 10.0, produced_s=1.0, playback_end=now + 0.05)
    admission.force(hungry)  # needs 0.5 x 1.2 s of audio within 50 ms: over capacity
    assert not admission.fits(Reservation("v", 1.0), now)
    hungry.produced_s, hungry.playback_end = 3.0, now + 2.0  # served: 2 s ahead
    assert admission.fits(Reservation("v", 1.0), now)


async def test_unmeasured_voice_starts_alone() -> None:
    admission = Admission(2, 0.9)
    now = trio.current_time()
    assert admission.try_admit(Reservation("new", 5.0), now)
    assert not admission.try_admit(Reservation("new", 5.0), now)  # 1 + 1 > 1.8


def test_underruns_tighten_the_bound_once_per_overload_and_it_relaxes_slowly() -> None:
    admission = Admission(2, 0.9)
    admission.underrun(100.0)
    assert admission.bound == pytest.approx(0.9 * TIGHTEN_FACTOR)
    admission.underrun(100.0 + TIGHTEN_COOLDOWN_S / 2)  # the same overload
    assert admission.bound == pytest.approx(0.9 * TIGHTEN_FACTOR)
    for i in range(40):
        admission.underrun(200.0 + i * TIGHTEN_COOLDOWN_S)
    assert admission.bound == BOUND_FLOOR
    assert admission.capacity == pytest.approx(2 * BOUND_FLOOR)
    # At the floor it stays there: relaxing stops short of the bound that failed.
    last = 200.0 + 39 * TIGHTEN_COOLDOWN_S
    admission.force(Reservation("v", 100.0))
    admission._relax(last + RELAX_QUIET_S)
    admission._relax(last + FORGET_S / 2)
    assert admission.bound == BOUND_FLOOR


def test_relaxing_stops_short_of_the_bound_that_failed_until_it_is_forgotten() -> None:
    admission = Admission(2, 1.0)
    admission.force(Reservation("v", 1000.0))
    admission.underrun(0.0)  # at 1.0
    admission.underrun(10.0)  # at 0.85
    assert admission.bound == pytest.approx(0.85 * TIGHTEN_FACTOR)
    # Not while it is quiet for less than RELAX_QUIET_S, nor with nothing admitted.
    admission._relax(10.0 + RELAX_QUIET_S / 2)
    assert admission.bound == pytest.approx(0.85 * TIGHTEN_FACTOR)
    admission._relax(10.0 + RELAX_QUIET_S + 4)
    grown = RELAX_PER_S * (RELAX_QUIET_S / 2 + 4)
    assert admission.bound == pytest.approx(0.85 * TIGHTEN_FACTOR + grown)
    admission._relax(FORGET_S - 1)
    assert admission.bound == pytest.approx(0.85 * RELAX_BELOW)
    admission._relax(FORGET_S + 10 + 1 / RELAX_PER_S)
    admission._relax(FORGET_S + 10 + 2 / RELAX_PER_S)
    assert admission.bound == 1.0  # never above the configured start


async def test_waiting_is_fifo_and_ends_in_a_refusal_after_patience(
    autojump_clock: trio.testing.MockClock,
) -> None:
    admission = measured(0.9, max_load=0.9, largest=1.0)
    now = trio.current_time()
    for _ in range(2):  # 2 x 0.9 of the 1.8 once their 10 s of buffered audio ran out
        admission.force(Reservation("v", 30.0, produced_s=10.0, playback_end=now + 10.0))
    second = Reservation("v", 30.0)  # a third such stream: no room
    results: dict[str, object] = {}

    async def wait(name: str, r: Reservation, patience: float) -> None:
        results[name] = await admission.wait(r, patience)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "second", second, 1.0)
        await trio.testing.wait_all_tasks_blocked()
        third = Reservation("v", 0.1)  # small, but behind "second" in the line
        nursery.start_soon(wait, "third", third, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        assert admission.waiting == 2
        assert not admission.try_admit(Reservation("v", 0.1), trio.current_time())  # FIFO
    refusal = results["second"]
    assert refusal is not None and refusal.waited_s == pytest.approx(1.0, abs=0.06)
    assert refusal.retry_after_s > 0
    # Once "second" left the line, "third" (tiny) fitted and was admitted.
    assert results["third"] is None and admission.admitted(third)
    assert admission.waiting == 0 and admission.refused == 1


async def test_a_stream_ending_admits_the_head_of_the_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A voice slower than real time (1.5): one stream at a time, and alone it is
    # admitted anyway (nobody would be served otherwise).
    admission = measured(1.5, max_load=0.9)
    now = trio.current_time()
    hog = Reservation("v", 30.0, produced_s=2.0, playback_end=now + 2.0)
    assert admission.try_admit(hog, now)
    waiter = Reservation("v", 5.0)
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            assert await admission.wait(waiter, 100.0) is None

        nursery.start_soon(wait)
        await trio.sleep(5.0)
        assert not admission.admitted(waiter)
        admission.ended(hog)
    assert admission.admitted(waiter)


async def test_cancelled_wait_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    admission = measured(1.5, max_load=0.9)
    now = trio.current_time()
    admission.force(Reservation("v", 30.0, produced_s=2.0, playback_end=now + 2.0))
    r = Reservation("v", 5.0)
    with trio.move_on_after(0.5):
        await admission.wait(r, 100.0)
    assert admission.waiting == 0 and not admission.admitted(r) and admission.streams == 1


def test_the_line_is_bounded() -> None:
    admission = Admission(2, 0.9)
    assert not admission.line_full()
    admission._waiting.extend(object() for _ in range(2 * MAX_WAITING_PER_WORKER))  # type: ignore[misc]
    assert admission.line_full()


def test_streaming_in_growing_windows_is_dropped_when_its_chain_runs_close_to_dry() -> None:
    admission = Admission(2, 0.9)
    assert admission.streaming_safe("v", 0.0, idle=False)  # never measured: stream
    admission.observe_chain("v", 0.05, 0.2, now=None)  # start-up probe: 0.25
    assert admission.streaming_safe("v", 0.0, idle=False)
    for _ in range(20):  # a slower CPU: each window takes 90 % of the one before
        admission.observe_chain("v", 0.18, 0.2, now=100.0)
    assert admission.voice("v").chain == pytest.approx(0.9, rel=0.05)
    assert not admission.streaming_safe("v", 100.0, idle=True)
    # Tried again only after FORGET_S, and only when nothing else computes.
    assert not admission.streaming_safe("v", 101.0 + FORGET_S, idle=False)
    assert admission.streaming_safe("v", 101.0 + FORGET_S, idle=True)


def test_quick_start_needs_a_cheap_voice() -> None:
    admission = Admission(2, 0.9)
    assert not admission.quick_start_safe("v")  # unmeasured: a whole worker each
    admission.observe_chunk("v", 0.1, 1.0)
    assert admission.quick_start_safe("v")
    admission.observe_chunk("v", 30.0, 60.0)  # 0.5 now
    assert not admission.quick_start_safe("v")
