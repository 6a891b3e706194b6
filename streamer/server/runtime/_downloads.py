"""The bound on HTTP speech (downloads): a few run at once, a few more wait, the rest
are told ``busy`` at once.

A download is synthesized as fast as the scheduler allows, in the background class
(real-time listeners come first: ``InferenceScheduler.run(background=True)``). Without a
bound, a burst of HTTP requests would each hold a connection, an encoder and a place in
the inference queue while waiting for CPU that real-time streams have first call on; a
client would wait minutes for headers. So a request either gets a slot, waits in a short
queue for one, or gets ``503 busy`` with ``Retry-After`` right away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import trio

from ...protocol import ClientError, ErrorCode

#: Downloads synthesized at once, per inference worker: one keeps a worker busy, more
#: only split the same CPU between more waiting clients.
SLOTS_PER_WORKER: Final = 1
#: Downloads that may wait for a slot, per worker: a short queue absorbs a burst; a
#: longer one would only make clients wait longer than a retry.
QUEUE_PER_WORKER: Final = 4
#: Retry hint for a refused download: about one short download's synthesis.
RETRY_AFTER_MS: Final = 1000


@dataclass(slots=True)
class DownloadGate:
    """Slots for downloads; ``admit`` hands one to a borrower or refuses."""

    workers: int
    _limiter: trio.CapacityLimiter = field(init=False)
    _waiting: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._limiter = trio.CapacityLimiter(self.workers * SLOTS_PER_WORKER)

    @property
    def running(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return self._waiting

    async def admit(self, borrower: object) -> None:
        """Take a slot for ``borrower`` (released with ``release``), waiting in the
        queue while all are taken. Raises ``ClientError(busy)`` at once when the queue
        is full too. Cancellation while waiting gives the place up."""
        if self._limiter.available_tokens == 0 and self._waiting >= self.workers * QUEUE_PER_WORKER:
            raise ClientError(
                ErrorCode.BUSY,
                "too many speech downloads are running or waiting; retry",
                details={"retry_after_ms": RETRY_AFTER_MS},
            )
        self._waiting += 1
        try:
            await self._limiter.acquire_on_behalf_of(borrower)
        finally:
            self._waiting -= 1

    def release(self, borrower: object) -> None:
        self._limiter.release_on_behalf_of(borrower)

    def to_json(self) -> dict[str, object]:
        return {
            "running": self.running,
            "waiting": self.waiting,
            "slots": self._limiter.total_tokens,
            "queue": self.workers * QUEUE_PER_WORKER,
        }
