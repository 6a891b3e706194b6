"""The process-wide inference scheduler shared by every session.

Inference is CPU-bound and the machine has few cores, so chunks of inference are
queued rather than all run at once. Whoever waits is served in this order:

1. chunks *at risk* — whose listener runs out of audio within ``URGENT_WITHIN_S`` —
   by deadline alone (earliest deadline first; priority only breaks a tie). A new
   request's first chunk is at risk from its arrival (its deadline), so a ``critical``
   alert runs next unless another listener is already running dry;
2. every other real-time chunk by priority (``critical``, ``high``, ``normal``), then
   deadline: the chunk whose listener will run out of audio soonest. A session far
   ahead of playback has a late deadline and yields to one that is about to underrun —
   that is what keeps many sessions real-time at once and stops one long text from
   starving everybody else;
3. background chunks (downloads), by deadline;

and arrival order for ties. Priority orders work only while no deadline is at risk:
served before every ``normal`` chunk whatever the deadlines, ``high`` streams building
their lead made a ``normal`` listener run dry 52 ms (issue #14) — and admission's
promise is that an admitted stream never underruns, whatever its priority. Chunks are
ranked when a worker frees up, so a chunk becomes at risk while it waits.

A chunk of inference cannot be pre-empted once it runs (threads cannot be interrupted),
and the largest decoder windows take ~0.2 s of a core. Queued behind two of them, a
request's first chunk — or the second window of a request that has only ~0.2 s of
audio buffered — would wait that long: slow first audio, and an audible gap. So chunks
run in two lanes:

- *urgent*: ``high``/``critical`` chunks and chunks whose listener runs dry within
  ``URGENT_WITHIN_S`` (every request's first chunk: its deadline is its arrival). Up to
  ``workers`` of them run at once, whatever the bulk lane is doing;
- *bulk*: every other chunk (seconds of audio still buffered). Together with the urgent
  ones at most ``workers`` run.

Each lane has its own threads, with OS priorities (Linux nice, per thread) below the
event loop's: urgent by ``URGENT_NICE_INCREMENT``, bulk ten steps further. When both
lanes are busy there are more threads than cores, and the kernel, not the queue, gives
the urgent chunks the CPU: that is the pre-emption the threads lack. Bulk chunks only
slow down, which their seconds of buffered audio absorb. The event loop, above both,
is run at once when a message arrives, so protocol replies do not wait for inference.
Total throughput does not suffer: with one onnxruntime thread per chunk, 4 chunks on 2
cores produce as much audio per second as 2 (scripts.baseline: 21.7x vs 22.0x real
time on the 2-core test machine).

Measured with scripts.load (50 connected, 20 speaking, 60 s, 2 cores): 10
underruns per run, all at the second window of a request, and TTFA p95 180 ms with one
lane; 0 underruns and TTFA p95 77-88 ms with two (BENCHMARKS.md).

One unit of work is one ``next()`` of an engine's chunk generator, run in a worker
thread. Cancelling a waiting task removes it from the queue; cancelling a running one
waits for its chunk to finish and discards the result.

Each chunk is timed on the event loop's clock from the moment it is granted a worker
until its result is back (``run_timed``): wall time under whatever else the cores were
doing, which is what admission needs to know (thread CPU time would hide a core shared
with another chunk, another process or a noisy neighbour's VM).

Where the chunks run is one seam, ``ChunkRunner``: the lanes' threads in the server; an
inline runner on a virtual clock in tests (``autojump_clock`` cannot wait for real
threads: virtual time would race ahead of them).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

import outcome
import trio

from ...protocol import Priority

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A chunk whose listener runs out of audio within this many seconds is urgent (at risk):
#: it runs in the urgent lane and is ordered by its deadline alone. Above the
#: longest chunk's run time (~0.2 s on one core) so that a waiting bulk chunk is
#: re-examined (at the next completion) before it is late, and well below the 2 s
#: real-time lead, so steady-state streaming (each chunk asked for 2 s ahead) stays in
#: the bulk lane. A stream still getting ahead (a burst of starts) asks for its chunks
#: with less than that buffered: at 0.5 s its second clause went to the bulk lane and,
#: at nice +15 behind the newcomers' urgent first chunks, took 0.7-1.0 s of wall time
#: for ~0.1 s of work and arrived late (BENCHMARKS.md, section 9).
URGENT_WITHIN_S: Final = 1.0
#: How much lower than the event loop's the OS priority of urgent threads is: enough
#: that the kernel runs the event loop at once when a message arrives (protocol replies
#: in a few ms while both cores compute), not so much that other work starves them.
URGENT_NICE_INCREMENT: Final = 5
#: The same for bulk threads. Ten steps below the urgent threads weighs ~1/9 of them in
#: Linux's CFS, so an urgent chunk sharing a core with a bulk one gets ~90 % of it.
BULK_NICE_INCREMENT: Final = 15
#: Worker threads idle this long end (Trio's own thread cache uses the same 10 s).
IDLE_THREAD_EXIT_S: Final = 10.0
#: The largest nice value Linux accepts.
_MAX_NICE: Final = 19


class ChunkRunner(Protocol):
    """Runs one granted chunk of inference and returns its result; not cancellable
    (a running chunk cannot be stopped, only waited for). ``urgent`` says which lane
    granted it."""

    async def __call__(self, fn: Callable[[], T], *, urgent: bool) -> T: ...


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    """A chunk's result and the wall seconds it held its worker."""

    value: T
    seconds: float


