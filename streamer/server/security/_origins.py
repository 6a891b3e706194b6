"""Which browser pages may use the server: the ``Origin`` check and CORS.

A browser sends ``Origin`` on every WebSocket handshake and on cross-origin (and most
non-GET) HTTP requests; a script on another site cannot forge it. Programs send none,
so a request without ``Origin`` is not a browser's and passes (keys guard those).

Allowed: the server's own page, and whatever ``security.allowed_origins`` lists (``"*"``:
any page). The own page is at ``http(s)://<host>:<HTTP port>``, where <host> is

- a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``) when the server is bound to
  loopback: the Host header is not trusted there, because a page on a DNS name that
  its owner re-points at 127.0.0.1 ("DNS rebinding") sends its own name in Host;
- the name the request itself was sent to (its Host header) otherwise: the server cannot
  know every name it is reached by, and a rebinding page still needs a key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ...protocol import ClientError, ErrorCode

#: Port of each scheme when a URL names none.
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: What ``allowed_origins`` writes for "any page".
ANY_ORIGIN: Final = "*"


def is_loopback(host: str) -> bool:
    """Is ``host`` (a name or address, IPv6 with or without brackets) this machine only?"""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _parts(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or ``//host:port``; None when unparsable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case with the scheme's default port left out;
    None for anything that is not an http(s) origin (``null``, paths...)."""
    parts = _parts(origin)
    if parts is None or parts[0] not in _DEFAULT_PORTS:
        return None
    scheme, host, port = parts
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


@dataclass(slots=True)
class OriginPolicy:
    """The ``Origin`` rule for both listeners."""

    #: Normalised ``security.allowed_origins`` (without ``"*"``).
    listed: frozenset[str]
    any_origin: bool
    #: The server is bound to loopback: its own page is only on loopback names.
    loopback: bool
    tls: bool
    #: The HTTP port the page is served on; set when it is bound (port 0 in tests).
    page_port: int | None = None

    @classmethod
    def from_config(cls, allowed: tuple[str, ...], *, host: str, tls: bool) -> OriginPolicy:
        listed = frozenset(n for o in allowed if (n := normalize_origin(o)) is not None)
        return cls(listed, ANY_ORIGIN in allowed, is_loopback(host), tls)

    def allows(self, origin: str, host_header: str | None) -> bool:
        """May a page from ``origin`` use the server, reached as ``host_header``?"""
        if self.any_origin:
            return True
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        if normalized in self.listed:
            return True
        parts = _parts(normalized)
        if parts is None:
            return False
        scheme, host, port = parts
        if scheme != ("https" if self.tls else "http") or port != self.page_port:
            return False
        if self.loopback:
            return is_loopback(host)
        reached = _parts("//" + host_header) if host_header else None
        return reached is not None and reached[1] == host

    def check(self, origin: str | None, host_header: str | None) -> None:
        """Raise ``ClientError(origin_not_allowed)`` for a page that may not."""
        if origin is not None and not self.allows(origin, host_header):
            raise ClientError(
                ErrorCode.ORIGIN_NOT_ALLOWED,
                "pages from this origin may not use this server (security.allowed_origins)",
            )
