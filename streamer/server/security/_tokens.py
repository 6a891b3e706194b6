"""Short-lived browser tokens: ``<payload>.<signature>``, both base64url without padding.

The payload is the JSON ``{"k": key id, "e": expiry}`` (Unix seconds); the signature is
HMAC-SHA256 over a fixed context string and the encoded payload, with the token secret.
A token proves that someone holding the key asked for it less than ``token_ttl_s`` ago,
so a browser can authenticate a WebSocket without ever holding the key in a URL or a
subprotocol. Nothing is stored: any replica with the same secret verifies the token, and
a token dies with its expiry or with its key (the key id must still be configured).

Every character of a token is an RFC 7230 ``tchar``, so it can travel as a WebSocket
subprotocol (``tts.token.<token>``) as well as in a query string or a header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
from dataclasses import dataclass
from typing import Final

#: Environment variable for the signing secret (shared by replicas).
TOKEN_SECRET_ENV: Final = "TTS_STREAMER_TOKEN_SECRET"
#: Bytes of a secret generated at start-up when none is configured.
GENERATED_SECRET_BYTES: Final = 32
#: Binds signatures to this use and format: a MAC made for anything else never verifies.
_CONTEXT: Final = b"mit-tts-streamer token v1\n"
#: A real token is ~150 characters (a 64-character id at most); anything much longer is
#: not one, and is refused before any decoding work.
MAX_TOKEN_CHARS: Final = 512


class TokenError(Exception):
    """The token is malformed, tampered with, or expired (``expired`` says which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise TokenError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("not base64url") from None


@dataclass(frozen=True, slots=True)
class TokenSigner:
    """Issues and verifies tokens with one secret."""

    secret: bytes
    ttl_s: float

    @classmethod
    def with_secret(cls, secret: str | None, ttl_s: float) -> TokenSigner:
        """``secret`` as configured, or a random one (tokens then die with the process)."""
        key = secret.encode("utf-8") if secret else secrets.token_bytes(GENERATED_SECRET_BYTES)
        return cls(key, ttl_s)

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self.secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()

    def issue(self, key_id: str, now: float) -> tuple[str, int]:
        """A token for ``key_id`` and its lifetime in whole seconds, from ``now`` (Unix)."""
        expires = math.floor(now + self.ttl_s)  # never later than ttl_s from now
        body = json.dumps({"k": key_id, "e": expires}, separators=(",", ":"))
        payload = _b64encode(body.encode("utf-8"))
        return f"{payload}.{_b64encode(self._sign(payload))}", math.floor(expires - now)

    def verify(self, token: str, now: float) -> str:
        """The key id ``token`` was issued for; raises ``TokenError``."""
        # Tokens are base64url: anything else (a non-ASCII character would not even
        # encode for the signature check) is refused before any work is done on it.
        if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 1:
            raise TokenError("not a token")
        payload, signature = token.split(".")
        # The signature is checked before the payload is parsed: nothing an attacker
        # wrote is interpreted until it is known to be ours.
        if not hmac.compare_digest(_b64decode(signature), self._sign(payload)):
            raise TokenError("bad signature")
        try:
            body = json.loads(_b64decode(payload))
            key_id, expires = body["k"], body["e"]
        except (ValueError, KeyError, TypeError):
            raise TokenError("bad payload") from None
        if not isinstance(key_id, str) or not isinstance(expires, int):
            raise TokenError("bad payload")
        if now >= expires:
            raise TokenError("token expired", expired=True)
        return key_id
