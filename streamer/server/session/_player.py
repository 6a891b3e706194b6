"""The player of one request: engine chunks → audio pipeline → frames, paced to the
listener's real-time clock.

Shared by WebSocket sessions and the HTTP speech routes. A job owns no socket: it hands
each encoded frame to an ``emit`` callback (the session's outbox, or an HTTP response
channel) and returns when the text is spoken, raising ``Cancelled`` when its scope is
cancelled. Cancellation waits for at most the one chunk of inference already running in
a worker thread.

``ListenerClock`` is the one owner of "when does this listener run dry": a session keeps
one for all its requests (the next request plays after the audio the listener still
holds), and every job reads and moves it as it sends audio.

A job speaks *segments* in order, into one audio stream: a ``synthesize`` is one
segment, a streamed-text context as many as its ``SegmentFeed`` delivers. Timing runs
on across segments (word times, the encoder, the listener's clock), so the listener
hears one utterance. When a context's next text comes only after the listener has
played everything (the text came slower than speech), the clock restarts at that
segment's first frame without counting an underrun: the silence was the text's, not
ours.

A *timed* job asks the engine for word timings (``alignment.timed``) and
reports each word before the frames of the chunk its start falls in; it keeps every
word so that an interrupt can say which ones the listener heard.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Final

import trio

from ...audio import AudioPipeline, OutputSpec, StreamFormat
from ...engines.alignment import timed, word_spans
from ...engines.base import Engine, Pcm, SynthesisOptions, Voice
from ...engines.timings import TimedChunk, WordTiming
from ...protocol import Priority, Segment, WordTimestamp
from ..runtime import Admission, InferenceScheduler, Metrics, Reservation, Underrun, cost_key

log = logging.getLogger(__name__)

#: A frame this late is not yet an underrun: timer and scheduling noise.
UNDERRUN_TOLERANCE_S: Final = 0.001

#: Called with each encoded frame; returns False when the consumer no longer wants
#: frames of this job (it was interrupted), which ends the job early.
Emit = Callable[[bytes], Awaitable[bool]]
#: Called (synchronously) with words about to be heard: before the frames of the chunk
#: their starts fall in. The second argument: the times are estimated.
OnWords = Callable[[Sequence[WordTimestamp], bool], None]
#: Called (synchronously) once the audio of a segment that ends flushes has been emitted.
OnFlushed = Callable[[tuple[str, ...]], None]
#: (bytes emitted, seconds of audio emitted) after each frame, for the last this many
#: frames: enough to cover what an outbox can hold unsent (its budget is ~10 s of
#: 22 kHz PCM16, in frames of >= 64 samples at most ~3500).
FRAME_MARKS: Final = 4096
#: How far ahead of its turn a word reported by an engine is looked for in the text
#: (an engine may drop a word it could not say; it never invents one).
WORD_LOOKAHEAD: Final = 8


class SegmentFeed:
    """The segments of one streamed-text context, waiting for its player, in order.

    The session ``put``s segments as the context's text is cut and ``close``s the feed
    when the input ends (or the context is over); the player takes them with ``next``.
    """

    def __init__(self) -> None:
        self._segments: deque[Segment] = deque()
        self._closed = False
        self._changed = trio.lowlevel.ParkingLot()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        """A segment is waiting, or the end is known."""
        return bool(self._segments) or self._closed

    def put(self, segments: Sequence[Segment]) -> None:
        if segments and not self._closed:
            self._segments.extend(segments)
            self._changed.unpark_all()

    def close(self) -> None:
        """No segment after those already put; idempotent."""
        self._closed = True
        self._changed.unpark_all()

    async def wait_ready(self) -> None:
        while not self.ready:
            await self._changed.park()

    async def next(self) -> Segment | None:
        """The next segment, waiting for one; None once closed and empty."""
        await self.wait_ready()
        return self._segments.popleft() if self._segments else None

    def peek(self) -> Segment | None:
        """The next segment if one is waiting (without taking it)."""
        return self._segments[0] if self._segments else None

    def take(self) -> Segment:
        """The next segment, which ``peek`` said is there."""
        return self._segments.popleft()


def _core(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without the punctuation around the word ("Hello," → "Hello")."""
    while start < end - 1 and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start + 1 and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return start, end