class _Lane:
    """Worker threads at one OS priority, started on demand, ended when idle.

    Like Trio's own thread cache: a job goes to an idle thread, or to a new one if none
    is idle; a thread idle for ``IDLE_THREAD_EXIT_S`` ends. The scheduler bounds the
    jobs running at once, and so the threads.
    """

    def __init__(self, name: str, nice_increment: int) -> None:
        self.name = name
        self._nice_increment = nice_increment
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._names = itertools.count()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            mailbox = self._idle.pop() if self._idle else None
        if mailbox is None:
            mailbox = queue.SimpleQueue()
            # Daemon: an idle worker must not keep the process alive at exit.
            threading.Thread(
                target=self._work,
                args=(mailbox,),
                name=f"inference-{self.name}-{next(self._names)}",
                daemon=True,
            ).start()
        mailbox.put(job)

    def _work(self, mailbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        if self._nice_increment:
            _lower_thread_priority(self._nice_increment)
        while True:
            try:
                job = mailbox.get(timeout=IDLE_THREAD_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if mailbox in self._idle:  # nobody picked us meanwhile: end
                        self._idle.remove(mailbox)
                        return
                continue  # picked as we timed out: the job is on its way
            job()
            del job  # drop the job's references while idle
            with self._lock:
                self._idle.append(mailbox)


def _lower_thread_priority(increment: int) -> None:
    """Raise this thread's nice value (Linux nice is per thread; elsewhere it is per
    process, so nothing is done). Raising nice needs no privilege."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(_MAX_NICE, current + increment))
    except OSError as exc:  # a sandbox may forbid it; the lanes still work, unprioritised
        log.warning("cannot lower the priority of inference thread %d: %s", tid, exc)


@dataclass(eq=False, slots=True)
class _Waiter:
    background: bool
    priority: int
    deadline: float
    #: Arrival order, for ties.
    seq: int
    event: trio.Event = field(default_factory=trio.Event)
    #: Set when granted: whether the chunk runs in the urgent lane.
    urgent: bool | None = None
    cancelled: bool = False

    def at_risk(self, now: float) -> bool:
        """Its listener runs dry within ``URGENT_WITHIN_S`` (never a download's)."""
        return not self.background and self.deadline - now <= URGENT_WITHIN_S

    def rank(self, now: float) -> tuple[int, float, float, int]:
        """The order of the module docstring, at ``now``: lowest first."""
        if self.at_risk(now):
            return (0, self.deadline, -self.priority, self.seq)
        return (2 if self.background else 1, -self.priority, self.deadline, self.seq)


@dataclass(frozen=True, slots=True)
class InferenceStats:
    """The scheduler's figures at one moment (REST status and metrics, Prometheus)."""

    workers: int
    running: int
    waiting: int
    #: How far the most overdue waiting chunk is past its deadline (``busy`` above
    #: ``performance.busy_lateness_ms``).
    lateness_s: float
    chunks_run: int
    urgent_chunks_run: int
    busy_seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "workers": self.workers,
            "running": self.running,
            "waiting": self.waiting,
            "lateness_ms": round(self.lateness_s * 1000, 1),
            "chunks_run": self.chunks_run,
            "urgent_chunks_run": self.urgent_chunks_run,
            "busy_seconds": round(self.busy_seconds, 3),
        }


class ThreadRunner:
    """The server's ``ChunkRunner``: each lane's threads at its OS priority.

    ``slowdown`` is a bench and test option, never a setting: after each chunk a worker
    sleeps ``slowdown`` times the chunk's run time, so the workers behave like a CPU
    ``1 + slowdown`` times slower (with the cores left free while they sleep). It is how
    the benchmarks show that admission holds on a slower machine.
    """

    def __init__(self, slowdown: float = 0.0) -> None:
        if slowdown < 0:
            raise ValueError("slowdown must be >= 0")
        self.slowdown = slowdown
        self._urgent = _Lane("urgent", URGENT_NICE_INCREMENT)
        self._bulk = _Lane("bulk", BULK_NICE_INCREMENT)

    async def __call__(self, fn: Callable[[], T], *, urgent: bool) -> T:
        return await _run_in(self._urgent if urgent else self._bulk, fn, self.slowdown)


class InferenceScheduler:
    """Grants worker threads to chunks of inference by (priority, deadline, arrival),
    in an urgent and a bulk lane (see the module docstring)."""

    def __init__(self, workers: int, runner: ChunkRunner | None = None) -> None:
        """``runner`` replaces the worker threads (see ``ChunkRunner``); the lanes'
        threads (``ThreadRunner``) in the server."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._running = 0
        self._running_urgent = 0
        #: Waiting chunks, ranked when a worker frees up (the rank changes with time).
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        #: Where granted chunks run (the lanes' threads unless a test gives another).
        self.runner: ChunkRunner = runner or ThreadRunner()
        #: Called after every chunk (admission re-checks who may start).
        self.on_chunk_done: Callable[[], None] | None = None
        self.chunks_run = 0
        self.urgent_chunks_run = 0
        self.busy_seconds = 0.0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiting if not w.cancelled)

    @property
    def idle(self) -> bool:
        """Nothing runs or waits: a chunk submitted now gets a core to itself."""
        return self._running == 0 and not any(not w.cancelled for w in self._waiting)

    def lateness(self) -> float:
        """Seconds the most overdue waiting real-time chunk is past its deadline (0 if
        none is). Background chunks wait by design and do not count."""
        now = trio.current_time()
        late = [now - w.deadline for w in self._waiting if not w.cancelled and not w.background]
        return max([0.0, *late])

    def stats(self) -> InferenceStats:
        return InferenceStats(
            workers=self.workers,
            running=self.running,
            waiting=self.waiting,
            lateness_s=self.lateness(),
            chunks_run=self.chunks_run,
            urgent_chunks_run=self.urgent_chunks_run,
            busy_seconds=self.busy_seconds,
        )

    def _lane_for(self, waiter: _Waiter, now: float) -> bool | None:
        """The lane ``waiter`` may start in now (True: urgent, False: bulk), or None if
        it must wait."""
        urgent = waiter.at_risk(now) or (
            not waiter.background and waiter.priority > Priority.NORMAL
        )
        if urgent:
            return True if self._running_urgent < self.workers else None
        return False if self._running < self.workers else None

    def _grant(self, waiter: _Waiter, urgent: bool) -> None:
        waiter.urgent = urgent
        self._running += 1
        if urgent:
            self._running_urgent += 1
        waiter.event.set()

    def _dispatch(self) -> None:
        """Start the best-ranked waiters while their lane has room.

        Only the best needs checking: urgent waiters (at risk, or ``high`` and above)
        rank before bulk ones, and when the best cannot start, nothing below it can (a
        bulk chunk needs a free slot, which would also fit an urgent one). Ranked by a
        scan, not a heap: the rank moves with the clock, and a few dozen chunks wait
        at most.
        """
        self._waiting = [w for w in self._waiting if not w.cancelled]
        now = trio.current_time()
        while self._waiting:
            best = min(self._waiting, key=lambda w: w.rank(now))
            lane = self._lane_for(best, now)
            if lane is None:
                return
            self._waiting.remove(best)
            self._grant(best, lane)

    def _release(self, urgent: bool) -> None:
        self._running -= 1
        if urgent:
            self._running_urgent -= 1
        self._dispatch()

    async def run(
        self,
        fn: Callable[[], T],
        *,
        priority: Priority,
        deadline: float,
        background: bool = False,
    ) -> T:
        """``run_timed``'s value alone."""
        timed = await self.run_timed(
            fn, priority=priority, deadline=deadline, background=background
        )
        return timed.value

    async def run_timed(
        self,
        fn: Callable[[], T],
        *,
        priority: Priority,
        deadline: float,
        background: bool = False,
    ) -> Timed[T]:
        """Run ``fn()`` in a worker once a slot is granted; return its result and the
        wall seconds from the grant until the result was back (not the wait for a slot).

        A ``background`` chunk (a download: nobody listens in real time) starts only
        when no real-time chunk waits, and never in the urgent lane.

        Cancellation while waiting gives the place up; once ``fn`` runs it is waited
        for (its result dropped by the caller's next checkpoint).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        waiter = _Waiter(background, int(priority), deadline, next(self._seq))
        self._waiting.append(waiter)
        self._dispatch()
        if waiter.urgent is None:
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.urgent is not None:
                    self._release(waiter.urgent)  # granted as we were cancelled
                else:
                    waiter.cancelled = True
                raise
        urgent = waiter.urgent
        assert urgent is not None
        started = trio.current_time()
        try:
            value = await self.runner(fn, urgent=urgent)
            seconds = trio.current_time() - started
            return Timed(value, seconds)
        finally:
            self.chunks_run += 1
            if urgent:
                self.urgent_chunks_run += 1
            self.busy_seconds += trio.current_time() - started
            self._release(urgent)
            if self.on_chunk_done is not None:
                self.on_chunk_done()


async def _run_in(lane: _Lane, fn: Callable[[], T], slowdown: float = 0.0) -> T:
    """Run ``fn`` on one of ``lane``'s threads; not cancellable (like
    ``trio.to_thread.run_sync``): a running chunk cannot be stopped, only waited for.
    With a ``slowdown`` the thread sleeps that many times ``fn``'s run time before it
    hands the result back (``ThreadRunner``)."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    result: list[outcome.Outcome[T]] = []

    def report(value: outcome.Outcome[T]) -> None:  # in the Trio thread
        result.append(value)
        done.set()

    def job() -> None:  # in the worker thread
        started = time.perf_counter()
        value = outcome.capture(fn)
        if slowdown:
            time.sleep(slowdown * (time.perf_counter() - started))
        try:
            token.run_sync_soon(report, value)
        except trio.RunFinishedError:
            pass  # the event loop is gone; nobody waits for this result

    lane.submit(job)
    with trio.CancelScope(shield=True):
        await done.wait()
    return result[0].unwrap()
