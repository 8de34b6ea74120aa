"""The router against fake upstream engines on loopback: routing, streaming, retries, holds,
bad input and keys. Each test tells one story a client would notice."""

from __future__ import annotations

import asyncio
import json

import pytest
from llmfleet.router.fleet import Replica
from router_fakes import FakeEngine, open_bench

CHAT_BODY = {"model": "chat", "messages": [{"role": "system", "content": "You are terse."},
                                           {"role": "user", "content": "hi"}]}


@pytest.fixture
async def bench(request):
    async with open_bench(**getattr(request, "param", {})) as b:
        yield b


async def post(bench, body=None, path="/v1/chat/completions", **kw):
    return await bench.client.post(path, json=CHAT_BODY if body is None else body, **kw)


def error_of(resp) -> dict:
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}  # OpenAI-shaped
    return err


async def test_a_request_reaches_its_model_and_the_answer_comes_back(bench):
    svc = bench.service()
    other = bench.service(name="poet", served="poet")
    fake = await bench.engine(svc, FakeEngine(name="chat-engine"))
    poet = await bench.engine(other, FakeEngine(name="poet-engine"))
    resp = await post(bench, headers={"authorization": "Bearer whatever", "x-request-id": "r-1"})
    assert resp.status_code == 200 and resp.json()["served_by"] == "chat-engine"
    assert fake.requests == [CHAT_BODY] and poet.requests == []
    # the engine sees the client's own headers (its key check runs again there)
    assert fake.headers[0]["authorization"] == "Bearer whatever" and fake.headers[0]["x-request-id"] == "r-1"
    assert bench.metric("llmfleet_router_requests_total", model="chat", code="200") == 1
    assert bench.metric("llmfleet_router_routing_decisions_total", model="chat", reason="prefix") == 1


