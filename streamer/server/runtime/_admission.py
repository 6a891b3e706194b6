"""Admission: a real-time stream that is admitted never underruns; one that does not fit
waits a little for room, and only then is told ``busy``.

The inference scheduler decides who runs next; it cannot create CPU. Admission looks
ahead: before a request starts a new real-time stream, it asks whether every admitted
stream, and the newcomer, can still get each chunk of audio before its listener needs
it. The algorithm, in four parts:

**What a chunk costs, measured here.** Every chunk of a real-time stream reports the
*wall* seconds it held its worker (the scheduler's clock, from the grant until the
result is back) and the seconds of audio it made. Wall time, not thread CPU time: on
shared vCPUs, with more threads than cores, or next to another process, a chunk takes
longer than its CPU time, and what the listener waits for is the wall time. Per voice
the ratio is averaged over the last ~10 s of audio (weighted by audio, so the small,
dearer first windows count for what they last); so is the first chunk's wall time and
size, and the largest chunk seen. At start-up a probe synthesis of each warmed voice
(``calibrate``) gives the first figures, before any client; a voice never measured
counts as needing a whole worker (``UNMEASURED_COST``) until its first chunk.

**What a request needs, known from its text.** A request is bounded work: its audio is
about its length in characters times the voice's measured seconds per character
(learned from the requests it finished; a prior until then), divided by its speed,
with a margin (``ESTIMATE_MARGIN``; a request that makes more than estimated is taken
to make that much more than it has). A short sentence is a few tenths of a
worker-second, not an open-ended stream.

**Deadline feasibility (earliest-deadline-first demand).** For every admitted stream
and the newcomer, a demand curve: the worker-seconds that must be finished within the
next ``t`` seconds so that its listener never runs dry. A stream with ``b`` seconds of
audio buffered needs its next chunk (about as long as the audio it made so far, as
engines grow their windows, at most the voice's largest chunk) finished by ``b``, and
then ``cost`` worker-seconds per second of audio until its text is spoken. A newcomer
needs its first chunk's wall time now (due when it would be done, stretched by the
bound: one first chunk per worker fits), then the same from when its listener starts,
which is when that chunk arrives. EDF meets every deadline on one processor iff the
summed demand never exceeds the capacity times ``t``; the curves are piecewise linear,
so checking at their corners is exact. And a chunk runs on one worker: each stream's
next chunk must also fit before it is due on its own. Capacity is the workers times a *bound* below
1 that covers what the single-processor test does not (several workers, chunks that
cannot be pre-empted). A request alone is always admitted: if its voice is slower than
real time even on an idle server, refusing it would help nobody.

**Feedback.** The decision is checked against what happens: when the player counts an
underrun, the bound drops to ``TIGHTEN_FACTOR`` of itself (once per overload:
``TIGHTEN_COOLDOWN_S``), down to ``BOUND_FLOOR``; after ``RELAX_QUIET_S`` without an
underrun it creeps back up by ``RELAX_PER_S`` per second while streams are admitted,
to just below the bound that last underran (``RELAX_BELOW``), and after ``FORGET_S``
without one back to ``performance.max_inference_load``, never above it.

**Waiting instead of refusing.** A newcomer that does not fit joins a FIFO line
(bounded: ``MAX_WAITING_PER_WORKER``) and starts as soon as it fits: re-checked whenever
a chunk finishes or a stream ends, and every ``RECHECK_S``. Only after
``performance.max_start_delay_ms`` in line is it refused. So a burst of starts is
spread over the time the first ones take to get ahead, instead of being refused.

Requests that continue a session's stream (sent while its listener still plays, or
queued behind its own playing request) and ``critical`` ones are admitted at once
(``force``): the stream was admitted, an alert must get through; their work counts
from then on, so newcomers wait for it. Downloads (``realtime: false``) are not
admitted here: they run in the scheduler's background class on what real-time streams
leave, bounded by the download gate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import trio

#: A voice's cost is wall over audio, both summed with weights halving every this many
#: seconds of audio: an average over the last paragraph or so.
COST_HALF_LIFE_AUDIO_S: Final = 10.0
#: Worker-seconds per second of audio of a voice never measured: as if one stream took a
#: whole worker, so an unknown voice starts alone until its first chunk says more.
UNMEASURED_COST: Final = 1.0
#: First chunk of a voice never measured: its audio seconds (a small first window).
UNMEASURED_FIRST_CHUNK_S: Final = 0.2
#: Seconds of speech per character of text before a voice has finished a request: about
#: 14 characters a second, ordinary English read aloud (the bundled Piper voice measures
#: 0.058-0.066 on the bench paragraphs).
PRIOR_SECONDS_PER_CHAR: Final = 0.07
#: Seconds per character is averaged with weights halving every this many characters
#: (a few paragraphs).
CHARS_HALF_LIFE: Final = 2000.0
#: A request's audio is taken to be this much more than the average rate says, and a
#: request that has already made more than its estimate is taken to make this much more
#: than it has: texts differ (numbers, abbreviations), and underestimated work is
#: admitted work that is not there.
ESTIMATE_MARGIN: Final = 1.25
#: The first chunk's figures are averaged with this weight for the newest.
FIRST_CHUNK_WEIGHT: Final = 0.2
#: Demand and capacity are compared with this much slack (worker-seconds): float noise.
EPSILON: Final = 1e-9
#: The bound drops to this fraction of itself on an underrun.
TIGHTEN_FACTOR: Final = 0.85
#: Underruns this soon after a tightening are the same overload (a burst of underruns
#: from one cause must not collapse the bound).
TIGHTEN_COOLDOWN_S: Final = 2.0
#: The bound never drops below this: a quarter of the workers is still a working server.
BOUND_FLOOR: Final = 0.25
#: No relaxing this soon after an underrun.
RELAX_QUIET_S: Final = 10.0
#: Relaxing stops short of the bound that last underran, at this fraction of it: going
#: back to where it failed would only fail again (a sawtooth of underruns).
RELAX_BELOW: Final = 0.95
#: ... until this long without an underrun: then the machine may have changed (a noisy
#: neighbour gone) and the bound may grow back to ``performance.max_inference_load``.
FORGET_S: Final = 600.0
#: The bound grows back by this much per second of underrun-free load: a 15 % cut
#: heals in about a minute, slowly enough that the next overload is seen first.
RELAX_PER_S: Final = 0.0025
#: Requests that may wait for room, per worker: a burst of starts (tens) waits; more
#: than that would wait longer than a retry anyway.
MAX_WAITING_PER_WORKER: Final = 32
#: The head of the line re-checks at least this often, even when no chunk finishes (a
#: stream's buffer grows with time alone).
RECHECK_S: Final = 0.05
#: Chunk completions re-check the line at most this often (each check sorts every
#: admitted stream's demand corners; at ~100 chunks a second that would add up).
POKE_INTERVAL_S: Final = 0.01
#: The quick start (``SynthesisOptions.quick_start``: a first window half the usual) is
#: asked for only at or below this cost: the next window is twice as long (engines
#: double their windows) and must be ready before the first has played, at half a core
#: in the worst case (an urgent chunk sharing its core): 2 x 2 x cost <= 1.
QUICK_START_MAX_COST: Final = 0.25
#: Streaming in growing windows works while each window takes less wall time than the
#: audio of the one before it lasts (that is all the listener holds while a stream is
#: getting ahead). Above this ratio, measured, a new stream asks for whole segments
#: instead: half leaves room to wait behind one other chunk of the same size.
CHAIN_RATIO_MAX: Final = 0.5
#: Bounds of the retry hint given with ``busy``.
MIN_RETRY_S: Final = 0.5
MAX_RETRY_S: Final = 5.0


@dataclass(slots=True)
class VoiceCost:
    """What one voice's chunks cost here (decayed sums and averages)."""

    wall: float = 0.0
    audio: float = 0.0
    #: Wall time of a chunk over the audio of the chunk before it, while a stream is
    #: getting ahead (averaged): how close its chain of growing windows runs to dry.
    chain: float = 0.0
    #: How many chain ratios were seen, and when the last was (None: at start-up).
    chains: int = 0
    chain_at: float | None = None
    first_wall: float | None = None
    first_audio: float | None = None
    largest_chunk: float = 0.0
    chars: float = 0.0
    chars_audio: float = 0.0

    @property
    def cost(self) -> float:
        """Wall seconds of a worker per second of audio."""
        return self.wall / self.audio if self.audio > 0 else UNMEASURED_COST

    @property
    def seconds_per_char(self) -> float:
        return self.chars_audio / self.chars if self.chars > 0 else PRIOR_SECONDS_PER_CHAR

    def to_json(self) -> dict[str, object]:
        return {
            "cost": round(self.cost, 4),
            "first_chunk_ms": None if self.first_wall is None else round(self.first_wall * 1000, 1),
            "first_chunk_audio_ms": None
            if self.first_audio is None
            else round(self.first_audio * 1000, 1),
            "largest_chunk_audio_ms": round(self.largest_chunk * 1000, 1),
            "chain_ratio": round(self.chain, 3),
            "seconds_per_char": round(self.seconds_per_char, 4),
        }


