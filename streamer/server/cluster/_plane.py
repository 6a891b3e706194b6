"""The control plane: where a session lives and how a request reaches it.

One small interface, ``ControlPlane``, with two implementations:

- ``LocalPlane``: one replica on its own (no ``cluster.redis_url``), exactly the
  behaviour of a server that knows nothing of clusters: every session is in this
  process's ``SessionManager``;
- ``RedisPlane`` (``_redis.py``, imported only when configured): a directory on
  Redis/Valkey that every replica writes its sessions to, and a control channel per
  replica, so that a REST call reaching any replica is routed to the one that holds
  the session, and per-key limits are counted across the cluster.

The REST routes and the WebSocket transport ask the plane; it answers with what the
routes reply (JSON-ready dicts) or raises the protocol's errors.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

from ...protocol import ClientError, ErrorCode, quote
from ..security import Caller
from ..session import Session, SessionManager

#: The close code and reason of a session deleted over REST.
DELETED_CLOSE: Final = (1000, "session deleted")


class Receipt(Protocol):
    """Something the cluster counted for a caller (a session slot, characters):
    ``release`` gives it back. Idempotent; never raises, never blocks."""

    def release(self) -> None: ...


class _Nothing:
    __slots__ = ()

    def release(self) -> None:
        return None


#: The receipt of what needed no counting.
NOTHING: Final[Receipt] = _Nothing()


class ControlPlane(Protocol):
    """Sessions across replicas (module docstring). Every method may raise the
    protocol's ``ClientError`` (``unknown_session``...) or ``ServerError``
    (``control_plane_unavailable`` 503, ``route_timeout`` 504)."""

    #: True when other replicas share the sessions (the WebSocket then asks before it
    #: acts: ``claim``, ``charge``); False for a replica on its own.
    distributed: bool
    #: This replica's name in the directory (None on its own).
    replica_id: str | None

    async def list_sessions(self, caller: Caller) -> list[dict[str, object]]:
        """Every session ``caller`` may see, on every replica."""
        ...

    async def get_session(self, session_id: str, caller: Caller) -> dict[str, object]: ...

    async def delete_session(self, session_id: str, caller: Caller) -> dict[str, object]: ...

    async def interrupt(
        self, session_id: str, caller: Caller, reason: str, received_at: float
    ) -> dict[str, object]:
        """Interrupt the session wherever it is; returns the REST reply once the
        replica holding it has queued ``interrupted``."""
        ...

    async def register(self, session: Session) -> None:
        """Make a session created here (over REST) known to every replica now, so a
        WebSocket reaching any of them can attach it."""
        ...

    async def waiting(self, caller: Caller) -> int:
        """Sessions ``caller``'s key created over REST that no WebSocket attached yet."""
        ...

    async def claim(self, session_id: str, caller: Caller) -> Receipt:
        """Attach ``session_id`` (a ``connect`` names it) here, atomically: afterwards
        it is in this replica's manager. Raises ``unknown_session``, ``session_in_use``.
        Releasing the receipt gives the claim back (the ``connect`` was refused here,
        so no connection holds the session: another may attach it)."""
        ...

    async def open_slot(self, caller: Caller) -> Receipt:
        """Count a session slot the local quotas just gave ``caller`` across the
        cluster; raises ``too_many_sessions`` when the key's ``max_sessions`` is
        already held elsewhere."""
        ...

    async def charge(self, caller: Caller, chars: int, request_id: str | None) -> Receipt:
        """Charge ``chars`` to the key's ``chars_per_minute`` across the cluster;
        raises ``rate_limited``. Releasing the receipt refunds them."""
        ...

    def status(self) -> dict[str, object] | None:
        """What ``/api/v1/status`` reports of the cluster (None on its own)."""
        ...


def unknown_session(session_id: str) -> ClientError:
    return ClientError(ErrorCode.UNKNOWN_SESSION, f"no session {quote(session_id)}")


def interrupt_here(
    manager: SessionManager, session_id: str, caller: Caller, reason: str, received_at: float
) -> dict[str, object]:
    event = manager.get(session_id, caller).interrupt(reason, received_at)
    return {
        "session_id": session_id,
        "request_id": event.request_id,
        "reason": event.reason,
        "dropped": list(event.dropped),
    }


def delete_here(manager: SessionManager, session_id: str, caller: Caller) -> dict[str, object]:
    session = manager.get(session_id, caller)
    session.close(*DELETED_CLOSE)
    manager.remove(session)
    return {"deleted": session_id}


class LocalPlane:
    """Every session is in this process (``ControlPlane`` for a replica on its own)."""

    distributed = False
    replica_id: str | None = None

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    async def list_sessions(self, caller: Caller) -> list[dict[str, object]]:
        return [s.to_json() for s in self.manager.visible(caller)]

    async def get_session(self, session_id: str, caller: Caller) -> dict[str, object]:
        return self.manager.get(session_id, caller).to_json()

    async def delete_session(self, session_id: str, caller: Caller) -> dict[str, object]:
        return delete_here(self.manager, session_id, caller)

    async def interrupt(
        self, session_id: str, caller: Caller, reason: str, received_at: float
    ) -> dict[str, object]:
        return interrupt_here(self.manager, session_id, caller, reason, received_at)

    async def register(self, session: Session) -> None:
        return None

    async def waiting(self, caller: Caller) -> int:
        return self.manager.waiting(caller)

    async def claim(self, session_id: str, caller: Caller) -> Receipt:
        return NOTHING  # ``connect`` finds it in the manager, or answers unknown_session

    async def open_slot(self, caller: Caller) -> Receipt:
        return NOTHING  # the local quotas are the whole count

    async def charge(self, caller: Caller, chars: int, request_id: str | None) -> Receipt:
        return NOTHING

    def status(self) -> dict[str, object] | None:
        return None


def default_replica_id() -> str:
    """``<hostname>-<pid>``: unique among replicas on one machine and across them."""
    import os
    import socket

    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{host or 'replica'}-{os.getpid()}"[:64]


def unix_ms() -> int:
    return int(time.time() * 1000)