class WordLocator:
    """Places an engine's words (``timings.words_of`` of the text it was given, in
    order) in the text as the client sent it, and on the job's timeline."""

    def __init__(self, text: str, base: int) -> None:
        self._text = text
        self._base = base
        self._spans = word_spans(text)
        self._next = 0

    def place(self, word: WordTiming, offset_s: float) -> WordTimestamp | None:
        """``word`` as a timestamp (``offset_s``: the job's audio before this segment),
        or None when it matches no word left in the text."""
        spans, found = self._spans, None
        for index in range(self._next, min(len(spans), self._next + WORD_LOOKAHEAD)):
            if self._text[spans[index][0] : spans[index][1]] == word.word:
                found = index
                break
        if found is None:
            if self._next >= len(spans):
                return None
            found = self._next  # spelled otherwise by the engine: take it in order
        self._next = found + 1
        start, end = _core(self._text, *spans[found])
        start_ms = round((offset_s + word.start_s) * 1000)
        return WordTimestamp(
            word=self._text[start:end],
            start_ms=start_ms,
            end_ms=max(start_ms, round((offset_s + word.end_s) * 1000)),
            char_start=self._base + start,
            char_end=self._base + end,
        )


class ListenerClock:
    """When a listener will have played every sample sent to it (trio clock).

    The listener's player starts a request's first sample as soon as it arrives, or
    right after the audio it still holds; when a chunk arrives after the player ran dry
    (an underrun) it resumes with that chunk. So one number describes it: ``dry_at``,
    None while nothing is buffered (never started, or emptied by an interrupt).
    """

    __slots__ = ("_dry_at",)

    def __init__(self) -> None:
        self._dry_at: float | None = None

    @property
    def dry_at(self) -> float | None:
        return self._dry_at

    def playing_until(self, now: float) -> float | None:
        """``dry_at`` if the listener still plays at ``now``, else None."""
        dry_at = self._dry_at
        return dry_at if dry_at is not None and dry_at > now else None

    def start(self, now: float, carried: float | None, audio_before: float) -> bool:
        """The first frame of a request leaves at ``now``, with ``audio_before`` seconds
        of its audio already synthesized (an encoder may hold early chunks back);
        ``carried`` is when the listener's earlier audio ran out as seen when the
        request was created (None: it was idle then). Returns True for an underrun (the
        earlier audio ran out first); the clock then runs from ``now``."""
        underrun = carried is not None and now > carried + UNDERRUN_TOLERANCE_S
        start = carried if carried is not None and not underrun else now
        self._dry_at = start + audio_before
        return underrun

    def resume(self, now: float) -> bool:
        """A later chunk's first frame leaves at ``now``. Returns True if the listener
        had played everything before it (audible silence): its clock then moves on by
        the gap, so one gap counts once, not once per frame after it."""
        dry_at = self._dry_at
        if dry_at is not None and now > dry_at + UNDERRUN_TOLERANCE_S:
            self._dry_at = now
            return True
        return False

    def add(self, audio_seconds: float) -> None:
        """``audio_seconds`` more audio was sent (before ``start``, the job counts it
        and passes it to ``start``)."""
        if self._dry_at is not None:
            self._dry_at += audio_seconds

    def reset(self) -> None:
        """The listener dropped what it held (an interrupt stops its player)."""
        self._dry_at = None


