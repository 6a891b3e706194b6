"""The security policy of one server: who may connect, from which page, with how much.

``Security`` bundles the key store, the token signer, the origin rule and the quotas,
and answers the transports' questions in one place each:

- ``admit_websocket``: the whole handshake check (origin, credentials, a session slot),
  before ``accept()``; the transport turns a refusal into an HTTP reply;
- ``authenticate``: the HTTP routes' check (``Authorization: Bearer <key or token>`` or
  ``x-api-key``); ``is_public`` says which routes need none.

With no keys configured, every caller is ``ANONYMOUS`` (the local user, who sees every
session); only the origin rule applies. ``check_exposure`` keeps such a server on
loopback unless ``security.allow_unauthenticated`` says otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ...config import Config, ConfigError, SecurityConfig
from ...protocol import ClientError, ErrorCode, ProtocolError
from ._keys import ANONYMOUS, Caller, KeyStore
from ._origins import OriginPolicy, is_loopback
from ._quotas import Lease, Quotas
from ._tokens import TOKEN_SECRET_ENV, TokenError, TokenSigner

log = logging.getLogger(__name__)

#: The WebSocket subprotocol of this API; the server answers it when offered.
WEBSOCKET_SUBPROTOCOL: Final = "tts.v1"
#: A browser offers ``tts.token.<token>`` beside ``tts.v1``: it cannot set headers.
TOKEN_SUBPROTOCOL_PREFIX: Final = "tts.token."
#: Routes that never ask for a key: probes, and the page (which then asks for one).
PUBLIC_PATHS: Final = frozenset({"/", "/health", "/health/live"})
PUBLIC_PREFIXES: Final = ("/web/",)
#: HTTP status of each refusal, at the WebSocket handshake and on the routes.
REFUSAL_STATUS: Final[dict[str, int]] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.ORIGIN_NOT_ALLOWED: 403,
    ErrorCode.TOO_MANY_SESSIONS: 429,
    ErrorCode.RATE_LIMITED: 429,
}
#: RFC 6750's challenge, sent with every 401.
BEARER_CHALLENGE: Final = 'Bearer realm="mit-tts-streamer"'

_MISSING: Final = (
    "this server needs an API key: send 'Authorization: Bearer <key>' "
    "(a browser: a token from POST /api/v1/tokens)"
)
_INVALID: Final = "invalid API key or token"
_EXPIRED: Final = "token expired: get a new one from POST /api/v1/tokens"


def _unauthorized(message: str) -> ClientError:
    return ClientError(ErrorCode.UNAUTHORIZED, message)


def bearer_credential(headers: Mapping[str, str]) -> str | None:
    """The key or token of ``Authorization: Bearer`` (else ``x-api-key``); ``headers``
    keyed in lower case. Another scheme (``Basic``) is no credential of ours."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return value.strip() or None
    return headers.get("x-api-key") or None


