"""Many replicas as one service: the session directory and control plane (README
"Scaling out", protocol_docs/rest.md).

``run_control_plane`` gives the composition root a ``ControlPlane``: the
``LocalPlane`` (this process only) without ``cluster.redis_url``, else the Redis one,
whose module (and ``valkey-glide``) is imported only then.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ...config import ClusterConfig
from ..session import SessionManager
from ._plane import NOTHING, ControlPlane, LocalPlane, Receipt, default_replica_id

__all__ = [
    "NOTHING",
    "ControlPlane",
    "LocalPlane",
    "Receipt",
    "default_replica_id",
    "run_control_plane",
]


async def run_control_plane(
    settings: ClusterConfig,
    manager: SessionManager,
    describe: Callable[[], dict[str, object]],
    *,
    task_status: trio.TaskStatus[ControlPlane] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Report the plane through ``task_status``; for Redis, run it until cancelled.
    ``describe()``: this replica's load and capacity, written with each heartbeat."""
    if settings.redis_url is None:
        task_status.started(LocalPlane(manager))
        return
    from ._redis import RedisPlane  # valkey-glide: only for a cluster

    plane = RedisPlane(settings, manager, settings.replica_id or default_replica_id(), describe)
    await plane.run(task_status=task_status)
