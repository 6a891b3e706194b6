"""Applying our fixes to the libraries under the transports, once per process, only on
the version each was written for (a fix to another version's internals could break it
in ways no test of ours would see)."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Fix name → whether it is in effect (decided once per process).
_applied: dict[str, bool] = {}


def apply_once(
    name: str,
    distribution: str,
    written_for: str,
    patch: Callable[[], None],
    *,
    unpatched: str,
) -> bool:
    """Run ``patch`` the first time ``name`` is asked for, if ``distribution`` is at
    ``written_for``; otherwise log once what running unpatched means (``unpatched``).
    Returns whether the fix is in effect."""
    if name in _applied:
        return _applied[name]
    try:
        installed: str | None = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != written_for:
        log.warning(
            "%s %s is installed; our fix %r was written for %s and is not applied (%s)",
            distribution,
            installed,
            name,
            written_for,
            unpatched,
        )
        _applied[name] = False
        return False
    patch()
    _applied[name] = True
    return True
