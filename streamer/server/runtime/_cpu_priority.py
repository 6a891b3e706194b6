"""OS scheduling of the server's event loop: first in line for a core.

Inference threads run niced (``_inference.py``): over a second they yield most of the
CPU to the event loop. That is not enough for a reply in a few milliseconds. With both
cores computing, Linux's fair scheduler (EEVDF) lets a running inference thread finish
its slice before a woken event loop gets the core, and a kernel with a 4 ms tick notices
the end of a slice at the next tick. Measured with ``scripts.latency --sessions
20`` and a probe of the loop (BENCHMARKS.md, "Latency and scale"): ~1 in 300 of the
loop's batches of work was pre-empted and lost ~4.2 ms, and the event-loop lag p99 was
4.1 ms. A shorter fair-scheduler slice for the loop (``sched_attr.sched_runtime``)
changed neither.

So the event loop thread runs under ``SCHED_FIFO`` at the lowest real-time priority
(what audio servers such as PipeWire and JACK do for their processing threads): any
runnable fair-class thread yields to it at once. Then 13 batches in 200 000 took over
2 ms, and the lag p99 was 1.1 ms. It is safe for this thread: it does short protocol
work and sleeps in ``epoll``; at full load it used 6 % of a core. Should it ever spin,
Linux caps real-time threads at 95 % of each second (``sched_rt_runtime_us``).

Threads it starts must not inherit it (inference would then starve everything else):
``SCHED_RESET_ON_FORK`` gives them the normal policy.

Real-time scheduling needs permission: root, ``CAP_SYS_NICE``, or an ``RLIMIT_RTPRIO``
of at least the priority (``LimitRTPRIO=1`` in the systemd unit, ``ulimit -r 1``).
Without it the server runs as before and logs how to allow it.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Policy:
    """A thread's scheduling policy and priority, to restore it."""

    policy: int
    priority: int


def realtime_supported() -> bool:
    """Linux, where Python exposes ``SCHED_FIFO`` (per-thread ``sched_setscheduler``)."""
    return sys.platform.startswith("linux") and hasattr(os, "SCHED_FIFO")


def make_event_loop_realtime(priority: int) -> _Policy | None:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` (threads it starts
    get the normal policy). Returns the policy to restore, or None if nothing changed:
    ``priority`` 0, another OS, or no permission (logged)."""
    if priority <= 0 or not realtime_supported():
        return None
    previous = _Policy(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    try:
        os.sched_setscheduler(
            0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority)
        )
    except PermissionError:
        log.info(
            "event loop stays at normal priority (real-time priority %d not permitted:"
            " allow it with LimitRTPRIO=%d in the systemd unit or `ulimit -r %d`);"
            " replies may wait a few ms behind inference under load",
            priority, priority, priority,
        )
        return None
    except OSError as exc:
        log.warning("cannot give the event loop real-time priority: %s", exc)
        return None
    log.info("event loop thread: SCHED_FIFO priority %d", priority)
    return previous


def restore(previous: _Policy | None) -> None:
    """Undo ``make_event_loop_realtime`` for the calling thread."""
    if previous is None:
        return
    try:
        os.sched_setscheduler(0, previous.policy, os.sched_param(previous.priority))
    except OSError as exc:
        log.warning("cannot restore the event loop's scheduling policy: %s", exc)
