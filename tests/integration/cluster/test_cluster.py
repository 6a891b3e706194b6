"""A real cluster: ``redis-server``, ``haproxy`` and replicas over the fake engine, each
its own process (``scripts.cluster`` starts them; ``tests.support.fake_replica`` is a
replica), on loopback ports. Every wait is a poll or an event under ``trio.fail_after``.

What must hold (issue "Scale out"): sessions spread across replicas; an interrupt sent
to one replica reaches the client on another; any replica lists the whole cluster (for
the caller's key); a REST-created session attaches through HAProxy wherever the
WebSocket lands; a key's ``max_sessions`` holds across replicas; a SIGKILLed replica's
sessions leave within TTL + a heartbeat and interrupts to them answer 404 at once; a
Redis restart is survived (503 while down, never 500); a draining replica gets no new
sessions while its live ones finish.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from scripts.cluster import LocalCluster, Replica, missing_binaries
from streamer.server.security import create_key
from tests.support.server_harness import Client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(missing_binaries()),
        reason=f"needs {' and '.join(missing_binaries())} (.ci/run installs them: "
        "apt-get install redis-server haproxy)",
    ),
]

#: Starting three processes and HAProxy; a slow CI machine included.
START_S: Final = 60.0
#: Any single step of a test (a reply, an event, a state change that is polled for).
STEP_S: Final = 20.0
POLL_S: Final = 0.02
#: The directory TTL the cluster runs with (scripts.cluster.SESSION_TTL_S).
TTL_S: Final = 3.0
#: ~6 s of fake speech (0.1 s a sentence) paced in real time: still playing when a test
#: acts on it.
LONG_TEXT: Final = "This is one sentence. " * 60

KEY_A, ENTRY_A = create_key("team-a", max_sessions=2, chars_per_minute=0)
KEY_B, ENTRY_B = create_key("team-b", max_sessions=0, chars_per_minute=0)
KEY_C, ENTRY_C = create_key("team-c", max_sessions=0, chars_per_minute=100)
BASE_CONFIG: Final[dict[str, Any]] = {
    "tts": {"default_language": "en", "default_format": "pcm"},
    "performance": {
        "realtime_lead_ms": 200,
        "worker_processes": 1,
        "event_loop_realtime_priority": 0,
    },
}


def _fake_replica(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "tests.support.fake_replica", "--config", str(config_path)]


@asynccontextmanager
async def cluster(
    replicas: int = 2, *, keys: bool = False, drain_timeout_s: float = 30.0
) -> AsyncIterator[LocalCluster]:
    base = {**BASE_CONFIG, "server": {"drain_timeout_s": drain_timeout_s}}
    if keys:
        base["security"] = {"api_keys": [ENTRY_A, ENTRY_B, ENTRY_C]}
    local = LocalCluster(replicas, base, command=_fake_replica)
    try:
        local.start()
        with trio.fail_after(START_S):
            await trio.to_thread.run_sync(local.wait_ready)
        yield local
    finally:
        await trio.to_thread.run_sync(local.stop)


def _headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


async def call(
    port: int, method: str, path: str, key: str | None = None, **body: Any
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=STEP_S) as http:
        response = await http.request(
            method,
            f"http://127.0.0.1:{port}{path}",
            json=body if method != "GET" else None,
            headers=_headers(key),
        )
    assert response.status_code != 500, response.text  # never our bug
    return response


@asynccontextmanager
async def ws(port: int, key: str | None = None) -> AsyncIterator[Client]:
    headers = [(k, v) for k, v in _headers(key).items()]
    async with open_websocket_url(f"ws://127.0.0.1:{port}", extra_headers=headers) as socket:
        yield Client(socket)


async def connect(client: Client, session_id: str | None = None) -> str:
    message: dict[str, Any] = {"config": {}}
    if session_id is not None:
        message["session_id"] = session_id
    await client.send(type="connect", **message)
    connected = await client.next_event()
    assert connected["type"] == "connected", connected
    return str(connected["session_id"])


async def listed(port: int, key: str | None = None) -> dict[str, str]:
    """session id → the replica holding it, as ``GET /api/v1/sessions`` on ``port``."""
    response = await call(port, "GET", "/api/v1/sessions", key)
    assert response.status_code == 200, response.text
    return {s["session_id"]: s["replica"] for s in response.json()["sessions"]}


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = STEP_S) -> None:
    with trio.fail_after(within_s):
        while True:
            if await check():
                return
            await trio.sleep(POLL_S)


async def test_sessions_spread_and_any_replica_lists_them_all() -> None:
    async with cluster(2) as local, trio.open_nursery() as nursery:
        ids: list[str] = []
        done = trio.Event()

        async def hold(task_status: trio.TaskStatus[None]) -> None:
            async with ws(local.websocket_port) as client:
                ids.append(await connect(client))
                task_status.started()
                await done.wait()

        for _ in range(4):
            # One at a time, so leastconn sees each before the next arrives.
            await nursery.start(hold)
        for node in local.nodes:
            where = await listed(node.http_port)
            assert set(where) == set(ids)
        assert sorted(where.values()) == ["r1", "r1", "r2", "r2"]
        done.set()


async def test_interrupt_sent_to_another_replica_reaches_the_client() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port) as client:
            session_id = await connect(client)
            await client.send(type="synthesize", text=LONG_TEXT, request_id="long")
            await client.next_event("audio_start")
            reply = await call(r2.http_port, "POST", f"/api/v1/interrupt/{session_id}",
                               reason="barge_in")
            assert reply.status_code == 200, reply.text
            assert reply.json()["request_id"] == "long"
            interrupted = await client.next_event("interrupted")
            assert interrupted["request_id"] == "long"
            assert interrupted["reason"] == "barge_in"
            # Nothing of the interrupted request follows: the next message is the
            # reply to the next request.
            received = len(client.received)
            await client.send(type="synthesize", text="Next.", request_id="next")
            await client.receive_one()
            assert client.received[received] == {
                "type": "queued", "request_id": "next", "position": 0
            }
            # GET and DELETE reach it the same way.
            got = await call(r2.http_port, "GET", f"/api/v1/sessions/{session_id}")
            assert got.json()["replica"] == "r1"
            deleted = await call(r2.http_port, "DELETE", f"/api/v1/sessions/{session_id}")
            assert deleted.json() == {"deleted": session_id}
            await client.drain(STEP_S)
            assert client.closed_code == 1000
        unknown = await call(r2.http_port, "POST", "/api/v1/interrupt/s-nonexistent")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_session"


async def test_listing_is_per_key_and_max_sessions_holds_across_replicas() -> None:
    async with cluster(2, keys=True) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port, KEY_A) as a1, ws(r2.websocket_port, KEY_A) as a2, \
                ws(r2.websocket_port, KEY_B) as b1:
            ids_a = {await connect(a1), await connect(a2)}
            id_b = await connect(b1)
            for node in local.nodes:
                assert set(await listed(node.http_port, KEY_A)) == ids_a
                assert set(await listed(node.http_port, KEY_B)) == {id_b}
            # Another key's session does not exist for a caller, routed or not.
            for session_id in ids_a:
                for node in local.nodes:
                    for method, path in (("POST", f"/api/v1/interrupt/{session_id}"),
                                         ("GET", f"/api/v1/sessions/{session_id}"),
                                         ("DELETE", f"/api/v1/sessions/{session_id}")):
                        reply = await call(node.http_port, method, path, KEY_B)
                        assert reply.status_code == 404, reply.text
            # team-a holds its max_sessions (2), one on each replica: a third is
            # refused on either, though each replica alone holds only one.
            for node in local.nodes:
                with pytest.raises(ConnectionRejected) as refused:
                    async with ws(node.websocket_port, KEY_A):
                        pass
                assert refused.value.status_code == 429
            # Another key has its own count.
            async with ws(r1.websocket_port, KEY_B) as b2:
                await connect(b2)
        # Slots come back when the sessions end.
        async def third_fits() -> bool:
            try:
                async with ws(r1.websocket_port, KEY_A) as again:
                    await connect(again)
                return True
            except ConnectionRejected:
                return False

        await eventually(third_fits)


async def test_chars_per_minute_holds_across_replicas() -> None:
    async with cluster(2, keys=True) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port, KEY_C) as c1, ws(r2.websocket_port, KEY_C) as c2:
            await connect(c1)
            await connect(c2)
            await c1.send(type="synthesize", text="x" * 60 + ".", request_id="first")
            assert (await c1.next_event())["type"] == "queued"
            # 61 + 61 > 100 for the key, though each replica has seen only 61.
            await c2.send(type="synthesize", text="y" * 60 + ".", request_id="second")
            refused = await c2.next_event()
            assert refused["type"] == "error", refused
            assert refused["code"] == "rate_limited"
            assert refused["request_id"] == "second"
            assert refused["details"]["limit"] == 100
            # A refused text is not charged: one that fits is still accepted.
            await c2.send(type="synthesize", text="z" * 30 + ".", request_id="third")
            assert (await c2.next_event())["type"] == "queued"


async def test_rest_created_session_attaches_wherever_the_websocket_lands() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        for created_on, attach_port in (
            (r1, r2.websocket_port),
            (r2, r1.websocket_port),
            (r1, local.websocket_port),  # through HAProxy
            (r2, local.websocket_port),
        ):
            reply = await call(created_on.http_port, "POST", "/api/v1/sessions",
                               config={"language": "en"})
            assert reply.status_code == 201, reply.text
            session_id = reply.json()["session_id"]
            async with ws(attach_port) as client:
                assert await connect(client, session_id) == session_id
                await client.send(type="synthesize", text="Hello there.", request_id="r")
                await client.until("audio_end", "r")
                # It is attached once, cluster-wide: a second connect is refused.
                async with ws(local.websocket_port) as other:
                    await other.send(type="connect", session_id=session_id)
                    error = await other.next_event("error")
                    assert error["code"] == "session_in_use"
                where = await listed(r1.http_port)
                assert session_id in where
                # The replica it was created on let go of its copy.
                async def one_copy(sid: str = session_id, holder: str = where[session_id]) -> bool:
                    others = [n for n in local.nodes if n.name != holder]
                    for node in others:
                        got = await call(node.http_port, "GET", f"/api/v1/sessions/{sid}")
                        if got.json().get("replica") != holder:
                            return False
                    return True

                await eventually(one_copy)


async def test_a_connect_refused_after_its_claim_leaves_the_session_free_to_attach() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        reply = await call(r1.http_port, "POST", "/api/v1/sessions", config={"language": "en"})
        assert reply.status_code == 201, reply.text
        session_id = reply.json()["session_id"]
        # Claimed by r2, then refused there for its settings: no connection holds it.
        async with ws(r2.websocket_port) as refused:
            await refused.send(type="connect", session_id=session_id,
                               config={"language": "xx"})  # fmt: skip
            assert (await refused.next_event("error"))["code"] == "unknown_language"
        # The claim is given back (one Redis call after the error went out): another
        # connection attaches it, here through r1. Before, the directory kept it
        # attached until its reaper, and every connect got session_in_use.
        async def attaches() -> bool:
            async with ws(r1.websocket_port) as client:
                await client.send(type="connect", session_id=session_id, config={})
                event = await client.next_event()
                if event["type"] == "error":
                    assert event["code"] == "session_in_use", event
                    return False
                assert event["type"] == "connected" and event["session_id"] == session_id
                return True

        await eventually(attaches)


async def test_a_killed_replica_leaves_the_directory_and_its_sessions_answer_404() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port) as first, ws(r1.websocket_port) as second:
            id1, id2 = await connect(first), await connect(second)
            await eventually(lambda: _has(r2, {id1, id2}))
            assert r1.process is not None
            r1.process.kill()
            await trio.to_thread.run_sync(r1.process.wait)
            # Nobody listens on r1's channel any more: 404 at once, not a timeout.
            reply = await call(r2.http_port, "POST", f"/api/v1/interrupt/{id1}")
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["code"] == "unknown_session"
            # The other leaves the directory when its entry expires: within the TTL
            # and a heartbeat (plus this poll's slack on a loaded machine).
            await eventually(lambda: _lacks(r2, {id1, id2}), within_s=TTL_S * 4 / 3 + 2.0)


async def _has(node: Replica, ids: set[str]) -> bool:
    return ids <= set(await listed(node.http_port))


async def _lacks(node: Replica, ids: set[str]) -> bool:
    return not ids & set(await listed(node.http_port))


async def test_a_redis_restart_is_survived_without_a_500() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port) as client:
            session_id = await connect(client)
            await eventually(lambda: _has(r2, {session_id}))
            local.stop_redis()
            for path in ("/api/v1/sessions", f"/api/v1/interrupt/{session_id}"):
                method = "GET" if path.endswith("sessions") else "POST"
                down = await call(r2.http_port, method, path)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "control_plane_unavailable"
                assert down.headers["Retry-After"] == "1"
            # Its own sessions a replica still serves.
            local_interrupt = await call(r1.http_port, "POST", f"/api/v1/interrupt/{session_id}")
            assert local_interrupt.status_code == 200
            local.start_redis()  # empty: the heartbeats write everything back

            async def routed_again() -> bool:
                reply = await call(r2.http_port, "POST", f"/api/v1/interrupt/{session_id}")
                assert reply.status_code in (200, 404, 503, 504), reply.text
                return reply.status_code == 200

            await eventually(routed_again)
            assert await _has(r2, {session_id})  # the directory healed itself
            # Both interrupts reached the client: r1's own and the one routed again.
            for _ in range(2):
                assert (await client.next_event("interrupted"))["type"] == "interrupted"


async def test_a_draining_replica_gets_no_new_sessions_while_its_live_ones_finish() -> None:
    async with cluster(2) as local:
        r1, r2 = local.nodes
        async with ws(r1.websocket_port) as speaker:
            await connect(speaker)
            await speaker.send(type="synthesize", text="One. Two. Three. Four. Five.",
                               request_id="live")
            await speaker.next_event("audio_start")
            local.signal(r1, signal.SIGTERM)

            async def draining() -> bool:
                health = await call(r1.http_port, "GET", "/health")
                return health.status_code == 503 and health.json()["status"] == "draining"

            await eventually(draining)
            refused = await call(r1.http_port, "POST", "/api/v1/sessions")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "draining"
            # New sessions through HAProxy all land on r2.
            for _ in range(3):
                async with ws(local.websocket_port) as newcomer:
                    new_id = await connect(newcomer)
                    assert (await listed(r2.http_port))[new_id] == "r2"
            # The live one finishes, then its connection is let go (1001).
            end = await speaker.until("audio_end", "live")
            assert end["request_id"] == "live"
            await speaker.drain(STEP_S)
            assert speaker.closed_code == 1001
        assert r1.process is not None
        with trio.fail_after(STEP_S):
            code = await trio.to_thread.run_sync(r1.process.wait)
        assert code == 0
