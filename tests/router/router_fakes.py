"""Loopback helpers for the router tests: fake upstream engines with scripted failures, and a
router served by uvicorn on the test's own event loop, over a Fleet the test fills in by hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field

import httpx
import uvicorn
from llmfleet.router.app import RouterApp
from llmfleet.router.config import RouterConfig
from llmfleet.router.fleet import Fleet, Replica, ServiceInfo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(app, port: int, *more_ports: int) -> tuple[uvicorn.Server, asyncio.Task]:
    """`app` on 127.0.0.1:`port` (and `more_ports`: one server, several listening sockets, as
    llmfleet-router serves its API and admin ports)."""
    def config(p: int) -> uvicorn.Config:
        return uvicorn.Config(app, host="127.0.0.1", port=p, log_level="warning", lifespan="off",
                              timeout_graceful_shutdown=1)
    server = uvicorn.Server(config(port))
    sockets = [config(p).bind_socket() for p in (port, *more_ports)] if more_ports else None
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


@dataclass
class FakeEngine:
    """An upstream answering as told: ok | stream | 503 | garbage | hang | error500."""

    mode: str = "ok"
    name: str = "fake"
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # stream: send the rest
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    metrics_text: str = "llmfleet_engine_requests_waiting 0\nllmfleet_engine_requests_running 0\n"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            await _respond(send, 200, self.metrics_text.encode(), b"text/plain")
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.requests.append(json.loads(body) if body else {})
        self.headers.append({k.decode(): v.decode("latin-1") for k, v in scope["headers"]})
        if self.mode == "503":
            await _respond(send, 503, b'{"error": {"message": "draining"}}', b"application/json",
                           [(b"retry-after", b"1")])
        elif self.mode == "garbage":
            await _respond(send, 200, b"<html>proxy error</html>", b"text/html")
        elif self.mode == "error500":
            await _respond(send, 500, b'{"error": {"message": "boom", "type": "internal_error"}}',
                           b"application/json")
        elif self.mode == "hang":
            await _wait_disconnect(receive)
            self.disconnected.set()
        elif self.mode == "stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": f'data: {{"from": "{self.name}"}}\n\n'.encode(),
                        "more_body": True})
            waiter = asyncio.create_task(self.release.wait())
            gone = asyncio.create_task(_wait_disconnect(receive))
            done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                waiter.cancel()
                self.disconnected.set()
                return
            gone.cancel()
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        else:
            answer = {"id": "cmpl-1", "object": "chat.completion", "served_by": self.name,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
            await _respond(send, 200, json.dumps(answer).encode(), b"application/json")


async def _wait_disconnect(receive):
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send, status, body, ctype, extra=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Bench:
    fleet: Fleet
    app: RouterApp
    url: str
    client: httpx.AsyncClient  # the API port
    admin: httpx.AsyncClient  # the admin port: /metrics, /demand
    _servers: list = field(default_factory=list)
    _next_ip: int = 0

    def service(self, name="chat", served="chat", namespace="team-a", keys=None) -> ServiceInfo:
        info = ServiceInfo(namespace, name, served, key_ref=None)
        self.fleet.set_service(info)
        self.fleet.set_keys(info.id, keys)
        return info

    async def engine(self, service: ServiceInfo, fake: FakeEngine | None = None) -> FakeEngine:
        fake = fake or FakeEngine()
        port = free_port()
        self._servers.append(await serve(fake, port))
        self.add_replica(service, f"http://127.0.0.1:{port}", fake.name)
        return fake

    def add_replica(self, service: ServiceInfo, url: str, pod: str) -> None:
        self._next_ip += 1
        self.fleet.set_replica(Replica(service.namespace, f"{pod}-{self._next_ip}", service.name, url, True))

    def dead_replica(self, service: ServiceInfo) -> str:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
        self.add_replica(service, url, "dead")
        return url

    def metric(self, name: str, **labels) -> float:
        value = self.app.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@contextlib.asynccontextmanager
async def open_bench(**overrides):
    """A router on loopback over an empty fleet; `overrides` replace RouterConfig fields."""
    port, admin_port = free_port(), free_port()
    config = RouterConfig(**{"retry_deadline_seconds": 10, "hold_timeout_seconds": 5,
                             "response_timeout_seconds": 5, "stream_idle_timeout_seconds": 5,
                             "port": port, "admin_port": admin_port, **overrides})
    fleet = Fleet()
    app = RouterApp(config, fleet)
    server, task = await serve(app, port, admin_port)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    admin = httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", timeout=30)
    b = Bench(fleet, app, f"http://127.0.0.1:{port}", client, admin, [(server, task)])
    try:
        yield b
    finally:
        await client.aclose()
        await admin.aclose()
        await app.client.aclose()
        for srv, _ in b._servers:
            srv.should_exit = True
        for _, t in b._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)
