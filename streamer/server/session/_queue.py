"""A session's requests waiting to play, and the ordering rules.

One request plays at a time; a higher priority plays first; equal priorities are FIFO;
a ``critical`` request pre-empts a playing request of lower priority (queued requests
stay queued). Request ids a session used recently are remembered so a reused id is
refused while its events could still be confused with the new one's.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import trio

from ...protocol import Priority, RequestState, StreamedText, check_request_transition
from ._player import SegmentFeed, SynthesisJob
from ._resolve import ResolvedConfig
from ._start import StartDecision

#: Finished request ids remembered per session, so a reused id is caught a while.
RECENT_REQUEST_IDS: Final = 256


@dataclass(eq=False, slots=True)
class SynthesisRequest:
    """One ``synthesize`` of a session, from queued to its end."""

    id: str
    text: str
    priority: Priority
    resolved: ResolvedConfig
    received_at: float
    #: Arrival order within the session (FIFO within a priority).
    seq: int = 0
    state: RequestState = RequestState.QUEUED
    #: The scope its playing task runs in; cancelling it is the interrupt.
    scope: trio.CancelScope | None = None
    job: SynthesisJob | None = None
    #: A streamed-text context: its input side, and the segments cut for its player.
    context: StreamedText | None = None
    feed: SegmentFeed | None = None
    #: How admission lets it start (``check_can_start``).
    start: StartDecision = field(default_factory=StartDecision)

    def sort_key(self) -> tuple[int, int]:
        return (-int(self.priority), self.seq)

    def __lt__(self, other: SynthesisRequest) -> bool:
        return self.sort_key() < other.sort_key()

    def advance(self, new: RequestState) -> None:
        self.state = check_request_transition(self.state, new)

    def preempts(self, playing: SynthesisRequest) -> bool:
        """Whether this request, just queued, stops ``playing`` (critical over less)."""
        return self.priority is Priority.CRITICAL and playing.priority < Priority.CRITICAL


@dataclass(slots=True)
class RequestQueue:
    """Waiting requests in play order, plus the ids used recently."""

    _heap: list[SynthesisRequest] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _recent_ids: dict[str, None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def ordered(self) -> list[SynthesisRequest]:
        """The waiting requests in the order they will play."""
        return sorted(self._heap)

    def used(self, request_id: str) -> bool:
        """Whether ``request_id`` is waiting or was used recently."""
        return request_id in self._recent_ids or any(r.id == request_id for r in self._heap)

    def push(self, request: SynthesisRequest) -> int:
        """Queue ``request``; returns how many waiting requests play before it."""
        request.seq = next(self._seq)
        heapq.heappush(self._heap, request)
        self._recent_ids[request.id] = None
        if len(self._recent_ids) > RECENT_REQUEST_IDS:
            del self._recent_ids[next(iter(self._recent_ids))]
        return sum(1 for r in self._heap if r < request)

    def pop(self) -> SynthesisRequest:
        """The request to play next (the queue must not be empty)."""
        return heapq.heappop(self._heap)

    def remove(self, request: SynthesisRequest) -> bool:
        """Take ``request`` out of the queue; False if it was not waiting."""
        if request not in self._heap:
            return False
        self._heap.remove(request)
        heapq.heapify(self._heap)
        return True

    def drain(self) -> list[SynthesisRequest]:
        """Remove and return every waiting request, in play order."""
        drained = sorted(self._heap)
        self._heap.clear()
        return drained
