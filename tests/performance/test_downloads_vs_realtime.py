"""Issue #12 item 11 over real sockets: during a flood of HTTP speech (downloads) the
real-time WebSocket listeners get every paragraph and no ``busy``; the downloads beyond
what fits are told 503 with ``Retry-After`` (or wait briefly), never left hanging.

That the listeners hear no gap is the scheduler's guarantee (downloads run in the
background class), proven on virtual time in ``tests/unit/server/test_inference.py``:
a server process stopped by its machine for a moment does run dry, so a real-time
count of underruns here would test the machine, not the server.

The fake engine's chunks take worker time (``delay``: a sleep in the worker thread, so
the figures do not depend on this machine's speed).
"""

from __future__ import annotations

import httpx
import trio

from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import WAIT, running_server, ws_client
from tests.support.services import make_config, make_services

LISTENERS = 3
DOWNLOADS = 50
#: Sequential requests per listener: each starts a new stream while downloads flood.
PARAGRAPHS = 3


async def test_http_speech_floods_do_not_starve_realtime_listeners() -> None:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        # A listener's new stream may wait for room (measured wall time per chunk grows
        # on a busy test machine); patient enough that waiting never turns into busy.
        performance={"worker_processes": 2, "realtime_lead_ms": 1000,
                     "max_start_delay_ms": 30_000},
    )
    # 50 ms of audio per chunk for 10 ms of a worker: each listener needs 0.2 workers.
    services = make_services(config, [FakeEngine(delay=0.01)])
    statuses: list[httpx.Response] = []
    errors: list[dict[str, object]] = []
    async with running_server(config, services) as server:
        body = {"model": "tts-1", "voice": "fake-en", "input": "Word. " * 40,
                "response_format": "pcm"}

        async def download(http: httpx.AsyncClient) -> None:
            statuses.append(await http.post("/v1/audio/speech", json=body))

        async def listen(index: int) -> None:
            async with ws_client(server) as client:
                for paragraph in range(PARAGRAPHS):
                    request_id = f"l{index}-p{paragraph}"
                    await client.send(type="synthesize", text="One. Two. Three. " * 3,
                                      request_id=request_id)
                    await client.until("audio_end", request_id)
                errors.extend(client.events("error"))

        with trio.fail_after(WAIT * 4):
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.http_port}", timeout=WAIT * 4,
                limits=httpx.Limits(max_connections=DOWNLOADS),
            ) as http, trio.open_nursery() as nursery:
                for _ in range(DOWNLOADS):
                    nursery.start_soon(download, http)
                for index in range(LISTENERS):
                    nursery.start_soon(listen, index)
    assert errors == []  # no busy for a listener's new stream
    codes = [r.status_code for r in statuses]
    assert set(codes) <= {200, 503} and 200 in codes
    assert all(r.headers.get("retry-after") for r in statuses if r.status_code == 503)
