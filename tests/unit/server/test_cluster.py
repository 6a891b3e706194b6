"""The cluster's configuration, its deploy files, and what a server without one loads
(the Redis plane itself runs against a real Redis in tests/integration/cluster)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from scripts.cluster import haproxy_config
from streamer.config import ConfigError, load_config, parse_config
from streamer.server.cluster import LocalPlane, default_replica_id
from tests.support import REPO_ROOT


def test_without_redis_url_nothing_of_the_cluster_is_imported() -> None:
    code = (
        "import sys, trio\n"
        "import streamer.server.app, streamer.cli\n"
        "from streamer.config import parse_config\n"
        "from streamer.server.cluster import run_control_plane, LocalPlane\n"
        "from streamer.server.session import SessionManager\n"
        "assert 'glide' not in sys.modules and 'streamer.server.cluster._redis' not in "
        "sys.modules, sorted(m for m in sys.modules if 'glide' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_the_cluster_section_defaults_to_a_replica_on_its_own() -> None:
    cluster = parse_config({}).cluster
    assert cluster.redis_url is None
    assert cluster.session_ttl_s == 3.0
    assert cluster.route_timeout_ms == 1000
    assert parse_config({}).server.drain_timeout_s == 0.0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"redis_url": "http://localhost"}, "cluster.redis_url"),
        ({"redis_url": "redis://"}, "cluster.redis_url"),
        ({"redis_url": "redis://host:99999"}, "cluster.redis_url"),
        ({"redis_url": "redis://host/db"}, "cluster.redis_url"),
        ({"replica_id": "a b"}, "cluster.replica_id"),
        ({"replica_id": ""}, "cluster.replica_id"),
        ({"session_ttl_s": 0.5}, "cluster.session_ttl_s"),
        ({"route_timeout_ms": 0}, "cluster.route_timeout_ms"),
        ({"route_timeout_ms": 600_000}, "cluster.route_timeout_ms"),
        ({"redis": "x"}, "cluster.redis"),
    ],
)
def test_a_bad_cluster_setting_names_its_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"cluster": section})


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:secret@redis.example:6380", "valkey://v"]
)
def test_redis_urls_that_are_accepted(url: str) -> None:
    assert parse_config({"cluster": {"redis_url": url}}).cluster.redis_url == url


def test_a_negative_drain_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.drain_timeout_s"):
        parse_config({"server": {"drain_timeout_s": -1}})


def test_the_default_replica_id_is_a_valid_replica_id() -> None:
    replica = default_replica_id()
    parse_config({"cluster": {"replica_id": replica}})


def test_the_local_plane_is_not_distributed() -> None:
    assert LocalPlane.distributed is False
    assert LocalPlane.replica_id is None


def test_the_deploy_configs_validate() -> None:
    load_config(REPO_ROOT / "deploy" / "cluster" / "config.json")
    manifest = list(yaml.safe_load_all((REPO_ROOT / "deploy/kubernetes/tts.yaml").read_text()))
    config_map = next(d for d in manifest if d["kind"] == "ConfigMap")
    parse_config(json.loads(config_map["data"]["config.json"]))
    deployment = next(d for d in manifest if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "preStop" in container["lifecycle"]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (.ci/run installs it)")
@pytest.mark.parametrize("name", ["haproxy.cfg", "cluster/haproxy.cfg", None])
def test_haproxy_accepts_our_configs(name: str | None, tmp_path: Any) -> None:
    if name is None:
        path = tmp_path / "haproxy.cfg"
        path.write_text(
            haproxy_config(http_port=18080, websocket_port=18081,
                           replicas=[("r1", 18082, 18083)], maxconn=10)
        )
    else:
        path = REPO_ROOT / "deploy" / name
    checked = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
