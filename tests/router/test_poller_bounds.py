"""The router reads every replica's /metrics, and a replica runs its tenant's image: one that
drips or inflates its answer must not stall or swell the poll that every service's routing
relies on."""

from __future__ import annotations

import asyncio
import gzip

from llmfleet.router.fleet import Replica
from llmfleet.router.poller import poll_once
from router_fakes import FakeEngine, free_port, open_bench, serve

GAUGES = b"llmfleet_engine_requests_waiting 3\nllmfleet_engine_requests_running 1\n"


async def dripping(scope, receive, send):
    """Headers at once, then a byte at a time, for ever: each read well inside a per-read timeout."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    while True:
        await send({"type": "http.response.body", "body": b"#", "more_body": True})
        await asyncio.sleep(0.1)


async def gzipped(scope, receive, send):
    """A valid exposition, gzip-encoded: small here, a bomb in the wild (inflated before any cap)."""
    if scope["type"] != "http":
        return
    body = gzip.compress(GAUGES)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-encoding", b"gzip"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def test_a_replica_dripping_or_inflating_its_metrics_stalls_no_ones_readings():
    async with open_bench(metrics_timeout_seconds=0.5) as bench:
        mine = bench.service(name="mine", served="mine", namespace="team-a")
        theirs = bench.service(name="theirs", served="theirs", namespace="team-b")
        good = FakeEngine(metrics_text=GAUGES.decode())
        await bench.engine(mine, good)
        hostile = {}
        for name, app in (("drip", dripping), ("bomb", gzipped)):
            port = free_port()
            bench._servers.append(await serve(app, port))
            hostile[name] = f"http://127.0.0.1:{port}"
            bench.fleet.set_replica(Replica(theirs.namespace, name, theirs.name, hostile[name], True))

        await asyncio.wait_for(poll_once(bench.fleet, bench.app.client, bench.app.config), 20)  # never ended before

        readings = {url: load.scraped for url, load in bench.fleet.loads.items()}
        assert readings[hostile["drip"]] is None and readings[hostile["bomb"]] is None  # refused, not inflated
        assert sorted(v for v in readings.values() if v is not None) == [4.0]  # the honest replica: 3 + 1


BOMB: list[bytes] = []  # made once, before the memory is traced
BOMB_HITS: list[int] = []


async def refusing_with_a_bomb(scope, receive, send):
    """A 503 whose body is 64 MiB of zeros, gzip-encoded (64 KiB on the wire)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    BOMB_HITS.append(1)
    body = BOMB[0]
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def test_a_refusal_is_read_raw_and_short_never_inflated():
    import tracemalloc

    async with open_bench() as bench:
        svc = bench.service()
        port = free_port()
        bench._servers.append(await serve(refusing_with_a_bomb, port))
        bench.fleet.set_replica(Replica(svc.namespace, "bomb", svc.name, f"http://127.0.0.1:{port}", True))
        good = await bench.engine(svc)
        BOMB[:] = [gzip.compress(bytes(64 * 2**20), compresslevel=1)]
        tracemalloc.start()
        try:
            sent = 0
            while not BOMB_HITS and sent < 50:  # prompts until the ring sends one to the bomb first
                resp = await bench.client.post("/v1/chat/completions", json={
                    "model": "chat", "messages": [{"role": "user", "content": f"hi {sent}"}]})
                assert resp.status_code == 200  # the good replica answers, first or on the retry
                sent += 1
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert BOMB_HITS and len(good.requests) == sent
        assert peak < 16 * 2**20, peak  # the bomb is 64 MiB inflated
