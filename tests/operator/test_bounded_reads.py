"""An engine pod runs a tenant's image: its /metrics and /drain answers must not cost the
operator unbounded memory or time. A local server plays the hostile engine: a body that never
ends, one that drips a byte at a time, one that announces 10 GB."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import httpx
import pytest
from llmfleet.operator.adapters.scrape import MAX_BODY_BYTES, ScrapeTarget, scrape_engines
from llmfleet.operator.handlers import spot

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GUARD_SECONDS = 20  # only a hang reaches this; a bounded call ends long before
ENDLESS_CAP = 64 * 1024 * 1024  # the "endless" server stops writing here (and holds on) to spare the machine


class HostileEngine:
    """A raw HTTP/1.1 server on loopback; `mode` says how it answers every request."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sent = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> HostileEngine:
        self.server = await asyncio.start_server(self.answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            if self.mode == "announced":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(GUARD_SECONDS)
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            line = b"llmfleet_engine_requests_waiting 1\n" if self.mode == "endless" else b"#"
            while self.sent < ENDLESS_CAP:
                writer.write(line * (2048 if self.mode == "endless" else 1))
                self.sent += len(line) * (2048 if self.mode == "endless" else 1)
                await writer.drain()
                if self.mode == "drip":
                    await asyncio.sleep(0.05)  # well inside any per-read timeout
            await asyncio.sleep(GUARD_SECONDS)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def scrape_one(engine: HostileEngine, timeout: float = 2.0):
    target = ScrapeTarget("p", f"http://127.0.0.1:{engine.port}/metrics")
    results = await asyncio.wait_for(scrape_engines([target], NOW, timeout=timeout), GUARD_SECONDS)
    return results["p"]


def test_an_endless_metrics_body_is_cut_at_the_cap():
    async def go():
        async with HostileEngine("endless") as engine:
            return await scrape_one(engine), engine.sent

    result, sent = asyncio.run(go())
    assert result.error is not None and "too large" in result.error, result.error
    assert sent < ENDLESS_CAP  # the operator stopped reading; the server never got to its own limit
    assert MAX_BODY_BYTES < ENDLESS_CAP


def test_an_announced_huge_body_is_refused_before_reading():
    async def go():
        async with HostileEngine("announced") as engine:
            return await scrape_one(engine)

    result = asyncio.run(go())
    assert result.error is not None and "too large" in result.error, result.error


def test_a_dripping_metrics_body_ends_at_the_deadline():
    async def go():
        async with HostileEngine("drip") as engine:
            return await scrape_one(engine, timeout=0.5)

    result = asyncio.run(go())
    assert result.error == "no complete answer within 0.5s"


def test_a_dripping_drain_answer_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spot, "DRAIN_DEADLINE_SECONDS", 0.5)

    async def go():
        async with HostileEngine("drip") as engine:
            monkeypatch.setattr(spot, "HTTP_PORT", engine.port)
            return await asyncio.wait_for(spot.engine_drain("127.0.0.1", post=False), GUARD_SECONDS)

    assert asyncio.run(go()) is None


def test_an_endless_drain_answer_is_cut_at_the_cap(monkeypatch: pytest.MonkeyPatch):
    async def go():
        async with HostileEngine("endless") as engine:
            monkeypatch.setattr(spot, "HTTP_PORT", engine.port)
            answer = await asyncio.wait_for(spot.engine_drain("127.0.0.1", post=True), GUARD_SECONDS)
            return answer, engine.sent

    answer, sent = asyncio.run(go())
    assert answer is None and sent < ENDLESS_CAP


def test_scrapes_and_drain_polls_share_one_client(monkeypatch: pytest.MonkeyPatch):
    made = []

    class Counting(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", Counting)
    targets = [ScrapeTarget(f"p{i}", "http://127.0.0.1:9/metrics") for i in range(3)]  # refused at once

    async def go():
        for _ in range(3):
            await scrape_engines(targets, NOW, timeout=0.5)
            await spot.engine_drain("127.0.0.1", post=False)

    asyncio.run(go())
    assert len(made) == 1