@dataclass(slots=True, eq=False)
class SynthesisJob:
    """What to say, how, to which listener, and the figures gathered while saying it."""

    voice: Voice
    engine: Engine
    text: str
    options: SynthesisOptions
    spec: OutputSpec
    priority: Priority
    #: trio clock when the request arrived; time to first audio counts from here.
    received_at: float
    #: Synthesize at most this many seconds ahead of playback; 0 = as fast as possible.
    realtime_lead: float
    #: The listener's clock, shared with the session's other requests.
    clock: ListenerClock = field(default_factory=ListenerClock)
    #: When the listener's earlier audio runs out, as seen at creation (None: idle).
    #: This job's audio plays after it, so its clock starts there.
    carried: float | None = None
    #: A streamed-text context's segments; None: ``text`` is the one segment.
    feed: SegmentFeed | None = None
    #: Ask the engine for word timings (``words`` below; ``on_words`` of ``run_job``).
    timed: bool = False
    #: Its claim on the workers (real-time jobs), kept up to date as audio is made and
    #: given back when synthesis ends.
    reservation: Reservation | None = None
    #: When admission let it start, if it waited for room: its first chunk's deadline
    #: (None: it started as it arrived).
    admitted_at: float | None = None
    # Filled in while running:
    pipeline: AudioPipeline | None = None
    first_audio_at: float | None = None
    chunks: int = 0
    bytes: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    underruns: int = 0
    #: Every word timed so far, on the job's timeline (a timed job).
    words: list[WordTimestamp] = field(default_factory=list)
    #: (bytes, seconds) emitted after each of the last ``FRAME_MARKS`` frames.
    marks: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=FRAME_MARKS))
    #: A context's first segment, once it came (time to first audio counts from it).
    started_speaking: bool = False
    #: Whose job it is (the underrun log says): a session's request, or None.
    session_id: str | None = None
    request_id: str | None = None

    def sent_seconds(self, unsent_bytes: int) -> float:
        """Seconds of this job's audio in the frames emitted, less the last
        ``unsent_bytes`` of them (still queued for the socket when it was stopped)."""
        if not self.marks:
            return 0.0
        sent = self.bytes - unsent_bytes
        index = bisect.bisect_right(self.marks, sent, key=lambda mark: mark[0])
        return self.marks[index - 1][1] if index else 0.0

    def played_seconds(self, now: float) -> float:
        """Of the audio emitted, what a real-time listener has played by ``now``: all
        of it but what its clock says is still ahead of it."""
        if self.first_audio_at is None:
            return 0.0
        dry_at = self.clock.dry_at
        ahead = max(0.0, dry_at - now) if dry_at is not None else 0.0
        return max(0.0, self.audio_seconds - ahead)

    def open(self) -> StreamFormat:
        """Create the audio pipeline (cheap) and return the effective stream format."""
        self.pipeline = AudioPipeline(self.spec, self.voice.sample_rate)
        return self.pipeline.stream_format

    @property
    def paced(self) -> bool:
        return self.realtime_lead > 0

    @property
    def voice_id(self) -> str:
        return self.voice.id

    @property
    def playback_end(self) -> float | None:
        """When the listener will have played everything sent so far (None before the
        first frame)."""
        return self.clock.dry_at if self.first_audio_at is not None else None

    @property
    def duration_ms(self) -> int:
        if self.pipeline is None:
            return 0
        return round(self.pipeline.samples_out * 1000 / self.pipeline.stream_format.sample_rate)


@dataclass(slots=True, eq=False)
class _Utterance:
    """One segment being spoken: its engine stream and where its words go."""

    segment: Segment
    generator: Iterator[Pcm | TimedChunk]
    locator: WordLocator | None
    #: The job's audio before this segment's first sample (set when it starts).
    offset: float = 0.0

    def close(self) -> None:
        # Safe: no next() is running (the scheduler waits for its thread on cancel).
        close = getattr(self.generator, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True, slots=True)
class _Pulled:
    """What one ``next()`` in a worker gave: the item (None: the utterance ended) and
    whether it came from the successor. Its wall time is the scheduler's
    (``InferenceScheduler.run_timed``); its CPU time is the worker thread's own (so it
    does not grow when chunks share a core), for the underrun log's "why late"."""

    item: Pcm | TimedChunk | None
    switched: bool
    cpu_seconds: float


