"""Per-key limits, one policy for every surface: how many sessions a key holds at once
(``max_sessions``) and how many characters it has synthesized in the last minute
(``chars_per_minute``).

A WebSocket connection holds a session slot from its handshake to its close; an OpenAI
speech request holds one while it runs; sessions created over REST and not yet attached
count against the same number separately (the WebSocket that attaches one needs a slot
of its own at its handshake, when the session it will name is not yet known).

Characters are charged when a request is accepted, over a rolling window: a request
that would take the last minute's total over the limit is refused with the time until
enough of the window has passed for it to fit.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from ...protocol import ClientError, ErrorCode
from ._keys import Caller

#: The ``chars_per_minute`` window.
RATE_WINDOW_S: Final = 60.0
#: Retry hint for ``too_many_sessions``: a slot frees when a client leaves, which cannot
#: be predicted; a second is long enough not to spin and short enough to notice.
SESSIONS_RETRY_MS: Final = 1000


class Lease:
    """A session slot of one key; ``release`` gives it back (idempotent)."""

    __slots__ = ("_key_id", "_quotas")

    def __init__(self, quotas: Quotas | None, key_id: str | None) -> None:
        self._quotas = quotas
        self._key_id = key_id

    def release(self) -> None:
        quotas, self._quotas = self._quotas, None
        if quotas is not None and self._key_id is not None:
            quotas._return(self._key_id)


class Quotas:
    """Open session slots and recent characters, by key id."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        #: The ``chars_per_minute`` window (a minute; shorter only in tests).
        self.window_s = window_s
        self._open: dict[str, int] = {}
        #: (when, characters) of each accepted request in the window, oldest first,
        #: and their sum (kept, so a charge costs the same however busy the key is).
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._used: dict[str, int] = {}

    def sessions(self, key_id: str) -> int:
        """Slots ``key_id`` holds now."""
        return self._open.get(key_id, 0)

    def open_counts(self) -> dict[str, int]:
        """Slots held now, by key id (keys holding none are absent)."""
        return dict(self._open)

    def check_room(self, caller: Caller, in_use: int) -> None:
        """Raise ``too_many_sessions`` when ``in_use`` sessions already fill the key's
        ``max_sessions``."""
        key = caller.key
        if key is not None and key.max_sessions and in_use >= key.max_sessions:
            raise ClientError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"API key {key.id!r} already holds its max_sessions ({key.max_sessions})",
                details={"retry_after_ms": SESSIONS_RETRY_MS, "max_sessions": key.max_sessions},
            )

    def open_session(self, caller: Caller) -> Lease:
        """A slot for a connection or a speech request; raises ``too_many_sessions``."""
        key_id = caller.key_id
        if key_id is None:
            return Lease(None, None)
        self.check_room(caller, self.sessions(key_id))
        self._open[key_id] = self.sessions(key_id) + 1
        return Lease(self, key_id)

    def admit_request(self, caller: Caller, chars: int, now: float) -> Lease:
        """A slot and ``chars`` at once, for a request that is a session of its own (an
        OpenAI speech request): both or neither (``too_many_sessions``,
        ``rate_limited``)."""
        lease = self.open_session(caller)
        try:
            self.charge(caller, chars, now)
        except BaseException:
            lease.release()
            raise
        return lease

    def _return(self, key_id: str) -> None:
        left = self._open.get(key_id, 0) - 1
        if left > 0:
            self._open[key_id] = left
        else:
            self._open.pop(key_id, None)

    def charge(
        self, caller: Caller, chars: int, now: float, *, request_id: str | None = None
    ) -> None:
        """Count ``chars`` against the key's ``chars_per_minute`` at ``now`` (seconds on
        any monotonic clock); raises ``rate_limited`` (and counts nothing) when they do
        not fit, with ``details.retry_after_ms``."""
        key = caller.key
        if key is None or not key.chars_per_minute:
            return
        limit = key.chars_per_minute
        spent = self._spent.setdefault(key.id, deque())
        used = self._used.get(key.id, 0)
        while spent and spent[0][0] <= now - self.window_s:
            used -= spent.popleft()[1]
        if used + chars <= limit:
            spent.append((now, chars))
            self._used[key.id] = used + chars
            return
        self._used[key.id] = used
        retry_s: float | None = None
        if chars <= limit:
            # The oldest entries leave the window first: wait until enough have.
            freed, retry_s = 0, self.window_s
            for at, n in spent:
                freed += n
                if used - freed + chars <= limit:
                    retry_s = at + self.window_s - now
                    break
        raise rate_refusal(caller, chars, used, retry_s, self.window_s, request_id)


def rate_refusal(
    caller: Caller,
    chars: int,
    used: int,
    retry_s: float | None,
    window_s: float,
    request_id: str | None,
) -> ClientError:
    """The ``rate_limited`` refusal of ``chars`` for a key that has ``used`` of its
    window; ``retry_s``: when they would fit (None: never, more than the limit)."""
    key = caller.key
    limit = key.chars_per_minute if key is not None else 0
    key_id = caller.key_id
    if retry_s is None:
        retry_s = window_s  # never fits; the hint is only the window
        message = (
            f"{chars} characters are more than API key {key_id!r}'s chars_per_minute "
            f"({limit}) allows at once"
        )
    else:
        message = f"API key {key_id!r} has used {used} of its chars_per_minute ({limit})"
    return ClientError(
        ErrorCode.RATE_LIMITED,
        message,
        request_id=request_id,
        details={"retry_after_ms": max(1, math.ceil(retry_s * 1000)), "limit": limit},
    )
