"""A hostile tenant or client against the router: bodies built to crash it, and a service
that squats another tenant's served name to catch its traffic and its API keys."""

from __future__ import annotations

import json

from router_fakes import open_bench

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