def _pull(current: _Utterance, successor: _Utterance | None) -> _Pulled:
    """One chunk of ``current``; when it has none left, the first of ``successor`` in
    the same call. Runs in a worker. Chaining saves the trip through the inference
    queue that finding the end would take on its own (under load, one chunk of someone
    else's work), at each segment boundary of a context."""
    cpu_start = time.thread_time()
    item = next(current.generator, None)
    switched = False
    if item is None and successor is not None:
        item, switched = next(successor.generator, None), True
    return _Pulled(item, switched, time.thread_time() - cpu_start)


def _next_ready(job: SynthesisJob) -> Segment | None:
    """A context's next segment if it is there already and has something to say."""
    feed = job.feed
    if feed is None:
        return None
    head = feed.peek()
    return feed.take() if head is not None and head.text.strip() else None


async def _next_segment(job: SynthesisJob, index: int) -> tuple[Segment | None, bool]:
    """The job's ``index``-th segment (None after the last) and whether the player had
    to wait for it."""
    feed = job.feed
    if feed is None:
        return (Segment(0, job.text, job.received_at) if index == 0 else None), False
    waited = not feed.ready
    return await feed.next(), waited


def _open(
    job: SynthesisJob,
    segment: Segment,
    inference: InferenceScheduler,
    admission: Admission,
    *,
    whole: bool,
) -> _Utterance:
    """Start the engine on ``segment`` (the call only validates: cheap, on the loop).
    ``whole``: ask for whole segments (see ``run_job``)."""
    first = job.first_audio_at is None
    options = job.options
    if whole:
        # It waited for room (the workers are saturated, and whole segments cost
        # least), or streaming would not keep ahead.
        options = replace(options, whole_segments=True)
    elif not first and job.clock.playing_until(trio.current_time()) is not None:
        # A context's next segment while its listener still plays the last: chunk as
        # inside one long text (Piper's small first windows cost ~25 % more decoding).
        options = replace(options, continuation=True)
    elif (
        (not first or job.carried is None)
        and inference.idle
        and admission.quick_start_safe(job.voice_id)
    ):
        # Nothing else computes, so the second chunk will not queue behind other work:
        # the engine may make the first one as small as it can (lowest first audio),
        # if the voice is cheap enough here that the next is ready in time even if a
        # burst of others arrives meanwhile. Under load the default first chunk is
        # larger, to cover the next one's wait.
        options = replace(options, quick_start=True)
    generator: Iterator[Pcm | TimedChunk] = (
        timed(job.engine, job.voice, segment.text, options)
        if job.timed
        else job.engine.stream(job.voice, segment.text, options)
    )
    locator = WordLocator(segment.text, segment.start) if job.timed else None
    return _Utterance(segment, generator, locator, job.audio_seconds)