async def test_streams_are_relayed_chunk_by_chunk(bench):
    svc = bench.service()
    fake = await bench.engine(svc, FakeEngine(mode="stream", name="s"))
    async with bench.client.stream("POST", "/v1/chat/completions", json={**CHAT_BODY, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()
        first = await asyncio.wait_for(anext(lines), 5)
        # the engine has not sent the rest yet: the first event reached us on its own
        assert first == 'data: {"from": "s"}' and not fake.release.is_set()
        fake.release.set()
        rest = [line async for line in lines if line]
    assert rest == ["data: [DONE]"]


@pytest.mark.parametrize("bad", ["503", "garbage", "dead", "not-http", "hang"])
@pytest.mark.parametrize("bench", [{"response_timeout_seconds": 1.0}], indirect=True)  # hang: 1 s
async def test_a_failing_replica_is_skipped_before_the_first_byte(bench, bad):
    """Draining (503), broken (garbage, not HTTP), gone (refused) or hung replicas cost the client
    nothing: the request is retried on a healthy one."""
    svc = bench.service()
    healthy = await bench.engine(svc, FakeEngine(name="healthy"))
    if bad == "dead":
        bench.dead_replica(svc)
    elif bad == "not-http":
        server = await asyncio.start_server(_garbage_writer, "127.0.0.1", 0)
        bench.add_replica(svc, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", "junk")
    else:
        await bench.engine(svc, FakeEngine(mode=bad, name=bad))
    # Different prefixes hash to both replicas, but where each lands depends on the replicas'
    # (random) ports: send until one has met the bad replica, at least 6, at most 40 (all 40
    # on the healthy one by chance: about 1e-12).
    sent = 0
    while sent < 40 and (sent < 6 or not _retries(bench)):
        body = {**CHAT_BODY, "messages": [{"role": "system", "content": f"tenant {sent}"}]}
        resp = await post(bench, body)
        sent += 1
        assert resp.status_code == 200, resp.text
        assert resp.json()["served_by"] == "healthy"
    assert len(healthy.requests) == sent
    assert _retries(bench) >= 1


def _retries(bench) -> float:
    return sum(_samples(bench, "llmfleet_router_retries_total").values())


async def _garbage_writer(reader, writer):
    await reader.read(100)
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    await writer.drain()
    writer.close()


def _samples(bench, name):
    out = {}
    for family in bench.app.metrics.registry.collect():
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.mark.parametrize("bench", [{"max_attempts": 3}], indirect=True)
async def test_every_replica_refusing_ends_in_503_with_retry_after(bench):
    svc = bench.service()
    a = await bench.engine(svc, FakeEngine(mode="503"))
    b = await bench.engine(svc, FakeEngine(mode="503"))
    resp = await post(bench)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert error_of(resp)["code"] == "no_ready_replica"
    assert len(a.requests) + len(b.requests) == 3  # the attempt budget, not more


async def test_engine_errors_other_than_503_are_passed_on(bench):
    svc = bench.service()
    await bench.engine(svc, FakeEngine(mode="error500"))
    resp = await post(bench)
    assert resp.status_code == 500 and resp.json()["error"]["message"] == "boom"


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code_or_param"),
    [
        ("not JSON", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, None),
        ("no model", {"json": {"messages": [{"role": "user", "content": "x"}]}}, 400, "model"),
        ("no messages", {"json": {"model": "chat"}}, 400, "messages"),
        ("not JSON content type", {"content": b"hi", "headers": {"content-type": "text/plain"}}, 415, None),
        ("unknown model", {"json": {**CHAT_BODY, "model": "gpt-9"}}, 404, "model"),
        ("too large (Content-Length)", {"content": b"x" * 2048, "headers": {"content-type": "application/json"}},
         413, None),
    ],
)
@pytest.mark.parametrize("bench", [{"max_body_bytes": 1024}], indirect=True)
async def test_bad_input_never_reaches_an_engine(bench, case, kwargs, status, code_or_param):
    svc = bench.service()
    fake = await bench.engine(svc)
    resp = await bench.client.post("/v1/chat/completions", **kwargs)
    assert resp.status_code == status, case
    assert error_of(resp)["param"] == code_or_param
    if status == 404:
        assert error_of(resp)["code"] == "model_not_found"
    assert fake.requests == []


@pytest.mark.parametrize("bench", [{"max_body_bytes": 1024}], indirect=True)
async def test_a_body_without_content_length_is_capped_while_read(bench):
    svc = bench.service()
    fake = await bench.engine(svc)

    async def chunks():
        for _ in range(10):
            yield b"x" * 512

    resp = await bench.client.post("/v1/chat/completions", content=chunks(),
                                   headers={"content-type": "application/json"})
    assert resp.status_code == 413 and fake.requests == []


async def test_unknown_routes_and_methods(bench):
    assert (await bench.client.get("/v1/nothing")).status_code == 404
    resp = await bench.client.get("/v1/chat/completions")
    assert resp.status_code == 405 and error_of(resp)["type"] == "invalid_request_error"
    assert (await bench.client.get("/health")).json() == {"status": "ok"}


async def test_api_keys_keep_tenants_apart(bench):
    a = bench.service(name="chat", served="chat", namespace="team-a", keys=("key-a",))
    b = bench.service(name="poet", served="poet", namespace="team-b", keys=("key-b",))
    bench.service(name="open", served="open", namespace="team-c", keys=None)
    fake_a = await bench.engine(a)
    fake_b = await bench.engine(b)
    assert (await post(bench)).status_code == 401
    wrong = await post(bench, headers={"authorization": "Bearer key-b"})
    assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"
    assert (await post(bench, {**CHAT_BODY, "model": "poet"}, headers={"authorization": "Bearer key-a"})
            ).status_code == 401
    assert fake_a.requests == [] and fake_b.requests == []
    assert (await post(bench, headers={"authorization": "Bearer key-a"})).status_code == 200
    models = (await bench.client.get("/v1/models", headers={"authorization": "Bearer key-a"})).json()
    assert [m["id"] for m in models["data"]] == ["chat", "open"]


async def test_unreadable_keys_fail_closed(bench):
    svc = bench.service(keys=())
    bench.fleet.set_keys(svc.id, (), "Secret team-a/keys not found")
    fake = await bench.engine(svc)
    resp = await post(bench, headers={"authorization": "Bearer anything"})
    assert resp.status_code == 503 and "apiKeySecretRef" in error_of(resp)["message"]
    assert "team-a" not in error_of(resp)["message"]  # whose Secret, and where, is not every caller's to know
    assert fake.requests == []


async def test_keys_the_router_may_not_read_are_checked_by_the_engine(bench):
    """router.readSecrets=false: the router forwards a request that carries a key and the
    engine answers for it; one without a key is refused before any engine; the model is not
    listed (the router cannot tell who may know of it)."""
    svc = bench.service(keys=())
    bench.fleet.keys_checked_by_engine(svc.id)
    fake = await bench.engine(svc)
    missing = await post(bench)
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"
    assert fake.requests == []
    resp = await post(bench, headers={"authorization": "Bearer key-a"})
    assert resp.status_code == 200
    assert fake.headers[-1]["authorization"] == "Bearer key-a"  # the engine checks it
    models = (await bench.client.get("/v1/models", headers={"authorization": "Bearer key-a"})).json()
    assert models["data"] == []


async def test_a_key_the_router_cannot_check_never_wakes_a_service_from_zero(bench):
    svc = bench.service(keys=())
    bench.fleet.keys_checked_by_engine(svc.id)
    at_zero = await post(bench, headers={"authorization": "Bearer key-a"})
    assert at_zero.status_code == 503 and "does not wake it from zero" in error_of(at_zero)["message"]
    assert (await bench.admin.get("/demand")).json()["held"] == []

    # a pod that is starting: the request waits for it, but is no demand (nothing held for the operator)
    bench.fleet.set_replica(Replica(svc.namespace, "chat-0", svc.name, "", False))
    pending = asyncio.create_task(post(bench, headers={"authorization": "Bearer key-a"}))
    await asyncio.sleep(0.3)
    assert not pending.done()
    assert (await bench.admin.get("/demand")).json()["held"] == []
    assert bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat", model="chat") == 0
    fake = await bench.engine(svc, FakeEngine(name="ready"))
    resp = await asyncio.wait_for(pending, 10)
    assert resp.status_code == 200 and len(fake.requests) == 1


async def test_a_request_is_held_until_a_replica_is_ready(bench):
    svc = bench.service()
    pending = asyncio.create_task(post(bench))
    await _until(lambda: bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat",
                                      model="chat") == 1)
    fake = await bench.engine(svc, FakeEngine(name="late"))
    resp = await asyncio.wait_for(pending, 10)
    assert resp.status_code == 200 and resp.json()["served_by"] == "late" and len(fake.requests) == 1
    assert bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat", model="chat") == 0


@pytest.mark.parametrize("bench", [{"hold_timeout_seconds": 0.5, "max_held_per_service": 1}], indirect=True)
async def test_holding_is_bounded_in_time_and_in_number(bench):
    bench.service()
    first = asyncio.create_task(post(bench))
    await _until(lambda: bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat",
                                      model="chat") == 1)
    second = await post(bench)  # the hold queue is full: refused at once
    assert second.status_code == 503 and "already waiting" in error_of(second)["message"]
    resp = await first
    assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1
    assert "no ready replica" in error_of(resp)["message"]


