"""The security policy without sockets: keys, tokens, origins, quotas, config, the
``keys create`` command and the start-up refusal (tests/integration/server/
test_security.py drives the same rules over real sockets)."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.config import ConfigError, parse_api_keys, parse_config
from streamer.protocol import ClientError, ErrorCode
from streamer.server.security import (
    ANONYMOUS,
    API_KEYS_ENV,
    TOKEN_SECRET_ENV,
    ApiKey,
    Caller,
    KeyStore,
    OriginPolicy,
    Quotas,
    Security,
    TokenError,
    TokenSigner,
    bearer_credential,
    check_exposure,
    create_key,
    key_digest,
    keys_main,
    normalize_origin,
    refusal_body,
    refusal_headers,
)

SECRET = b"s" * 32
NOW = 1_700_000_000.0


def entry(key: str, key_id: str, **limits: object) -> dict[str, object]:
    return {"id": key_id, "sha256": key_digest(key).hex(), **limits}


def security_for(*entries: dict[str, object], **settings: object) -> Security:
    config = parse_config(
        {
            "server": {"host": "127.0.0.1"},
            "security": {"api_keys": list(entries), "token_secret": "t" * 32, **settings},
        }
    )
    return Security.from_config(config, environ={})


# --- keys ------------------------------------------------------------------------------


def test_a_key_is_recognised_by_its_digest_only() -> None:
    store = KeyStore([ApiKey("a", key_digest("key-a")), ApiKey("b", key_digest("key-b"))])
    found = store.find("key-b")
    assert found is not None and found.id == "b"
    assert store.find("key-c") is None
    assert store.find("") is None


def test_duplicate_ids_and_digests_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'a' is configured twice"):
        KeyStore([ApiKey("a", key_digest("1")), ApiKey("a", key_digest("2"))])
    with pytest.raises(ConfigError, match="same sha256"):
        KeyStore([ApiKey("a", key_digest("1")), ApiKey("b", key_digest("1"))])


def test_keys_come_from_config_file_and_environment_together(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps([entry("from-file", "file")]))
    config = parse_config(
        {
            "security": {
                "api_keys": [entry("from-config", "config")],
                "api_keys_file": str(key_file),
            }
        }
    )
    env = {API_KEYS_ENV: json.dumps([entry("from-env", "env", admin=True)])}
    store = KeyStore.load(config, env)
    assert [store.find(k).id for k in ("from-config", "from-file", "from-env")] == [  # type: ignore[union-attr]
        "config", "file", "env",
    ]
    assert store.get("env") is not None and store.get("env").admin  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", r"\$TTS_STREAMER_API_KEYS: invalid JSON"),
        ('{"id": "a"}', "must be a JSON list"),
        ('[{"id": "a"}]', r"'\$TTS_STREAMER_API_KEYS\[0\].sha256' is required"),
        ('[{"id": "a", "sha256": "xyz"}]', r"\[0\].sha256' must be the 64-hex-digit"),
        (json.dumps([{"id": "a", "sha256": "0" * 64, "admin": "yes"}]), r"admin' must be bool"),
    ],
)
def test_a_bad_environment_entry_names_itself(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeyStore.load(parse_config({}), {API_KEYS_ENV: raw})


def test_an_unreadable_key_file_names_the_config_key(tmp_path: Path) -> None:
    config = parse_config({"security": {"api_keys_file": str(tmp_path / "missing.json")}})
    with pytest.raises(ConfigError, match=r"security\.api_keys_file"):
        KeyStore.load(config, {})


def test_create_key_makes_an_entry_the_server_accepts() -> None:
    key, made = create_key("ci-bot", max_sessions=2, chars_per_minute=500, admin=True)
    assert key.startswith("tts_") and len(key) > 40
    (parsed,) = parse_api_keys([made], "test")
    assert parsed.id == "ci-bot" and parsed.max_sessions == 2 and parsed.admin
    assert KeyStore([ApiKey.from_config(parsed)]).find(key) is not None
    assert create_key("ci-bot")[0] != key  # random each time
    with pytest.raises(ValueError, match="key id"):
        create_key("no spaces please")


def test_the_keys_create_command_prints_the_key_once_and_the_entry() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert keys_main(["create", "--id", "web", "--json"], stdout=out, stderr=err) == 0
    printed = json.loads(out.getvalue())
    assert printed["entry"]["id"] == "web"
    assert printed["entry"]["sha256"] == key_digest(printed["key"]).hex()
    out = io.StringIO()
    assert keys_main(["create", "--id", "web"], stdout=out, stderr=err) == 0
    assert "tts_" in out.getvalue() and '"sha256"' in out.getvalue()
    assert keys_main(["create", "--id=-bad"], stdout=out, stderr=err) == 2
    assert "key id" in err.getvalue()


# --- tokens ----------------------------------------------------------------------------


def test_a_token_names_its_key_until_it_expires() -> None:
    signer = TokenSigner(SECRET, ttl_s=60)
    token, expires_in = signer.issue("web", NOW)
    assert expires_in == 60
    assert "=" not in token and token.count(".") == 1
    assert all(c.isalnum() or c in "-_." for c in token)  # a valid subprotocol token
    assert signer.verify(token, NOW + 59) == "web"
    with pytest.raises(TokenError) as expired:
        signer.verify(token, NOW + 60)
    assert expired.value.expired


def test_a_tampered_or_foreign_token_is_refused() -> None:
    signer = TokenSigner(SECRET, ttl_s=60)
    token, _ = signer.issue("web", NOW)
    payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"k":"admin","e":9999999999}').rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (
        f"{forged}.{signature}",  # another payload under the same signature
        f"{payload}.{flipped}",
        f"{payload}.",
        payload,
        token + ".x",
        "a" * 1000,
        "",
        f"{payload}.{signature}!",
        "\x80.00",  # non-ASCII (found by Hypothesis: it raised UnicodeEncodeError)
        f"{payload}é.{signature}",
    ):
        with pytest.raises(TokenError) as refused:
            signer.verify(bad, NOW)
        assert not refused.value.expired
    with pytest.raises(TokenError):
        TokenSigner(b"another secret of 32 bytes......", 60).verify(token, NOW)


def test_replicas_with_the_same_secret_accept_each_others_tokens() -> None:
    one = TokenSigner.with_secret("x" * 32, 60)
    two = TokenSigner.with_secret("x" * 32, 60)
    assert two.verify(one.issue("web", NOW)[0], NOW) == "web"
    assert TokenSigner.with_secret(None, 60).secret != TokenSigner.with_secret(None, 60).secret


# --- authentication --------------------------------------------------------------------


def test_authentication_by_key_token_and_their_refusals() -> None:
    security = security_for(entry("key-a", "a"), entry("key-admin", "boss", admin=True))
    assert security.authenticate(bearer="key-a", token=None, now=NOW).key_id == "a"
    token = security.issue_token(Caller(security.keys.get("a")), NOW)["token"]
    assert isinstance(token, str)
    by_token = security.authenticate(bearer=None, token=token, now=NOW)
    assert by_token.key_id == "a" and by_token.by_token
    assert security.authenticate(bearer=token, token=None, now=NOW).by_token
    cases = [
        (None, None, "needs an API key"),
        ("wrong", None, "invalid"),
        (None, "key-a", "invalid"),  # a key where only a token may go (a URL)
        (None, token, "expired"),
    ]
    for bearer, presented, message in cases:
        now = NOW + 3600 if message == "expired" else NOW
        with pytest.raises(ClientError, match=message) as refused:
            security.authenticate(bearer=bearer, token=presented, now=now)
        assert refused.value.code == ErrorCode.UNAUTHORIZED
        assert "key-a" not in refused.value.message
    with pytest.raises(ClientError, match="cannot get another token"):
        security.issue_token(by_token, NOW)


def test_without_keys_everyone_is_the_anonymous_local_user() -> None:
    security = security_for()
    assert not security.required
    assert security.authenticate(bearer=None, token=None, now=NOW) is ANONYMOUS
    assert security.authenticate(bearer="anything", token=None, now=NOW) is ANONYMOUS
    assert ANONYMOUS.admin and ANONYMOUS.can_see(Caller(ApiKey("a", b"")))


def test_ownership_rule() -> None:
    a, b = Caller(ApiKey("a", b"1")), Caller(ApiKey("b", b"2"))
    admin = Caller(ApiKey("boss", b"3", admin=True))
    assert a.can_see(a) and not a.can_see(b) and not b.can_see(a)
    assert admin.can_see(a) and admin.can_see(b)
    assert not a.can_see(ANONYMOUS)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer k1"}, "k1"),
        ({"authorization": "bearer   k1 "}, "k1"),
        ({"authorization": "Basic abc"}, None),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": "k2"}, "k2"),
        ({}, None),
    ],
)
def test_bearer_credential(headers: dict[str, str], expected: str | None) -> None:
    assert bearer_credential(headers) == expected


def test_public_routes() -> None:
    security = security_for(entry("k", "a"))
    assert all(security.is_public(p) for p in ("/", "/health", "/health/live", "/web/app.js"))
    assert not any(
        security.is_public(p) for p in ("/metrics", "/openapi.json", "/api/v1/status", "/v1/models")
    )
    opened = security_for(entry("k", "a"), public_metrics=True, public_docs=True)
    assert opened.is_public("/metrics") and opened.is_public("/openapi.json")


def test_refusal_replies() -> None:
    unauthorized = ClientError(ErrorCode.UNAUTHORIZED, "no")
    assert refusal_headers(unauthorized)["WWW-Authenticate"].startswith("Bearer")
    limited = ClientError(ErrorCode.TOO_MANY_SESSIONS, "full", details={"retry_after_ms": 1500})
    assert refusal_headers(limited) == {"Retry-After": "2"}
    body = json.loads(refusal_body(limited))
    assert body["error"]["code"] == "too_many_sessions"
    assert body["error"]["details"]["retry_after_ms"] == 1500


# --- websocket handshake ---------------------------------------------------------------


def test_the_websocket_handshake_check() -> None:
    security = security_for(entry("key-a", "a", max_sessions=1))
    security.origins.page_port = 8080
    token = security.issue_token(Caller(security.keys.get("a")), NOW)["token"]
    admitted = security.admit_websocket(
        {"host": "127.0.0.1:8081", "origin": "http://127.0.0.1:8080"},
        "/",
        ["tts.v1", f"tts.token.{token}"],
        NOW,
    )
    assert admitted.caller.key_id == "a" and admitted.subprotocol == "tts.v1"
    with pytest.raises(ClientError) as full:
        security.admit_websocket({"authorization": "Bearer key-a"}, "/", [], NOW)
    assert full.value.code == ErrorCode.TOO_MANY_SESSIONS
    admitted.lease.release()
    admitted.lease.release()  # idempotent
    by_query = security.admit_websocket({}, f"/?token={token}", [], NOW)
    assert by_query.subprotocol is None
    by_query.lease.release()
    with pytest.raises(ClientError) as key_in_url:
        security.admit_websocket({}, "/?token=key-a", [], NOW)
    assert key_in_url.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(ClientError) as evil:
        security.admit_websocket(
            {"authorization": "Bearer key-a", "origin": "https://evil.example"}, "/", [], NOW
        )
    assert evil.value.code == ErrorCode.ORIGIN_NOT_ALLOWED


# --- origins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("HTTP://Example.COM:80", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),
        ("file://", None),
        ("ftp://example.com", None),
        ("http://example.com:99999", None),
    ],
)
def test_normalize_origin(origin: str, expected: str | None) -> None:
    assert normalize_origin(origin) == expected


def test_on_loopback_the_own_page_is_only_on_loopback_names() -> None:
    policy = OriginPolicy.from_config((), host="127.0.0.1", tls=False)
    policy.page_port = 8080
    for origin in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert policy.allows(origin, "127.0.0.1:8081")
    # DNS rebinding: a foreign name pointed at 127.0.0.1 sends that name in Host too.
    assert not policy.allows("http://evil.example:8080", "evil.example:8081")
    assert not policy.allows("http://127.0.0.1:3000", "127.0.0.1:8081")  # another local app
    assert not policy.allows("https://127.0.0.1:8080", "127.0.0.1:8081")  # scheme differs
    policy.check(None, None)  # no Origin: not a browser


def test_on_a_network_address_the_own_page_is_the_host_reached() -> None:
    policy = OriginPolicy.from_config((), host="0.0.0.0", tls=True)
    policy.page_port = 443
    assert policy.allows("https://tts.example.com", "tts.example.com:8081")
    assert not policy.allows("https://tts.example.com", "other.example.com:8081")
    assert not policy.allows("https://tts.example.com", None)


def test_listed_and_any_origins() -> None:
    listed = OriginPolicy.from_config(("https://app.example.com",), host="127.0.0.1", tls=False)
    assert listed.allows("https://APP.example.com:443", None)
    assert not listed.allows("https://app.example.com.evil.example", None)
    anyone = OriginPolicy.from_config(("*",), host="127.0.0.1", tls=False)
    assert anyone.allows("https://evil.example", None)


# --- quotas ----------------------------------------------------------------------------


def test_max_sessions_counts_open_slots() -> None:
    quotas = Quotas()
    caller = Caller(ApiKey("a", b"", max_sessions=2))
    first, second = quotas.open_session(caller), quotas.open_session(caller)
    with pytest.raises(ClientError) as full:
        quotas.open_session(caller)
    assert full.value.code == ErrorCode.TOO_MANY_SESSIONS
    assert full.value.details["retry_after_ms"] > 0
    first.release()
    quotas.open_session(caller)
    second.release()
    assert quotas.sessions("a") == 1
    unlimited = Caller(ApiKey("b", b""))
    leases = [quotas.open_session(unlimited) for _ in range(50)]
    assert quotas.sessions("b") == 50
    for lease in leases:
        lease.release()
    assert quotas.sessions("b") == 0
    quotas.open_session(ANONYMOUS).release()  # no key: nothing to count


def test_chars_per_minute_is_a_rolling_window_with_an_exact_retry_hint() -> None:
    quotas = Quotas()
    caller = Caller(ApiKey("a", b"", chars_per_minute=100))
    quotas.charge(caller, 60, now=0.0)
    quotas.charge(caller, 30, now=10.0)
    with pytest.raises(ClientError) as limited:
        quotas.charge(caller, 20, now=20.0, request_id="r1")
    error = limited.value
    assert error.code == ErrorCode.RATE_LIMITED and error.request_id == "r1"
    assert error.details["retry_after_ms"] == 40_000  # the first 60 leave the window at 60 s
    quotas.charge(caller, 10, now=20.0)  # what still fits is accepted
    quotas.charge(caller, 20, now=60.0)  # the first charge has left the window
    with pytest.raises(ClientError, match="more than"):
        quotas.charge(caller, 101, now=500.0)
    quotas.charge(Caller(ApiKey("b", b"")), 10**6, now=0.0)  # 0 = no limit


def test_admit_request_takes_both_or_neither() -> None:
    quotas = Quotas()
    caller = Caller(ApiKey("a", b"", max_sessions=1, chars_per_minute=10))
    with pytest.raises(ClientError, match="more than"):
        quotas.admit_request(caller, 11, now=0.0)
    assert quotas.sessions("a") == 0  # the slot went back
    lease = quotas.admit_request(caller, 5, now=0.0)
    with pytest.raises(ClientError) as full:
        quotas.admit_request(caller, 1, now=0.0)
    assert full.value.code == ErrorCode.TOO_MANY_SESSIONS
    lease.release()


# --- config and start-up ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("security", "message"),
    [
        ({"api_keys": [{"sha256": "0" * 64}]}, r"'security.api_keys\[0\].id' is required"),
        ({"api_keys": [{"id": "a", "sha256": "0" * 64, "max_sessions": -1}]}, "max_sessions"),
        ({"allowed_origins": ["https://a.example/path"]}, r"allowed_origins\[0\]"),
        ({"token_ttl_s": 0}, "security.token_ttl_s"),
        ({"token_ttl_s": 86400}, "security.token_ttl_s"),
        ({"token_secret": "short"}, "security.token_secret"),
        ({"api_key": []}, "unknown config key 'security.api_key'"),
    ],
)
def test_bad_security_config_names_the_key(security: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"security": security})


def test_tls_files_go_together() -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_keyfile"):
        parse_config({"server": {"tls_certfile": "cert.pem"}})
    with pytest.raises(ConfigError, match=r"server\.tls_certfile"):
        parse_config({"server": {"tls_keyfile": "key.pem"}})


def test_the_default_bind_is_loopback() -> None:
    assert parse_config({}).server.host == "127.0.0.1"


def test_a_network_address_without_keys_is_refused_unless_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exposed = parse_config({"server": {"host": "0.0.0.0"}})
    with pytest.raises(ConfigError, match=r"server\.host.*no API keys"):
        check_exposure(exposed, Security.from_config(exposed, environ={}))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        local = parse_config({"server": {"host": host}})
        check_exposure(local, Security.from_config(local, environ={}))
    keyed = parse_config({"server": {"host": "0.0.0.0"}})
    env = {API_KEYS_ENV: json.dumps([entry("k", "a")])}
    check_exposure(keyed, Security.from_config(keyed, environ=env))
    allowed = parse_config(
        {"server": {"host": "0.0.0.0"}, "security": {"allow_unauthenticated": True}}
    )
    with caplog.at_level(logging.WARNING):
        check_exposure(allowed, Security.from_config(allowed, environ={}))
    assert "WITHOUT authentication" in caplog.text


def test_the_token_secret_comes_from_config_or_environment() -> None:
    from_env = Security.from_config(parse_config({}), environ={TOKEN_SECRET_ENV: "e" * 32})
    assert from_env.tokens.secret == b"e" * 32
    configured = parse_config({"security": {"token_secret": "c" * 32}})
    assert Security.from_config(configured, environ={}).tokens.secret == b"c" * 32


# --- hostile input ---------------------------------------------------------------------

_TEXT = st.text(max_size=600)


@settings(max_examples=300, deadline=None)
@given(
    bearer=st.none() | _TEXT,
    token=st.none() | _TEXT,
    origin=st.none() | _TEXT,
    host=st.none() | _TEXT,
    target=_TEXT,
    subprotocols=st.lists(_TEXT, max_size=4),
)
def test_any_credential_is_admitted_or_refused_with_a_code(
    bearer: str | None,
    token: str | None,
    origin: str | None,
    host: str | None,
    target: str,
    subprotocols: list[str],
) -> None:
    security = _HOSTILE
    headers = {
        name: value
        for name, value in (("authorization", bearer), ("origin", origin), ("host", host))
        if value is not None
    }
    codes: list[str] = []
    try:
        security.authenticate(bearer=bearer, token=token, now=NOW)
    except ClientError as refusal:
        codes.append(refusal.code)
    try:
        admitted = security.admit_websocket(headers, target, subprotocols, NOW)
    except ClientError as refusal:
        codes.append(refusal.code)
    else:  # only the real key or its token gets in
        assert admitted.caller.key_id == "a"
        admitted.lease.release()
    assert set(codes) <= {ErrorCode.UNAUTHORIZED, ErrorCode.ORIGIN_NOT_ALLOWED}


_HOSTILE = security_for(entry("key-a", "a"))
_HOSTILE.origins.page_port = 8080
