"""Security: API keys, browser tokens, the origin rule, per-key quotas, TLS, and the
refusal to serve a network address without keys (protocol_docs/security.md).

Knows no transport: the WebSocket and HTTP surfaces hand it header values and paths and
turn its ``ClientError`` refusals into replies (``REFUSAL_STATUS``, ``refusal_headers``).
"""

from ._cli import add_keys_parser, keys_main, run_keys
from ._keys import (
    ANONYMOUS,
    API_KEYS_ENV,
    DEFAULT_CHARS_PER_MINUTE,
    DEFAULT_MAX_SESSIONS,
    KEY_PREFIX,
    ApiKey,
    Caller,
    KeyStore,
    create_key,
    key_digest,
)
from ._origins import ANY_ORIGIN, OriginPolicy, is_loopback, normalize_origin
from ._policy import (
    BEARER_CHALLENGE,
    PUBLIC_PATHS,
    REFUSAL_STATUS,
    TOKEN_SUBPROTOCOL_PREFIX,
    WEBSOCKET_SUBPROTOCOL,
    Handshake,
    Security,
    bearer_credential,
    check_exposure,
    refusal_body,
    refusal_headers,
    server_ssl_context,
)
from ._quotas import RATE_WINDOW_S, SESSIONS_RETRY_MS, Lease, Quotas, rate_refusal
from ._tokens import MAX_TOKEN_CHARS, TOKEN_SECRET_ENV, TokenError, TokenSigner

__all__ = [
    "ANONYMOUS",
    "ANY_ORIGIN",
    "API_KEYS_ENV",
    "BEARER_CHALLENGE",
    "DEFAULT_CHARS_PER_MINUTE",
    "DEFAULT_MAX_SESSIONS",
    "KEY_PREFIX",
    "MAX_TOKEN_CHARS",
    "PUBLIC_PATHS",
    "RATE_WINDOW_S",
    "REFUSAL_STATUS",
    "SESSIONS_RETRY_MS",
    "TOKEN_SECRET_ENV",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "WEBSOCKET_SUBPROTOCOL",
    "ApiKey",
    "Caller",
    "Handshake",
    "KeyStore",
    "Lease",
    "OriginPolicy",
    "Quotas",
    "Security",
    "TokenError",
    "TokenSigner",
    "add_keys_parser",
    "bearer_credential",
    "check_exposure",
    "create_key",
    "is_loopback",
    "key_digest",
    "keys_main",
    "normalize_origin",
    "rate_refusal",
    "refusal_body",
    "refusal_headers",
    "run_keys",
    "server_ssl_context",
]