async def test_a_client_gone_mid_stream_aborts_the_upstream_request(bench):
    svc = bench.service()
    fake = await bench.engine(svc, FakeEngine(mode="stream"))
    async with bench.client.stream("POST", "/v1/chat/completions", json={**CHAT_BODY, "stream": True}) as resp:
        await anext(resp.aiter_lines())
    # the client closed its connection; the router must close the engine's
    await asyncio.wait_for(fake.disconnected.wait(), 5)
    await _until(lambda: bench.metric("llmfleet_router_client_disconnects_total", model="chat") == 1)


async def test_a_client_gone_while_held_leaves_the_queue(bench):
    bench.service()
    pending = asyncio.create_task(post(bench))
    await _until(lambda: bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat",
                                      model="chat") == 1)
    pending.cancel()  # closes the client's connection
    await _until(lambda: bench.metric("llmfleet_router_requests_held", namespace="team-a", service="chat",
                                      model="chat") == 0)


async def test_same_prefix_same_replica_other_prefixes_spread(bench):
    svc = bench.service()
    fakes = [await bench.engine(svc, FakeEngine(name=f"e{i}")) for i in range(3)]
    for _ in range(4):
        await post(bench)
    assert sorted(len(f.requests) for f in fakes) == [0, 0, 4]
    for i in range(30):
        await post(bench, {**CHAT_BODY, "messages": [{"role": "system", "content": f"tenant {i}"}]})
    assert all(f.requests for f in fakes)


async def test_metrics_endpoint(bench):
    text = (await bench.admin.get("/metrics")).text
    assert "llmfleet_router_requests_held" in text


async def _until(check, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_json_body_helper():
    assert json.loads(json.dumps(CHAT_BODY))["model"] == "chat"
