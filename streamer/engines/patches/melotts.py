"""What MeloTTS 0.1.2 (upstream's code, installed as ``melotts-krqnf``) needs changed
around it to import and load here.

- ``torchaudio-stand-in``: melo imports torchaudio at module level (``api.py``,
  ``utils.py``, ``split_utils.py``) but calls it only in training code
  (``utils.load_wav_to_torch_new``). The registry's torchaudio wheel is a CUDA build
  that fails to import next to CPU-only torch, so when, and only when, the real import
  fails, a stand-in module is registered under that name; any use of it raises an
  ``ImportError`` naming the cause.
- ``hub-offline``: when the Hugging Face hub cannot be reached, ``HF_HUB_OFFLINE=1`` is
  set (a process-wide environment write) before the hub libraries are first imported
  (they read it then), so melo's tokenizers come from the local cache at once instead
  of after a network timeout per file. Left alone when the caller set it, either way.

Version guard: on a version other than ``WRITTEN_FOR`` (of whichever distribution
provides ``melo``) both are still applied, with a warning logged once, because each
acts only when its target still has the shape it was written for (torchaudio fails to
import; the hub does not answer), and neither can do harm if melo has changed: a melo
that came to use torchaudio for inference gets the stand-in's ``ImportError`` naming
the cause at that use, and the offline switch is the hub library's documented setting.
Refusing them would only make melo unimportable wherever torchaudio is broken.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import logging
import os
import socket
import sys
import threading
import types
import urllib.parse
from typing import Any, Final

from streamer.engines.patches import PatchReport, installed_version, warn_version

__all__ = [
    "DISTRIBUTION",
    "HUB_OFFLINE",
    "HUB_PROBE_TIMEOUT_S",
    "TORCHAUDIO_STAND_IN",
    "WRITTEN_FOR",
    "TorchaudioStandIn",
    "apply",
    "patch",
    "stand_in_for_torchaudio",
    "use_offline_hub_if_unreachable",
]

logger = logging.getLogger(__name__)

#: The distribution name upstream publishes; the report names the one actually
#: providing ``melo`` when there is one (here ``melotts-krqnf``).
DISTRIBUTION: Final = "melotts"
WRITTEN_FOR: Final = "0.1.2"
TORCHAUDIO_STAND_IN: Final = "torchaudio-stand-in"
HUB_OFFLINE: Final = "hub-offline"
#: How long to wait for a TCP connection to the hub before treating it as unreachable.
HUB_PROBE_TIMEOUT_S: Final = 3.0
#: The hub libraries' own default endpoint, used when ``HF_ENDPOINT`` is unset.
_DEFAULT_HUB: Final = "https://huggingface.co"

_apply_lock = threading.Lock()
_report: PatchReport | None = None


class TorchaudioStandIn(types.ModuleType):
    """Stands in for a torchaudio that cannot be imported; any use raises ImportError."""

    def __init__(self, reason: str) -> None:
        super().__init__("torchaudio")
        self.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"torchaudio is unavailable ({self._reason}); melo used torchaudio.{name}"
        )


def apply() -> PatchReport:
    """Make both changes where needed, once per process (before melo is imported).

    Later calls return the first call's report and change nothing. May wait up to
    ``HUB_PROBE_TIMEOUT_S`` for the hub.
    """
    global _report
    with _apply_lock:
        if _report is None:
            distribution = _melo_distribution()
            _report = patch(distribution, installed_version(distribution))
        return _report


def patch(distribution: str, installed: str | None) -> PatchReport:
    """Both changes, each where its target still needs it (see the module's
    docstring), warning first when ``installed`` is not ``WRITTEN_FOR``."""
    note = ""
    if installed != WRITTEN_FOR:
        note = warn_version(
            distribution, WRITTEN_FOR, installed, "applying what still fits, as it is harmless"
        )
    applied: list[str] = []
    if use_offline_hub_if_unreachable():
        applied.append(HUB_OFFLINE)
    if stand_in_for_torchaudio():
        applied.append(TORCHAUDIO_STAND_IN)
    return PatchReport(distribution, WRITTEN_FOR, installed, tuple(applied), note)


def _melo_distribution() -> str:
    """The distribution that provides the ``melo`` package (``DISTRIBUTION`` if none)."""
    providers = importlib.metadata.packages_distributions().get("melo") or [DISTRIBUTION]
    return providers[0]


def stand_in_for_torchaudio() -> bool:
    """Make ``import torchaudio`` succeed; True when our stand-in is what it gives.

    A real torchaudio that imports is left in place (False).
    """
    loaded = sys.modules.get("torchaudio")
    if loaded is not None:
        return isinstance(loaded, TorchaudioStandIn)
    try:
        import torchaudio  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a CUDA build's libraries
        sys.modules.pop("torchaudio", None)
        sys.modules["torchaudio"] = TorchaudioStandIn(f"{type(exc).__name__}: {exc}")
        logger.info("torchaudio unusable (%s); melo runs with a stand-in", exc)
        return True
    return False


def use_offline_hub_if_unreachable() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when the hub is unreachable; True if this call set it.

    Does nothing when the variable is already set, or when ``huggingface_hub`` is
    already imported (it has read the variable; logged, since loads will then wait out
    network timeouts).
    """
    if os.environ.get("HF_HUB_OFFLINE") or _hub_reachable():
        return False
    if "huggingface_hub" in sys.modules:
        logger.warning("hub unreachable, but huggingface_hub is already imported online")
        return False
    logger.warning("Hugging Face hub unreachable: MeloTTS will use the local cache only")
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True


def _hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", _DEFAULT_HUB)
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