def refusal_headers(error: ProtocolError) -> dict[str, str]:
    """``WWW-Authenticate`` for a 401; ``Retry-After`` (seconds) for a 429."""
    if error.code == ErrorCode.UNAUTHORIZED:
        return {"WWW-Authenticate": BEARER_CHALLENGE}
    retry_ms = error.details.get("retry_after_ms")
    if REFUSAL_STATUS.get(error.code) == 429 and isinstance(retry_ms, int):
        return {"Retry-After": str(max(1, -(-retry_ms // 1000)))}
    return {}


def refusal_body(error: ProtocolError) -> bytes:
    """Our JSON error shape, for a reply written without the web framework."""
    body: dict[str, object] = {"code": str(error.code), "message": error.message}
    if error.details:
        body["details"] = error.details
    return json.dumps({"error": body}).encode()


@dataclass(frozen=True, slots=True)
class Handshake:
    """An admitted WebSocket: who, the subprotocol to answer, and its session slot."""

    caller: Caller
    subprotocol: str | None
    lease: Lease


class Security:
    """Keys, tokens, origins and quotas of one server (module docstring)."""

    def __init__(
        self,
        settings: SecurityConfig,
        keys: KeyStore,
        tokens: TokenSigner,
        origins: OriginPolicy,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.tokens = tokens
        self.origins = origins
        self.quotas = Quotas()

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Security:
        """Read the keys (config, key file, environment) and the token secret; raises
        ``ConfigError`` naming the source of a bad entry."""
        env = os.environ if environ is None else environ
        settings = config.security
        secret = settings.token_secret or env.get(TOKEN_SECRET_ENV) or None
        return cls(
            settings,
            KeyStore.load(config, env),
            TokenSigner.with_secret(secret, settings.token_ttl_s),
            OriginPolicy.from_config(
                settings.allowed_origins,
                host=config.server.host,
                tls=config.server.tls_certfile is not None,
            ),
        )

    @property
    def required(self) -> bool:
        """Do callers need a key (are any configured)?"""
        return len(self.keys) > 0

    def is_public(self, path: str) -> bool:
        """May this HTTP path be used without a key?"""
        return (
            path in PUBLIC_PATHS
            or path.startswith(PUBLIC_PREFIXES)
            or (path == "/metrics" and self.settings.public_metrics)
            or (path == "/openapi.json" and self.settings.public_docs)
        )

    def authenticate(self, *, bearer: str | None, token: str | None, now: float) -> Caller:
        """The caller presenting ``bearer`` (a key or a token) or ``token`` (a token
        only: it may travel in a URL or subprotocol, a key must not). ``now`` is Unix
        time. Raises ``ClientError(unauthorized)``; nothing presented is logged."""
        if not self.required:
            return ANONYMOUS
        if bearer is not None:
            key = self.keys.find(bearer)
            if key is not None:
                return Caller(key)
            if "." not in bearer:  # our keys have no dot; tokens have exactly one
                raise _unauthorized(_INVALID)
            token = bearer
        if token is None:
            raise _unauthorized(_MISSING)
        try:
            key_id = self.tokens.verify(token, now)
        except TokenError as exc:
            raise _unauthorized(_EXPIRED if exc.expired else _INVALID) from None
        key = self.keys.get(key_id)
        if key is None:  # the key was removed since: its tokens die with it
            raise _unauthorized(_INVALID)
        return Caller(key, by_token=True)

    def issue_token(self, caller: Caller, now: float) -> dict[str, object]:
        """``{token, expires_in}`` for ``caller``, who must hold the key itself: a token
        cannot renew itself, or it would never expire."""
        if caller.by_token:
            raise _unauthorized("a token cannot get another token: use the API key")
        token, expires_in = self.tokens.issue(caller.key_id or "", now)
        return {"token": token, "expires_in": expires_in}

    def admit_websocket(
        self,
        headers: Mapping[str, str],
        target: str,
        subprotocols: Sequence[str],
        now: float,
    ) -> Handshake:
        """Check a WebSocket handshake before it is accepted: its ``Origin``, its
        credential (``Authorization``/``x-api-key``, the ``tts.token.<token>``
        subprotocol, or ``?token=``) and a session slot of the key. ``headers`` keyed in
        lower case; ``target`` the request path with its query. Raises ``ClientError``
        (``origin_not_allowed``, ``unauthorized``, ``too_many_sessions``)."""
        self.origins.check(headers.get("origin"), headers.get("host"))
        token = next(
            (p[len(TOKEN_SUBPROTOCOL_PREFIX):] for p in subprotocols
             if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)),
            None,
        )
        if token is None:
            query = parse_qs(urlsplit(target).query)
            token = query.get("token", [None])[-1]
        caller = self.authenticate(bearer=bearer_credential(headers), token=token, now=now)
        lease = self.quotas.open_session(caller)
        answer = WEBSOCKET_SUBPROTOCOL if WEBSOCKET_SUBPROTOCOL in subprotocols else None
        return Handshake(caller, answer, lease)


def check_exposure(config: Config, security: Security) -> None:
    """Refuse (``ConfigError``) to serve a non-loopback address with no keys, unless
    ``security.allow_unauthenticated``; then warn, once, at start-up."""
    host = config.server.host
    if security.required or is_loopback(host):
        return
    if not config.security.allow_unauthenticated:
        raise ConfigError(
            f"config key 'server.host': {host} is reachable from other machines but no API "
            "keys are configured; add some to security.api_keys (tts-streamer keys create "
            "--id NAME), bind 127.0.0.1, or set security.allow_unauthenticated: true"
        )
    log.warning(
        "serving %s WITHOUT authentication (security.allow_unauthenticated): anyone who "
        "can reach it can use it",
        host,
    )


def server_ssl_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context of the WebSocket listener (None without TLS); raises
    ``ConfigError`` naming the key when the files cannot be loaded."""
    server = config.server
    if server.tls_certfile is None or server.tls_keyfile is None:
        return None
    for key, path in (("tls_certfile", server.tls_certfile), ("tls_keyfile", server.tls_keyfile)):
        if not config.path(path).is_file():
            raise ConfigError(f"config key 'server.{key}': no such file {config.path(path)}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.path(server.tls_certfile), config.path(server.tls_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"config keys 'server.tls_certfile'/'server.tls_keyfile': cannot load them: {exc}"
        ) from None
    return context
