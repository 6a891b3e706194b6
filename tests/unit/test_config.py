"""Config loading: every bad key stops start-up with its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.config import ConfigError, load_config, parse_config
from tests.support import REPO_ROOT

ROOT = REPO_ROOT


def test_default_config_loads_and_resolves_paths_against_the_project() -> None:
    config = load_config(ROOT / "config" / "default.json")
    assert config.server.http_port == 8080
    assert config.server.websocket_port == 8081
    assert config.tts.default_language == "es"
    assert config.tts.chunk_size == 1024
    assert config.path(config.tts.voices_dir) == ROOT / "voices"


def test_empty_config_means_defaults() -> None:
    config = parse_config({})
    assert config.performance.max_queue_size == 32
    assert config.inference_workers() >= 1


def test_wyoming_is_off_unless_given_a_port() -> None:
    assert parse_config({}).server.wyoming_port is None
    assert parse_config({"server": {"wyoming_port": 10200}}).server.wyoming_port == 10200


def test_melotts_alias() -> None:
    assert parse_config({"tts": {"engine": "melotts"}}).tts.engine == "melo"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"servr": {}}, "servr"),
        ({"tts": {"chunk_sze": 1}}, "tts.chunk_sze"),
        ({"tts": {"melo": {"lang": []}}}, "tts.melo.lang"),
        ({"tts": {"chunk_size": "big"}}, "tts.chunk_size"),
        ({"tts": {"chunk_size": 10}}, "tts.chunk_size"),
        ({"tts": {"engine": "festival"}}, "tts.engine"),
        ({"tts": {"device": "tpu"}}, "tts.device"),
        ({"server": {"http_port": 70000}}, "server.http_port"),
        ({"server": {"http_port": 9000, "websocket_port": 9000}}, "server.websocket_port"),
        ({"server": {"max_connections": 0}}, "server.max_connections"),
        ({"server": {"wyoming_port": 70000}}, "server.wyoming_port"),
        ({"server": {"wyoming_port": "10200"}}, "server.wyoming_port"),
        ({"server": {"wyoming_port": 8080}}, "server.wyoming_port"),
        ({"server": "x"}, "server"),
        ({"performance": {"preload_models": "yes"}}, "performance.preload_models"),
        ({"performance": {"max_queue_size": 0}}, "performance.max_queue_size"),
        ({"performance": {"max_inference_load": 0}}, "performance.max_inference_load"),
        (
            {"performance": {"event_loop_realtime_priority": 100}},
            "performance.event_loop_realtime_priority",
        ),
        (
            {"performance": {"event_loop_realtime_priority": -1}},
            "performance.event_loop_realtime_priority",
        ),
        ({"tts": {"melo": {"languages": "EN"}}}, "tts.melo.languages"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert f"'{key}'" in str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  'x': 1\n}")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(bad)
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"tts": {"voices_dir": "v"}}))
    assert load_config(good).path("v") == tmp_path / "v"


def test_admission_keys_are_validated() -> None:
    performance = parse_config({"performance": {"max_start_delay_ms": 0}}).performance
    assert performance.max_start_delay_ms == 0
    for key, value in (("max_start_delay_ms", -1), ("max_start_delay_ms", 60_001),
                       ("max_inference_load", 0), ("max_inference_load", 1.6)):
        with pytest.raises(ConfigError, match=f"performance.{key}"):
            parse_config({"performance": {key: value}})