async def run_job(
    job: SynthesisJob,
    emit: Emit,
    inference: InferenceScheduler,
    metrics: Metrics,
    admission: Admission,
    *,
    on_words: OnWords | None = None,
    on_flushed: OnFlushed | None = None,
) -> bool:
    """Speak ``job`` through ``emit``. Returns True if every frame was delivered,
    False if ``emit`` refused one (the consumer dropped the request).

    A real-time job's chunks teach ``admission`` what its voice costs (wall time per
    chunk, as the scheduler measured it), its progress keeps its reservation up to
    date, an underrun tells admission it was too generous, and the reservation is
    given back when synthesis ends, however it ends."""
    pipeline = job.pipeline
    if pipeline is None:
        job.open()
        pipeline = job.pipeline
        assert pipeline is not None
    out_rate = pipeline.stream_format.sample_rate
    reservation = job.reservation
    if reservation is not None and not admission.streaming_safe(
        job.voice_id, trio.current_time(), idle=inference.idle
    ):
        # Here growing windows of this voice come too close to running dry (a slow
        # CPU): whole segments, whose first covers the decoding of the next.
        reservation.whole_segments = True
    whole = reservation is not None and reservation.whole_segments
    key = cost_key(job.voice_id, whole)
    rate = job.voice.sample_rate
    paced = job.paced
    clock = job.clock

    #: The last chunk's (audio the listener held when it was asked for, its wait for
    #: a worker, its wall and CPU seconds in the worker): why it came late.
    last_chunk = (0.0, 0.0, 0.0, 0.0)

    def count_underrun(silence_s: float) -> None:
        job.underruns += 1
        held_s, wait_s, compute_s, cpu_s = last_chunk
        metrics.count_underrun(
            Underrun(
                session_id=job.session_id,
                request_id=job.request_id,
                silence_s=silence_s,
                frame=job.chunks,
                audio_s=job.audio_seconds,
                cancelled=trio.current_effective_deadline() == -math.inf,
                held_s=held_s,
                wait_s=wait_s,
                compute_s=compute_s,
                cpu_s=cpu_s,
            )
        )
        admission.underrun(trio.current_time())

    resync = False  # the listener went dry waiting for text: not an underrun

    async def send(frames: Iterable[bytes]) -> bool:
        """Emit one engine chunk's frames (they leave together: only the first can be
        late for the listener; the clock counts the chunk once it is all sent)."""
        nonlocal resync
        first_of_chunk = True
        for frame in frames:
            if not frame:
                continue
            now = trio.current_time()
            dry_at = job.carried if job.first_audio_at is None else clock.dry_at
            if job.first_audio_at is None:
                job.first_audio_at = now
                metrics.observe_ttfa(now - job.received_at)
                if clock.start(now, job.carried if paced else None, job.audio_seconds):
                    count_underrun(now - (dry_at or now))
            elif first_of_chunk and paced and clock.resume(now) and not resync:
                # Audible silence before this chunk (real-time consumers only).
                count_underrun(now - (dry_at or now))
            first_of_chunk = False
            resync = False
            if not await emit(frame):
                return False
            job.chunks += 1
            job.bytes += len(frame)
            job.marks.append((job.bytes, pipeline.samples_out / out_rate))
        return True

    def ended(utterance: _Utterance) -> None:
        utterance.close()
        if utterance.segment.flush_ids and on_flushed is not None:
            on_flushed(utterance.segment.flush_ids)

    current: _Utterance | None = None
    successor: _Utterance | None = None
    index = 0
    completed = False
    previous_audio = 0.0
    try:
        while True:
            if current is None:
                if reservation is not None and job.feed is not None:
                    # Waiting for a context's text: nothing is due while its listener
                    # is silent (admission counts no demand for it then).
                    reservation.idle = not job.feed.ready
                segment, waited = await _next_segment(job, index)
                if reservation is not None:
                    reservation.idle = False
                index += 1
                if segment is None:
                    break
                if job.feed is not None:
                    listener_dry = clock.playing_until(trio.current_time()) is None
                    if not job.started_speaking:
                        job.started_speaking = True
                        job.received_at = segment.released_at  # first audio counts from here
                        if waited and listener_dry:
                            job.carried = None  # the earlier audio's end is long past
                    elif waited and listener_dry and job.first_audio_at is not None:
                        resync = True
                    if waited and listener_dry:
                        previous_audio = 0.0  # a new chain of windows, not a late one
                if not segment.text.strip():
                    if segment.flush_ids and on_flushed is not None:
                        on_flushed(segment.flush_ids)  # after all the audio before it
                    continue
                current = _open(job, segment, inference, admission, whole=whole)
            if (
                successor is None
                and job.first_audio_at is not None  # options for audio already playing
                and (ready := _next_ready(job)) is not None
            ):
                successor = _open(job, ready, inference, admission, whole=whole)
                index += 1
            # Earliest-deadline-first: the moment the listener runs out of audio. Before
            # the first audio that is its start ("now"), or the end of the audio it is
            # still playing from the session's previous request.
            deadline = job.playback_end
            if deadline is None:
                # A request that waited for room must not take its place in the
                # scheduler from its arrival: it would go before chunks of the streams
                # admitted while it waited, which admission counted on going first.
                start = max(job.received_at, job.admitted_at or job.received_at)
                deadline = max(start, job.carried or start)
            asked_at = trio.current_time()
            runs_dry = clock.dry_at if job.first_audio_at is not None else job.carried
            held_s = max(0.0, runs_dry - asked_at) if paced and runs_dry is not None else 0.0
            timed = await inference.run_timed(
                partial(_pull, current, successor),
                priority=job.priority,
                deadline=deadline,
                background=not paced,  # a download takes what real-time streams leave
            )
            # A chunk already in the engine is waited for, not cancelled: one that comes
            # back after an interrupt is dropped here, before it can start, move or count
            # on the listener's clock (which the session's next request may own by now).
            await trio.lowlevel.checkpoint_if_cancelled()
            pulled = timed.value
            waited_s = trio.current_time() - asked_at - timed.seconds
            last_chunk = (held_s, waited_s, timed.seconds, pulled.cpu_seconds)
            if pulled.item is None or pulled.switched:
                ended(current)
                current, successor = (successor, None) if pulled.switched else (None, None)
                if current is not None:
                    current.offset = job.audio_seconds
                    if pulled.item is None:  # the successor had nothing to say either
                        ended(current)
                        current = None
                if pulled.item is None:
                    continue
            assert current is not None
            chunk = _chunk(job, current, pulled.item, on_words)
            job.compute_seconds += timed.seconds
            audio = len(chunk) / rate
            if paced and not whole and 0 < previous_audio < job.realtime_lead:
                # Getting ahead: the listener holds about the previous chunk's audio.
                admission.observe_chain(key, timed.seconds, previous_audio, trio.current_time())
            previous_audio = audio
            if paced:
                # Only real-time chunks teach the cost: a download's run in the
                # background at a low OS priority, their wall time says little.
                admission.observe_chunk(key, timed.seconds, audio, first=job.audio_seconds == 0)
            # push_iter encodes lazily: the first frame leaves after one slice of
            # encoding, not after the whole chunk (matters for Opus and MP3).
            if not await send(pipeline.push_iter(chunk)):
                pipeline.close()
                return False
            job.audio_seconds += len(chunk) / rate
            clock.add(len(chunk) / rate)
            playback_end = job.playback_end
            if reservation is not None:
                reservation.produced_s = job.audio_seconds
                reservation.playback_end = playback_end
            if paced and playback_end is not None:
                # Stay no more than ``realtime_lead`` ahead of the listener.
                await trio.sleep_until(playback_end - job.realtime_lead)
        if not await send(pipeline.finish()):
            return False
        completed = True
    except BaseException:
        pipeline.close()  # interrupted mid-chunk: drop encoder state
        raise
    finally:
        if reservation is not None:
            admission.ended(reservation)
        for utterance in (current, successor):
            if utterance is not None:
                utterance.close()
    if completed and job.audio_seconds > 0:
        metrics.observe_rtf(job.compute_seconds / job.audio_seconds)
        admission.observe_text(
            job.voice_id, len(job.text), job.audio_seconds, job.options.speed
        )
    return True


def _chunk(
    job: SynthesisJob, utterance: _Utterance, item: Pcm | TimedChunk, on_words: OnWords | None
) -> Pcm:
    """The samples of ``item``; its words placed on the job's timeline and reported."""
    if not isinstance(item, TimedChunk):
        return item
    if utterance.locator is not None and item.words:
        placed = [utterance.locator.place(word, utterance.offset) for word in item.words]
        words = [w for w in placed if w is not None]
        job.words.extend(words)
        if on_words is not None and words:
            on_words(words, any(w.estimated for w in item.words))
    return item.pcm
