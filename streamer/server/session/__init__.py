"""The session core: one listener's session, its priority queue and pre-emption, the
player of one request (paced to a ``ListenerClock``), config resolution, the session
manager and the outbox between a session and its connection's writer.

Knows nothing of sockets or HTTP: the transports feed it parsed protocol messages and
drain its ``Outbox``.
"""

from ._manager import UNATTACHED_SESSION_TTL_S, SessionManager, new_session_id
from ._outbox import MAX_QUEUED_AUDIO_BYTES, MAX_QUEUED_EVENTS, CloseRequest, Outbox, OutboxClosed
from ._player import (
    UNDERRUN_TOLERANCE_S,
    Emit,
    ListenerClock,
    SegmentFeed,
    SynthesisJob,
    run_job,
)
from ._queue import RECENT_REQUEST_IDS, RequestQueue, SynthesisRequest
from ._resolve import ResolvedConfig, resolve_config
from ._session import REPLY_FLUSH_WAIT_S, Session
from ._start import StartDecision, check_can_start, extend, new_job, release, wait_to_start

__all__ = [
    "MAX_QUEUED_AUDIO_BYTES",
    "MAX_QUEUED_EVENTS",
    "RECENT_REQUEST_IDS",
    "REPLY_FLUSH_WAIT_S",
    "UNATTACHED_SESSION_TTL_S",
    "UNDERRUN_TOLERANCE_S",
    "CloseRequest",
    "Emit",
    "ListenerClock",
    "Outbox",
    "OutboxClosed",
    "RequestQueue",
    "ResolvedConfig",
    "SegmentFeed",
    "Session",
    "SessionManager",
    "StartDecision",
    "SynthesisJob",
    "SynthesisRequest",
    "check_can_start",
    "extend",
    "new_job",
    "new_session_id",
    "release",
    "resolve_config",
    "run_job",
    "wait_to_start",
]
