"""GET /demand: the long poll the operator keeps open on each router, so that a request held
for a service with no replica reaches the operator at once (scale from zero)."""

from __future__ import annotations

import asyncio

import pytest
from router_fakes import open_bench

CHAT_BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def bench():
    async with open_bench(hold_timeout_seconds=30) as b:
        yield b


async def test_a_poll_with_the_current_token_answers_when_a_request_is_held(bench):
    bench.service()
    first = (await bench.admin.get("/demand")).json()  # no token: the counts at once
    assert first["held"] == []
    poll = asyncio.create_task(bench.admin.get("/demand", params={"after": first["token"], "wait": "20"}))
    await asyncio.sleep(0.3)
    assert not poll.done()  # nothing changed: the router keeps the poll open
    held = asyncio.create_task(bench.client.post("/v1/chat/completions", json=CHAT_BODY))
    answer = (await asyncio.wait_for(poll, 10)).json()
    assert answer["held"] == [{"namespace": "team-a", "service": "chat", "requests": 1}]
    assert answer["token"] != first["token"]

    # the replica comes: the held request is served and the next poll says nothing is held
    poll = asyncio.create_task(bench.admin.get("/demand", params={"after": answer["token"], "wait": "20"}))
    await bench.engine(bench.fleet.services[("team-a", "chat")])
    assert (await asyncio.wait_for(held, 10)).status_code == 200
    assert (await asyncio.wait_for(poll, 10)).json()["held"] == []


async def test_a_poll_without_change_ends_after_its_wait_with_the_same_token(bench):
    token = (await bench.admin.get("/demand")).json()["token"]
    again = (await bench.admin.get("/demand", params={"after": token, "wait": "0.2"})).json()
    assert again == {"token": token, "held": []}
    stale = (await bench.admin.get("/demand", params={"after": "another-router.7", "wait": "20"})).json()
    assert stale["token"] == token  # a token this router never gave (it restarted): answered at once


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf"])
async def test_a_bad_wait_is_refused(bench, wait):
    resp = await bench.admin.get("/demand", params={"wait": wait})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "wait"
