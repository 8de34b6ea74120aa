"""A hostile tenant or client against the router: bodies built to crash it, and a service
that squats another tenant's served name to catch its traffic and its API keys."""

from __future__ import annotations

import asyncio
import json

from llmfleet.router.fleet import ServiceInfo
from router_fakes import FakeEngine, open_bench

JSON = {"content-type": "application/json"}


def chat_body(system: str = "You are terse.", model: str = "chat") -> bytes:
    # json.dumps escapes a lone surrogate ("\\ud800"), as any client may send it
    return json.dumps({"model": model, "messages": [{"role": "system", "content": system},
                                                   {"role": "user", "content": "hi"}]}).encode()


async def test_a_body_nested_past_the_decoders_stack_is_a_400():
    async with open_bench() as bench:
        svc = bench.service()
        fake = await bench.engine(svc)
        deep = b'{"model": "chat", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        resp = await bench.client.post("/v1/chat/completions", content=deep, headers=JSON)
        assert resp.status_code == 400
        assert "nested too deeply" in resp.json()["error"]["message"]
        assert fake.requests == []


async def test_a_lone_surrogate_in_the_routing_key_reaches_the_engine_to_be_refused():
    """The router hashes the system prompt to pick a replica; a lone surrogate there must not
    make it fail (a 500 that names nothing): the engine refuses it with the field."""
    async with open_bench() as bench:
        svc = bench.service()
        fake = await bench.engine(svc)
        resp = await bench.client.post("/v1/chat/completions", content=chat_body("be \ud800 terse"), headers=JSON)
        assert resp.status_code == 200, resp.text  # the fake engine answers anything
        assert fake.requests[-1]["messages"][0]["content"] == "be \ud800 terse"
        session = await bench.client.post("/v1/chat/completions", content=chat_body(),
                                          headers={**JSON, "x-session-id": "caf\xe9".encode("latin-1")})
        assert session.status_code == 200


def squat(bench, namespace: str, name: str, created: str, keys) -> ServiceInfo:
    info = ServiceInfo(namespace, name, "chat", created=created)
    bench.fleet.set_service(info)
    bench.fleet.set_keys(info.id, keys)
    return info


async def test_a_keyless_service_squatting_a_served_name_never_gets_a_keyed_tenants_traffic():
    """Team B made a keyless service serving "chat" before team A's keyed "chat" (or A's was
    recreated): A's clients, sending A's key, must still reach A, and B's pods must never see
    A's key. The caller's key matching a service's keys decides before age does."""
    async with open_bench() as bench:
        b = squat(bench, "team-b", "trap", "2026-01-01T00:00:00Z", None)
        a = squat(bench, "team-a", "chat", "2026-06-01T00:00:00Z", ("key-a",))
        fake_b = await bench.engine(b, FakeEngine(name="b"))
        fake_a = await bench.engine(a, FakeEngine(name="a"))
        resp = await bench.client.post("/v1/chat/completions", content=chat_body(),
                                       headers={**JSON, "authorization": "Bearer key-a"})
        assert resp.status_code == 200 and resp.json()["served_by"] == "a" and len(fake_a.requests) == 1
        assert fake_b.requests == []
        # without a key, or with another, the keyless service is the one that takes it
        anon = await bench.client.post("/v1/chat/completions", content=chat_body(), headers=JSON)
        assert anon.json()["served_by"] == "b"
        assert all("key-a" not in h.get("authorization", "") for h in fake_b.headers)


async def test_a_key_the_router_cannot_check_never_reaches_a_squatter():
    """The router may not read team A's Secret (its engines check the key), and team B serves
    the same name without keys: the router cannot tell whose client a keyed request is, so it
    refuses (409 naming the way out) rather than hand A's key and prompt to B's pods, or B's
    clients' prompts to A's. Alone, A gets its keyed requests; B keeps its keyless ones."""
    async with open_bench() as bench:
        b = squat(bench, "team-b", "trap", "2026-01-01T00:00:00Z", None)
        a = squat(bench, "team-a", "chat", "2026-06-01T00:00:00Z", ())
        bench.fleet.keys_checked_by_engine(a.id)
        fake_b = await bench.engine(b, FakeEngine(name="b"))
        fake_a = await bench.engine(a, FakeEngine(name="a"))
        keyed = {**JSON, "authorization": "Bearer key-a"}
        resp = await bench.client.post("/v1/chat/completions", content=chat_body(), headers=keyed)
        err = resp.json()["error"]
        assert resp.status_code == 409 and err["code"] == "ambiguous_model" and err["param"] == "model"
        assert "servedName" in err["message"] and "team-" not in err["message"]  # no other tenant named
        assert fake_a.requests == [] and fake_b.requests == []
        anon = await bench.client.post("/v1/chat/completions", content=chat_body(), headers=JSON)
        assert anon.json()["served_by"] == "b"

        bench.fleet.remove_service(*b.id)
        resp = await bench.client.post("/v1/chat/completions", content=chat_body(), headers=keyed)
        assert resp.json()["served_by"] == "a" and fake_a.headers[-1]["authorization"] == "Bearer key-a"


async def test_a_body_that_never_finishes_is_cut_at_the_deadline():
    """Slowloris: headers announcing a body, then a trickle. Without a deadline each such client
    holds a router connection and its buffer for ever, and every tenant shares the router."""
    async with open_bench(body_read_timeout_seconds=1) as bench:
        svc = bench.service()
        fake = await bench.engine(svc)
        reader, writer = await asyncio.open_connection("127.0.0.1", int(bench.url.rsplit(":", 1)[1]))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"model": "chat"')
        await writer.drain()
        for _ in range(3):  # keeps sending, a byte at a time, never the whole body
            await asyncio.sleep(0.4)
            writer.write(b" ")
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
        body = json.loads(await reader.readexactly(length))
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert body["error"]["code"] == "body_timeout" and fake.requests == []
        # the router goes on serving everyone else
        ok = await bench.client.post("/v1/chat/completions", content=chat_body(), headers=JSON)
        assert ok.status_code == 200