@dataclass(eq=False, slots=True)
class Reservation:
    """One real-time request's claim on the workers, from admission until its synthesis
    ends. The player writes its progress into it."""

    voice_id: str
    #: Seconds of audio the request is expected to make (``Admission.estimate``).
    expected_audio_s: float
    #: When the listener's earlier audio runs out, for a request that continues its
    #: session's stream (its first chunk is due then); None for a new stream.
    carried: float | None = None
    #: It waited for room, so it asks the engine for whole segments (cheaper, larger
    #: chunks: ``SynthesisOptions.whole_segments``), whose costs are measured apart.
    whole_segments: bool = False
    #: Audio synthesized so far.
    produced_s: float = 0.0
    #: When the listener will have played everything sent (None before first audio).
    playback_end: float | None = None
    #: A streamed-text context waiting for its text: while its listener is silent
    #: nothing of it is due (its demand returns when the text comes, as a
    #: continuation's does).
    idle: bool = False


def cost_key(voice_id: str, whole_segments: bool) -> str:
    """Chunks made in whole segments cost less and come larger: measured apart."""
    return f"{voice_id} (whole segments)" if whole_segments else voice_id


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new stream is refused, for the ``busy`` reply."""

    #: Worker-seconds per second the admitted streams need now (their cost summed).
    load: float
    #: What they may be given: workers x the current bound.
    capacity: float
    retry_after_s: float
    #: How long the request waited for room before this answer.
    waited_s: float


@dataclass(eq=False, slots=True)
class _Waiter:
    reservation: Reservation
    since: float
    wake: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _Demand:
    """One stream's demand curve piece: ``work`` worker-seconds due at ``due`` seconds
    from now, then ``rate`` per second until ``until``."""

    due: float
    work: float
    rate: float = 0.0
    until: float = 0.0


class Admission:
    """Per-voice costs, the admitted real-time streams, the line of those waiting, and
    the bound (see the module docstring)."""

    def __init__(self, workers: int, max_load: float) -> None:
        if workers < 1 or max_load <= 0:
            raise ValueError("workers must be >= 1 and max_load > 0")
        self.workers = workers
        self.max_load = max_load
        self._bound = max_load
        #: The bound at the last underrun: relaxing stops short of it.
        self._failed_at = max_load
        self._voices: dict[str, VoiceCost] = {}
        self._admitted: set[Reservation] = set()
        self._waiting: deque[_Waiter] = deque()
        self._last_underrun = -math.inf
        self._last_tighten = -math.inf
        self._relaxed_at: float | None = None
        self._poked_at = -math.inf
        #: (when, worker-seconds) each refused request was told to come back with.
        self._promised: deque[tuple[float, float]] = deque()
        self.tightenings = 0
        self.waited = 0
        self.refused = 0

    # --- measurements ------------------------------------------------------------------
    def voice(self, voice_id: str) -> VoiceCost:
        return self._voices.setdefault(voice_id, VoiceCost())

    def observe_chunk(
        self, key: str, wall_s: float, audio_s: float, *, first: bool = False
    ) -> None:
        """One chunk of a voice (``cost_key``) held a worker ``wall_s`` seconds for
        ``audio_s`` seconds of audio; ``first``: the first chunk of its request."""
        if audio_s <= 0:
            return
        v = self.voice(key)
        keep = 0.5 ** (audio_s / COST_HALF_LIFE_AUDIO_S)
        v.wall = v.wall * keep + wall_s
        v.audio = v.audio * keep + audio_s
        v.largest_chunk = max(v.largest_chunk, audio_s)
        if first:
            w = FIRST_CHUNK_WEIGHT
            v.first_wall = wall_s if v.first_wall is None else (1 - w) * v.first_wall + w * wall_s
            v.first_audio = (
                audio_s if v.first_audio is None else (1 - w) * v.first_audio + w * audio_s
            )

    def observe_chain(
        self, key: str, wall_s: float, previous_audio_s: float, now: float | None
    ) -> None:
        """A chunk took ``wall_s`` after one of ``previous_audio_s`` (while its stream
        was getting ahead); ``now`` None: at start-up, before the event loop's clock."""
        if previous_audio_s <= 0:
            return
        v = self.voice(key)
        ratio = wall_s / previous_audio_s
        w = FIRST_CHUNK_WEIGHT
        v.chain = ratio if not v.chains else (1 - w) * v.chain + w * ratio
        v.chains += 1
        v.chain_at = now

    def streaming_safe(self, voice_id: str, now: float, *, idle: bool) -> bool:
        """Whether growing windows of ``voice_id`` keep ahead of their listener here:
        measured ``chain`` at most ``CHAIN_RATIO_MAX``. A voice never measured is
        streamed (its first stream measures it); one measured too slow is tried again
        ``FORGET_S`` later, but only on ``idle`` workers, where it risks no one."""
        v = self._voices.get(voice_id)
        if v is None or not v.chains or v.chain <= CHAIN_RATIO_MAX:
            return True
        if v.chain_at is None:  # measured at start-up: the clock starts now
            v.chain_at = now
        return idle and now - v.chain_at > FORGET_S

    def observe_text(self, voice_id: str, chars: int, audio_s: float, speed: float) -> None:
        """A finished request: ``chars`` characters made ``audio_s`` seconds at ``speed``."""
        if chars <= 0 or audio_s <= 0:
            return
        v = self.voice(voice_id)
        keep = 0.5 ** (chars / CHARS_HALF_LIFE)
        v.chars = v.chars * keep + chars
        v.chars_audio = v.chars_audio * keep + audio_s * speed

    def cost(self, voice_id: str, whole_segments: bool = False) -> float:
        """Worker wall-seconds per second of speech of ``voice_id``."""
        return self._stats(voice_id, whole_segments).cost

    def _stats(self, voice_id: str, whole_segments: bool) -> VoiceCost:
        """The voice's figures in that chunking; a voice never measured in whole
        segments is taken at its streamed figures (dearer: on the safe side)."""
        v = self._voices.get(cost_key(voice_id, whole_segments))
        if v is None or v.audio <= 0:
            v = self._voices.get(voice_id)
        return v if v is not None else VoiceCost()

    def quick_start_safe(self, voice_id: str) -> bool:
        """Whether a quick first window of ``voice_id`` is safe at its measured cost."""
        return self.cost(voice_id) <= QUICK_START_MAX_COST

    def estimate(self, voice_id: str, text: str, speed: float) -> float:
        """Seconds of audio ``text`` will make, at most (the voice's measured rate,
        with ``ESTIMATE_MARGIN``)."""
        v = self._voices.get(voice_id)
        per_char = v.seconds_per_char if v is not None else PRIOR_SECONDS_PER_CHAR
        return len(text) * per_char * ESTIMATE_MARGIN / speed

    # --- the bound and its feedback ----------------------------------------------------
    @property
    def bound(self) -> float:
        return self._bound

    @property
    def capacity(self) -> float:
        """Worker-seconds per second admitted streams may need."""
        return self.workers * self._bound

    def underrun(self, now: float) -> None:
        """A real-time listener ran dry: the decisions were too generous; tighten."""
        self._last_underrun = now
        if now - self._last_tighten < TIGHTEN_COOLDOWN_S:
            return
        self._last_tighten = now
        self._failed_at = self._bound
        self._bound = max(BOUND_FLOOR, self._bound * TIGHTEN_FACTOR)
        self.tightenings += 1

    def _relax(self, now: float) -> None:
        last, self._relaxed_at = self._relaxed_at, now
        quiet = now - self._last_underrun
        if last is None or not self._admitted or quiet < RELAX_QUIET_S:
            return
        limit = self.max_load
        if quiet < FORGET_S:
            limit = min(limit, self._failed_at * RELAX_BELOW)
        grown = min(limit, self._bound + RELAX_PER_S * (now - last))
        self._bound = max(self._bound, grown)

    # --- streams ------------------------------------------------------------------------
    @property
    def streams(self) -> int:
        return len(self._admitted)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admitted(self, reservation: Reservation) -> bool:
        return reservation in self._admitted

    def load(self) -> float:
        """Worker-seconds per second the admitted streams need while they all run."""
        return sum(self.cost(r.voice_id, r.whole_segments) for r in self._admitted)

    def force(self, reservation: Reservation) -> None:
        """Admit without asking (a continuation, a critical request): its work counts."""
        self._admitted.add(reservation)

    def ended(self, reservation: Reservation) -> None:
        """The request's synthesis ended (or it never started); idempotent."""
        if reservation in self._admitted:
            self._admitted.discard(reservation)
            self._pump(trio.current_time())

    def fits(self, reservation: Reservation, now: float) -> bool:
        """Whether every admitted stream and ``reservation`` meet their deadlines.
        Alone it always fits: a voice too slow for real time even on an idle server
        is still served as well as this machine can (refusing it would help nobody)."""
        if not self._admitted:
            return True
        pieces = [d for r in self._admitted for d in self._demand(r, now)]
        pieces += self._demand(reservation, now)
        return _feasible(pieces, self.capacity, self._bound)

    def try_admit(self, reservation: Reservation, now: float) -> bool:
        """Admit at once if nobody waits ahead and it fits; else False (``wait``)."""
        self._relax(now)
        self._pump(now)
        if self._waiting or not self.fits(reservation, now):
            return False
        self._admitted.add(reservation)
        return True

    def line_full(self) -> bool:
        """The line of waiting requests is full: a newcomer is refused at once."""
        return len(self._waiting) >= self.workers * MAX_WAITING_PER_WORKER

    async def wait(self, reservation: Reservation, patience_s: float) -> Refusal | None:
        """Wait in line until ``reservation`` fits (None: admitted) or ``patience_s``
        passed (the refusal). Cancellation gives the place up, and the admission if it
        came at the same moment."""
        since = trio.current_time()
        waiter = _Waiter(reservation, since)
        self._waiting.append(waiter)
        self.waited += 1
        try:
            with trio.move_on_after(patience_s):
                while True:
                    self._pump(trio.current_time())
                    if reservation in self._admitted:
                        return None
                    head = self._waiting[0] is waiter
                    with trio.move_on_after(RECHECK_S if head else math.inf):
                        await waiter.wake.wait()
                    waiter.wake = trio.Event()
            now = trio.current_time()
            self._pump(now)
            if reservation in self._admitted:
                return None
            self.refused += 1
            return Refusal(
                load=self.load(),
                capacity=self.capacity,
                retry_after_s=self.retry_after(now, reservation),  # while still in line
                waited_s=now - since,
            )
        except BaseException:
            self.ended(reservation)
            raise
        finally:
            self._leave(waiter)

    def refusal(self, now: float, reservation: Reservation) -> Refusal:
        """The answer for a newcomer refused without waiting (the line is full)."""
        self.refused += 1
        return Refusal(self.load(), self.capacity, self.retry_after(now, reservation), 0.0)

    def retry_after(self, now: float, reservation: Reservation) -> float:
        """When ``reservation`` is likely to fit: once the workers have done what the
        admitted streams still need, what waits ahead of it, and what the requests
        refused before it were told to come back with. Each refusal adds its own work
        to that last sum, so a refused burst comes back spread, not all at once."""
        while self._promised and self._promised[0][0] < now:
            self._promised.popleft()
        ahead = [w.reservation for w in self._waiting]
        if reservation in ahead:
            ahead = ahead[: ahead.index(reservation)]
        work = sum(self._work(r) for r in (*self._admitted, *ahead))
        work += sum(w for _, w in self._promised) + self._work(reservation)
        retry = min(MAX_RETRY_S, max(MIN_RETRY_S, work / self.capacity))
        self._promised.append((now + retry + RECHECK_S, self._work(reservation)))
        return retry

    def _work(self, r: Reservation) -> float:
        """Worker-seconds ``r`` still needs."""
        cost = self.cost(r.voice_id, r.whole_segments)
        return cost * max(0.0, r.expected_audio_s - r.produced_s)

    def poke(self) -> None:
        """Something finished (a chunk): re-check the line, at most every
        ``POKE_INTERVAL_S``."""
        if not self._waiting:
            return
        now = trio.current_time()
        if now - self._poked_at >= POKE_INTERVAL_S:
            self._pump(now)

    def _leave(self, waiter: _Waiter) -> None:
        was_head = bool(self._waiting) and self._waiting[0] is waiter
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass  # admitted: already out of the line
        if was_head and self._waiting:
            self._waiting[0].wake.set()  # the new head keeps the re-check timer

    def _pump(self, now: float) -> None:
        """Admit from the head of the line while the head fits (FIFO: nobody jumps
        the line, so a long request is not starved by short ones)."""
        self._poked_at = now
        while self._waiting:
            head = self._waiting[0]
            if not self.fits(head.reservation, now):
                return
            self._waiting.popleft()
            self._admitted.add(head.reservation)
            head.wake.set()
            if self._waiting:
                self._waiting[0].wake.set()

    def _demand(self, r: Reservation, now: float) -> list[_Demand]:
        """``r``'s demand curve (see the module docstring), from ``now``."""
        if r.idle and (r.playback_end is None or r.playback_end <= now):
            return []
        v = self._stats(r.voice_id, r.whole_segments)
        cost = v.cost
        first_audio = v.first_audio if v.first_audio is not None else UNMEASURED_FIRST_CHUNK_S
        first_wall = v.first_wall if v.first_wall is not None else cost * first_audio
        largest = max(v.largest_chunk, first_audio)
        expected = max(r.expected_audio_s, r.produced_s * ESTIMATE_MARGIN)
        remaining = expected - r.produced_s
        pieces: list[_Demand] = []
        if r.playback_end is None:
            # No audio yet: the first chunk runs now and its listener starts when it
            # arrives (a continuation's is due when the earlier audio runs out). Its
            # run time stretched by the bound: so a first chunk alone on each worker
            # fits, as it does on the machine.
            soonest = first_wall / self._bound
            due = soonest if r.carried is None else max(soonest, r.carried - now)
            pieces.append(_Demand(due, first_wall))
            remaining -= first_audio
            if remaining <= 0:
                return pieces
            buffered, produced = due + first_audio, first_audio
        else:
            buffered, produced = max(0.0, r.playback_end - now), r.produced_s
        # Engines grow their windows: the next chunk is about as long as the audio made
        # so far (plus a first window), never longer than the voice's largest.
        chunk = min(largest, produced + first_audio)
        if remaining <= chunk:
            pieces.append(_Demand(buffered, cost * remaining))
        else:
            pieces.append(
                _Demand(buffered, cost * chunk, cost, buffered + remaining - chunk)
            )
        return pieces

    # --- reports ------------------------------------------------------------------------
    def to_json(self, now: float) -> dict[str, object]:
        self._relax(now)
        return {
            "streams": self.streams,
            "waiting": self.waiting,
            "load": round(self.load(), 3),
            "capacity": round(self.capacity, 3),
            "bound": round(self._bound, 3),
            "max_load": self.max_load,
            "tightenings": self.tightenings,
            "waited": self.waited,
            "refused": self.refused,
            "voices": {voice_id: v.to_json() for voice_id, v in sorted(self._voices.items())},
        }


def _feasible(pieces: list[_Demand], capacity: float, bound: float) -> bool:
    """Whether the summed demand stays within ``capacity`` x ``t`` at every ``t``, and
    each stream's next chunk fits before its due time on the one worker it runs on.

    Demand is piecewise linear (jumps at each piece's ``due``, slopes until ``until``)
    and the capacity line is straight, so the corners are the only places to look.
    """
    events: list[tuple[float, float, float]] = []  # (t, work added, rate change)
    for d in pieces:
        if d.work > bound * d.due + EPSILON:
            return False  # a chunk cannot be shared out among the workers
        events.append((d.due, d.work, d.rate))
        if d.rate:
            events.append((d.until, 0.0, -d.rate))
    events.sort()
    demand = rate = last = 0.0
    for t, work, change in events:
        demand += rate * (t - last) + work
        rate += change
        last = t
        if demand > capacity * t + EPSILON:
            return False
    return True
