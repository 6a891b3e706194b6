"""Every live session, by id: shared by the WebSocket transport and the REST API."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ...protocol import AudioConfig, ClientError, ErrorCode, quote
from ..runtime import Services
from ..security import ANONYMOUS, Caller
from ._session import Session

log = logging.getLogger(__name__)

#: A session created over REST that no WebSocket attaches to within this long is
#: removed, so abandoned sessions cannot pile up.
UNATTACHED_SESSION_TTL_S: Final = 300.0


def new_session_id() -> str:
    return "s-" + secrets.token_urlsafe(9)


@dataclass(slots=True)
class SessionManager:
    """Every live session, by id; shared by the WebSocket server and the REST API."""

    services: Services
    sessions: dict[str, Session] = field(default_factory=dict)
    #: Told the id of every session created or removed (a cluster's directory keeps up
    #: with it); must not raise or block.
    on_change: Callable[[str], None] | None = None

    def create(
        self, config: AudioConfig, owner: Caller = ANONYMOUS, *, session_id: str | None = None
    ) -> Session:
        """A new session of ``owner`` with ``config`` (validated: raises ``ClientError``);
        ``session_id``: one created elsewhere (by another replica) that moves here."""
        session = Session(session_id or new_session_id(), self.services, config)
        session.owner = owner
        self.sessions[session.id] = session
        self.services.metrics.sessions_opened += 1
        if self.on_change is not None:
            self.on_change(session.id)
        return session

    def get(self, session_id: str, caller: Caller = ANONYMOUS) -> Session:
        """The session, if ``caller`` may see it; raises ``ClientError(unknown_session)``
        otherwise, exactly as for an id that does not exist (another key's session is
        not confirmed to exist). ``ANONYMOUS``: the server's own view (no keys)."""
        session = self.sessions.get(session_id)
        if session is None or not caller.can_see(session.owner):
            raise ClientError(ErrorCode.UNKNOWN_SESSION, f"no session {quote(session_id)}")
        return session

    def visible(self, caller: Caller) -> list[Session]:
        """The sessions ``caller`` may see: its own, or all for an admin."""
        return [s for s in self.sessions.values() if caller.can_see(s.owner)]

    def waiting(self, caller: Caller) -> int:
        """Sessions ``caller``'s key created over REST that no WebSocket attached yet."""
        return sum(
            1
            for s in self.sessions.values()
            if not s.attached and s.owner.key_id is not None and s.owner.key_id == caller.key_id
        )

    def remove(self, session: Session) -> None:
        session.closed = True
        if self.sessions.pop(session.id, None) is not None and self.on_change is not None:
            self.on_change(session.id)

    def reap_unattached(self, now: float, max_age_s: float = UNATTACHED_SESSION_TTL_S) -> list[str]:
        """Remove sessions never attached for ``max_age_s`` (wall clock); return their ids."""
        stale = [
            s for s in self.sessions.values() if not s.attached and now - s.created_at > max_age_s
        ]
        for session in stale:
            log.info("session %s: never attached in %.0f s; removed", session.id, max_age_s)
            self.remove(session)
        return [s.id for s in stale]

    def queue_depths(self) -> dict[str, int]:
        return {s.id: s.queue_depth for s in self.sessions.values()}
