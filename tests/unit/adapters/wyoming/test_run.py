"""Where the Wyoming server listens and whether it may: the URI and the exposure rule."""

from __future__ import annotations

import pytest

from streamer.adapters.wyoming import WyomingAddress, check_wyoming_exposure, parse_uri
from streamer.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("tcp://0.0.0.0:10200", WyomingAddress("0.0.0.0", 10200)),
        ("tcp://127.0.0.1:0", WyomingAddress("127.0.0.1", 0)),
        ("tcp://[::1]:10200/", WyomingAddress("::1", 10200)),
    ],
)
def test_tcp_uris(uri: str, address: WyomingAddress) -> None:
    assert parse_uri(uri) == address


@pytest.mark.parametrize(
    "uri",
    ["unix:///tmp/w.sock", "stdio://", "tcp://host", "tcp://:10200", "tcp://h:99999", "h:1",
     "tcp://h:1/path"],
)  # fmt: skip
def test_anything_else_is_refused_with_the_reason(uri: str) -> None:
    with pytest.raises(ValueError, match=r"tcp://|port"):
        parse_uri(uri)


def test_loopback_needs_nothing() -> None:
    check_wyoming_exposure(parse_config({}), "127.0.0.1", allow_unauthenticated=False)
    check_wyoming_exposure(parse_config({}), "localhost", allow_unauthenticated=False)


def test_another_address_needs_the_opt_out_even_with_api_keys() -> None:
    keyed = parse_config(
        {"security": {"api_keys": [{"id": "a", "sha256": "0" * 64}]}}
    )  # keys protect WebSocket and HTTP, not Wyoming
    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        check_wyoming_exposure(keyed, "0.0.0.0", allow_unauthenticated=False)
    check_wyoming_exposure(keyed, "0.0.0.0", allow_unauthenticated=True)
    opted = parse_config({"security": {"allow_unauthenticated": True}})
    check_wyoming_exposure(opted, "192.168.1.5", allow_unauthenticated=False)


def test_the_command_refuses_a_bad_uri_as_usage() -> None:
    import io

    from streamer.cli import EXIT_USAGE, main
    from tests.support import REPO_ROOT

    err = io.StringIO()
    config = str(REPO_ROOT / "config" / "default.json")
    status = main(["wyoming", "--config", config, "--uri", "unix:///tmp/x"], stderr=err)
    assert status == EXIT_USAGE
    assert "tcp://HOST:PORT" in err.getvalue()
