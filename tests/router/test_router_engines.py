"""The router in front of two real `llmfleet-engine` processes (tiny model, loopback): the same
answers as straight to an engine, prefix routing that makes the prefix cache hit, the poller
reading real gauges, and a drained engine costing the clients nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from engine_process import EngineProcess
from llmfleet.router.fleet import Replica, ServiceInfo
from llmfleet.router.poller import poll_once
from router_fakes import open_bench

SYSTEM = "You are a helpful assistant who answers questions about the Python standard library. " * 3


DRAIN_TOKEN = "drain-token-for-the-router-tests"


@pytest.fixture(scope="module")
def engines(tiny_llama, tmp_path_factory):
    token = tmp_path_factory.mktemp("drain") / "drain-token"
    token.write_text(DRAIN_TOKEN + "\n")
    procs = [EngineProcess(tiny_llama, "--drain-grace-seconds", "0", "--drain-token-file", str(token), wait=False)
             for _ in range(2)]
    try:
        for p in procs:
            p.wait_ready()
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture
async def bench(request):
    async with open_bench(**getattr(request, "param", {})) as b:
        yield b


def _wire(bench, engines) -> ServiceInfo:
    svc = bench.service(served="tiny")
    for i, e in enumerate(engines):
        bench.fleet.set_replica(Replica("team-a", f"tiny-{i}", svc.name, e.url, True))
    return svc


def chat(question: str, **extra) -> dict:
    return {"model": "tiny", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], **extra}


async def test_same_answers_as_the_engine_streamed_or_not(bench, engines):
    _wire(bench, engines)
    direct = httpx.post(engines[0].url + "/v1/chat/completions", json=chat("What does json.dumps do?"), timeout=60)
    routed = await bench.client.post("/v1/chat/completions", json=chat("What does json.dumps do?"))
    assert routed.status_code == 200
    text = routed.json()["choices"][0]["message"]["content"]
    assert text == direct.json()["choices"][0]["message"]["content"]
    pieces = []
    async with bench.client.stream("POST", "/v1/chat/completions",
                                   json=chat("What does json.dumps do?", stream=True)) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                import json

                delta = json.loads(line[6:])["choices"][0]["delta"]
                pieces.append(delta.get("content") or "")
    assert "".join(pieces) == text
    models = (await bench.client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]


async def test_a_shared_system_prompt_stays_on_one_replica_and_hits_its_cache(bench, engines):
    _wire(bench, engines)
    before = [e.metric("llmfleet_engine_prefix_cache_hits_total") for e in engines]
    replicas = set()
    for q in ("What does os.path.join do?", "What is a deque?", "How do I sort a dict?", "What is asyncio?"):
        resp = await bench.client.post("/v1/chat/completions", json=chat(q))
        assert resp.status_code == 200
        replicas.add(resp.headers["x-llmfleet-replica"])
    assert len(replicas) == 1
    served = next(i for i, e in enumerate(engines) if e.url.removeprefix("http://") in replicas)
    gained = [e.metric("llmfleet_engine_prefix_cache_hits_total") - b for e, b in zip(engines, before, strict=True)]
    assert gained[served] > 0 and gained[1 - served] == 0


async def test_the_poller_reads_the_engines_gauges(bench, engines):
    _wire(bench, engines)
    await poll_once(bench.fleet, bench.app.client, bench.app.config)
    for e in engines:
        load = bench.fleet.loads[e.url]
        assert load.scraped == 0 and load.kv_usage == 0 and not load.draining


async def test_a_drained_engine_costs_the_clients_nothing(bench, engines, tiny_llama):
    """Drain the replica a prefix is routed to, before the router hears of it by any other way than
    the engine's own 503: every request still succeeds, on the other replica."""
    svc = _wire(bench, engines)
    first = await bench.client.post("/v1/chat/completions", json=chat("q0"))
    target = next(e for e in engines if e.url.removeprefix("http://") == first.headers["x-llmfleet-replica"])
    other = next(e for e in engines if e is not target)
    drain = httpx.post(target.url + "/drain", headers={"Authorization": f"Bearer {DRAIN_TOKEN}"}, timeout=5)
    assert drain.json()["draining"] is True
    await asyncio.sleep(0.2)  # grace 0: the engine refuses new requests now
    results = await asyncio.gather(*(bench.client.post("/v1/chat/completions", json=chat(f"q{i}"))
                                     for i in range(6)))
    assert [r.status_code for r in results] == [200] * 6
    assert {r.headers["x-llmfleet-replica"] for r in results} == {other.url.removeprefix("http://")}
    assert bench.metric("llmfleet_router_retries_total", model="tiny", reason="unavailable") >= 1
    # once the poller has read the draining gauge, the drained replica is out of rotation
    await poll_once(bench.fleet, bench.app.client, bench.app.config)
    assert [c.name for c in bench.fleet.candidates(svc)] == [other.url]


def test_the_router_package_imports_no_torch():
    """It ships in the operator image, which has no torch."""
    code = ("import sys; import llmfleet.router.cli, llmfleet.router.app, llmfleet.router.discovery, "
            "llmfleet.router.poller; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
