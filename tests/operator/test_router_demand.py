"""The operator's reading of the routers' held requests (the scale-from-zero signal)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from llmfleet.operator.router_demand import RouterDemand, held_by_service
from llmfleet.router.metrics import RouterMetrics


def exposition(*held: tuple[str, str, str, int]) -> str:
    """What a real router exports (its own metrics module) with these held counts."""
    m = RouterMetrics()
    for ns, service, model, n in held:
        m.held.labels(ns, service, model).set(n)
    return m.render().decode()


def test_held_by_service_from_a_routers_exposition():
    text = exposition(("team-a", "chat", "chat", 3), ("team-b", "chat", "chat", 1), ("team-a", "idle", "x", 0))
    assert held_by_service(text) == {("team-a", "chat"): 3, ("team-b", "chat"): 1}
    assert held_by_service("garbage {{{") == {}


class FakeKube:
    def __init__(self, pods):
        self.pods = pods
        self.calls = 0

    async def list(self, kind, namespace, label_selector=""):
        self.calls += 1
        assert (kind, namespace, label_selector) == ("Pod", "llmfleet-system", "app.kubernetes.io/component=router")
        return self.pods


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


async def test_held_requests_are_summed_over_the_routers():
    n_routers = 2
    port = _port()
    servers = []
    for i, held in enumerate((2, 3)):
        text = exposition(("team-a", "chat", "chat", held)).encode()

        async def app(scope, receive, send, text=text):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": text})

        server = uvicorn.Server(uvicorn.Config(app, host=f"127.0.0.{2 + i}", port=port, log_level="warning",
                                               lifespan="off"))
        servers.append((server, asyncio.create_task(server.serve())))
    while not all(s.started for s, _ in servers):
        await asyncio.sleep(0.01)
    pods = [{"metadata": {"name": f"r{i}"}, "status": {"podIP": f"127.0.0.{2 + i}"}} for i in range(n_routers)]
    pods.append({"metadata": {"name": "gone", "deletionTimestamp": "x"}, "status": {"podIP": "127.0.0.9"}})
    pods.append({"metadata": {"name": "down"}, "status": {"podIP": "127.0.0.10"}})  # nothing listens: counts 0
    kube = FakeKube(pods)
    demand = RouterDemand(kube, "llmfleet-system", "app.kubernetes.io/component=router", port=port, ttl=60)
    try:
        assert await demand.held("team-a", "chat") == 5
        assert await demand.held("team-a", "other") == 0
        assert kube.calls == 1  # one read serves every service within the ttl
    finally:
        for server, task in servers:
            server.should_exit = True
            await task


async def test_the_router_pods_are_listed_again_only_after_pods_ttl_or_when_one_did_not_answer():
    port = _port()
    text = exposition(("team-a", "chat", "chat", 1)).encode()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.2", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    kube = FakeKube([{"metadata": {"name": "r0"}, "status": {"podIP": "127.0.0.2"}}])
    demand = RouterDemand(kube, "llmfleet-system", "app.kubernetes.io/component=router", port=port, ttl=0,
                          pods_ttl=60)
    try:
        for _ in range(3):  # scraped at every read, listed once
            assert await demand.held("team-a", "chat") == 1
        assert kube.calls == 1
        kube.pods.append({"metadata": {"name": "r1"}, "status": {"podIP": "127.0.0.10"}})  # nothing listens there
        demand.pods_ttl = 0
        assert await demand.held("team-a", "chat") == 1
        demand.pods_ttl = 60
        calls = kube.calls
        assert await demand.held("team-a", "chat") == 1  # r1 did not answer: listed again
        assert kube.calls == calls + 1
    finally:
        server.should_exit = True
        await task
