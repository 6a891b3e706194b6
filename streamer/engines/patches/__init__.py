"""Changes we make to third-party libraries: one module per library, applied once.

Each module is named after the distribution it changes (``piper_tts``, ``melotts``) and
offers the same three things:

- ``DISTRIBUTION`` and ``WRITTEN_FOR``: the library and the version its fixes were made
  for (and measured on);
- ``apply()``: makes the changes at most once per process (later calls return the first
  call's report) and returns a ``PatchReport``. On another version it logs a warning
  once; whether it then still patches is that module's decision, argued in its
  docstring from what a wrong patch would cost;
- a marker on everything it replaces (``PATCH_MARKER``), so a test can see that the
  change is in place in the installed library.

Engines call their module's ``apply()`` when they load, never at import: importing an
engine changes nothing in anyone's libraries.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = [
    "PATCH_MARKER",
    "PatchReport",
    "installed_version",
    "mark",
    "marker_of",
    "warn_version",
]

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

#: Attribute set on every replacement function: the name of the fix it implements.
PATCH_MARKER: Final = "__streamer_patch__"


@dataclass(frozen=True, slots=True)
class PatchReport:
    """What one ``apply()`` did to one installed library."""

    distribution: str
    written_for: str
    #: The installed version; None when the distribution's metadata is not found.
    installed: str | None
    #: Names of the fixes in effect after the call (empty: the library is unchanged).
    applied: tuple[str, ...]
    #: Why a fix is not in effect, when one is not; empty otherwise.
    note: str = ""

    @property
    def version_matches(self) -> bool:
        return self.installed == self.written_for


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def warn_version(distribution: str, written_for: str, installed: str | None, action: str) -> str:
    """Log (once per ``apply()``, so once per process) that ``installed`` is not the
    version the fixes were made for, and what the module does about it; the message."""
    message = (
        f"{distribution} {installed or '(version unknown)'} is installed, but our fixes "
        f"to it were made for {written_for}: {action}"
    )
    logger.warning("%s", message)
    return message


def mark(function: _F, fix: str) -> _F:
    """Tag ``function`` as the replacement made by ``fix``; returns it."""
    setattr(function, PATCH_MARKER, fix)
    return function


def marker_of(function: object) -> str | None:
    """The fix that made ``function``, or None if it is the library's own."""
    value = getattr(function, PATCH_MARKER, None)
    return value if isinstance(value, str) else None
