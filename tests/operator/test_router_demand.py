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


class DemandRouter:
    """A router's /demand long poll (the router's own HeldDemand) on a loopback address."""

    def __init__(self, host: str, port: int):
        from llmfleet.router.demand import HeldDemand

        self.held = HeldDemand()
        self.host, self.port = host, port

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        import json
        from urllib.parse import parse_qs

        query = parse_qs(scope["query_string"].decode())
        body = json.dumps(await self.held.wait(query.get("after", [""])[0], float(query["wait"][0]))).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def start(self):
        self.server = uvicorn.Server(uvicorn.Config(self, host=self.host, port=self.port, log_level="warning",
                                                    lifespan="off", timeout_graceful_shutdown=0))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self):
        self.server.should_exit = True
        self.server.force_exit = True
        await self.task


async def _until(check, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_watch_wakes_a_service_the_moment_a_router_holds_a_request_for_it():
    """Watch mode: one long poll per router pod; an increase in what any router holds for a
    service calls on_demand for it at once, and held() sums the routers' last answers."""
    port = _port()
    routers = [await DemandRouter(f"127.0.0.{2 + i}", port).start() for i in range(2)]
    kube = FakeKube([{"metadata": {"name": f"r{i}"}, "status": {"podIP": r.host}} for i, r in enumerate(routers)])
    demand = RouterDemand(kube, "llmfleet-system", "app.kubernetes.io/component=router", port=port, mode="watch",
                          pods_ttl=0.1, poll_wait=5)
    woken: list[tuple[str, str]] = []
    watch = asyncio.create_task(demand.watch(lambda ns, name: woken.append((ns, name))))
    try:
        await _until(lambda: _polling(demand, 2))
        routers[0].held.add(("team-a", "chat"), 1)
        await _until(lambda: _is(woken == [("team-a", "chat")]))
        routers[1].held.add(("team-a", "chat"), 2)
        await _until(lambda: _is(len(woken) == 2))
        assert await demand.held("team-a", "chat") == 3
        assert await demand.held("team-b", "chat") == 0
        routers[0].held.add(("team-a", "chat"), -1)  # served: a decrease wakes nobody
        await _until(lambda: _equals(demand.held("team-a", "chat"), 2))
        assert len(woken) == 2

        # a router pod gone from the list takes its held requests with it
        kube.pods = kube.pods[:1]
        await _until(lambda: _equals(demand.held("team-a", "chat"), 0))
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        for r in routers:
            await r.stop()


async def test_watch_drops_a_router_that_stops_answering():
    port = _port()
    router = await DemandRouter("127.0.0.2", port).start()
    kube = FakeKube([{"metadata": {"name": "r0"}, "status": {"podIP": "127.0.0.2"}}])
    demand = RouterDemand(kube, "llmfleet-system", "app.kubernetes.io/component=router", port=port, mode="watch",
                          pods_ttl=0.1, poll_wait=0.2)
    watch = asyncio.create_task(demand.watch(lambda ns, name: None))
    try:
        router.held.add(("team-a", "chat"), 4)
        await _until(lambda: _equals(demand.held("team-a", "chat"), 4))
        await router.stop()
        await _until(lambda: _equals(demand.held("team-a", "chat"), 0))
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


class EndlessDemandRouter(DemandRouter):
    """A pod on the router's port whose /demand answer never ends (a hostile or broken one)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"token": "1", "held": [', "more_body": True})
        for _ in range(10_000):  # about 100 s of 256 KiB every 10 ms: longer than any test waits
            await send({"type": "http.response.body", "body": b" " * 2**18, "more_body": True})
            await asyncio.sleep(0.01)


async def test_watch_stops_reading_an_endless_answer_and_counts_it_as_none():
    """A reader without a cap would wait on this answer for ever; the poll gives up at
    MAX_BODY_BYTES, counts the router as holding nothing and lists the pods again."""
    port = _port()
    router = await EndlessDemandRouter("127.0.0.2", port).start()
    kube = FakeKube([{"metadata": {"name": "r0"}, "status": {"podIP": "127.0.0.2"}}])
    demand = RouterDemand(kube, "llmfleet-system", "app.kubernetes.io/component=router", port=port, mode="watch",
                          pods_ttl=60, poll_wait=0.2)
    woken: list[tuple[str, str]] = []
    watch = asyncio.create_task(demand.watch(lambda ns, name: woken.append((ns, name))))
    try:
        await _until(lambda: _is(kube.calls >= 1))  # the first list, which starts the poll
        await _until(lambda: _is(kube.calls >= 2))  # the answer refused: the pods are listed again
        assert woken == [] and await demand.held("team-a", "chat") == 0
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await router.stop()


def test_the_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMFLEET_ROUTER_SELECTOR", "app.kubernetes.io/component=router")
    monkeypatch.setenv("POD_NAMESPACE", "llmfleet-system")
    assert RouterDemand.from_environment(FakeKube([])).watching  # the default
    monkeypatch.setenv("LLMFLEET_ROUTER_DEMAND", "scrape")
    assert not RouterDemand.from_environment(FakeKube([])).watching
    monkeypatch.setenv("LLMFLEET_ROUTER_DEMAND", "push")
    assert RouterDemand.from_environment(FakeKube([])).watching  # unknown: the default, with a warning
    monkeypatch.delenv("LLMFLEET_ROUTER_SELECTOR")
    assert RouterDemand.from_environment(FakeKube([])) is None  # no router installed


async def _polling(demand: RouterDemand, n: int) -> bool:
    return len(demand._polled) == n


async def _is(value: bool) -> bool:
    return value


async def _equals(held, n: int) -> bool:
    return await held == n
