"""Sending one request to a replica and its answer back to the client, with retries.

| upstream outcome, before any byte reached the client | what the router does                      |
| ---------------------------------------------------- | ----------------------------------------- |
| connection refused/reset, timeout, not HTTP          | cool the replica down, try the next one   |
| 503 (draining, shutting down, overloaded)            | same                                      |
| 200 that is not JSON / not an event stream           | same (garbage: the replica is broken)     |
| any other status                                     | passed to the client as it is (4xx are the client's, 429 its rate limit, 500 a request the engine failed on) |
| nothing in rotation                                  | hold: wait for a replica (cold start, scale from zero) up to hold_timeout, then 503 + Retry-After |
| every replica tried/cooling down                     | back off, then try again, within max_attempts and retry_deadline |

Once the first byte is sent there is no retry: a stream cut by the replica ends early (no
`[DONE]`), which the client sees. Streams are relayed chunk by chunk, never buffered; only a
non-streamed answer (whole by nature) is read first, so garbage can still be retried.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .config import RouterConfig
from .demand import HeldDemand
from .errors import BadGateway, RouterError, Unavailable
from .fleet import Fleet, ServiceInfo
from .metrics import RouterMetrics
from .picker import Key, pick
from .request import InferenceRequest

log = logging.getLogger("llmfleet.router")

Send = Callable[[dict], Awaitable[None]]

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"host", b"content-length"}
DROP_FROM_UPSTREAM = HOP_BY_HOP | {b"date", b"server"}  # the router's server writes its own


class Retry(Exception):
    """This attempt failed before the first byte: try another replica."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class Attempts:
    """The retry budget of one request."""

    config: RouterConfig
    count: int = 0
    first_failure: float | None = None
    tried: set[str] = field(default_factory=set)
    last: Retry | None = None

    def failed(self, url: str, failure: Retry, now: float) -> None:
        self.tried.add(url)
        self.last = failure
        if self.first_failure is None:
            self.first_failure = now

    def exhausted(self, now: float) -> bool:
        if self.count >= self.config.max_attempts:
            return True
        return self.first_failure is not None and now - self.first_failure >= self.config.retry_deadline_seconds

    def give_up(self) -> RouterError:
        last = self.last
        if last is not None and last.reason == "invalid_response":
            return BadGateway(f"no replica gave a valid answer after {self.count} attempts: {last}")
        return Unavailable(f"no replica could take the request after {self.count} attempts"
                           + (f" (last: {last})" if last else ""), retry_after=1)


class Proxy:
    def __init__(self, config: RouterConfig, fleet: Fleet, metrics: RouterMetrics, client: httpx.AsyncClient):
        self.config = config
        self.fleet = fleet
        self.metrics = metrics
        self.client = client
        self.held = HeldDemand()  # per service, now; the operator long-polls it (GET /demand)
        self.waiting: collections.Counter[tuple[str, str]] = collections.Counter()  # held or not demand

    async def forward(self, req: InferenceRequest, service: ServiceInfo, key: Key | None, raw: bytes,
                      headers: list[tuple[bytes, bytes]], send: Send, started: float, *, wake: bool = True) -> int:
        """Serve the request through some replica; returns the HTTP status the client got.
        Raises RouterError only before anything was sent. `wake`: a held request counts as
        demand (scale from zero); False for a key the router could not check."""
        budget = Attempts(self.config)
        backoff = 0.1
        first = True
        while True:
            now = time.monotonic()
            if budget.exhausted(now):
                raise budget.give_up()
            choice = pick(self.fleet.candidates(service), key, load_factor=self.config.load_factor,
                          kv_saturation=self.config.kv_saturation, exclude=budget.tried)
            if choice is None:
                if not self.fleet.serving_replicas(service):
                    await self._hold(req, service, started, wake)
                else:  # every replica in rotation was tried or is cooling down: back off, then again
                    if budget.first_failure is None:
                        budget.first_failure = now
                    await self.fleet.wait_changed(backoff)
                    backoff = min(backoff * 2, 1.0)
                    budget.tried.clear()
                continue
            if first:
                self.metrics.decisions.labels(req.model, choice.reason).inc()
                first = False
            budget.count += 1
            try:
                return await self._attempt(choice.name, req, raw, headers, send, started)
            except Retry as failure:
                log.info("retrying elsewhere (%s): %s", failure.reason, failure)
                self.metrics.retries.labels(req.model, failure.reason).inc()
                self.fleet.cool_down(choice.name, self.config.failure_cooldown_seconds)
                budget.failed(choice.name, failure, time.monotonic())

    async def _hold(self, req: InferenceRequest, service: ServiceInfo, started: float, wake: bool = True) -> None:
        """Wait for a replica of `service` to come into rotation (cold start or scale from zero).
        Without `wake` the request is no demand: it waits only while the service has pods."""
        if self.waiting[service.id] >= self.config.max_held_per_service:
            self.metrics.hold_timeouts.labels(req.model).inc()
            raise Unavailable(f"model {req.model!r} has no ready replica and {self.config.max_held_per_service} "
                              "requests are already waiting for one", retry_after=5)
        gauge = self.metrics.held.labels(service.namespace, service.name, req.model)
        self.waiting[service.id] += 1
        if wake:
            gauge.inc()
            self.held.add(service.id, 1)
        try:
            while not self.fleet.serving_replicas(service):
                if not wake and not self.fleet.has_pods(service):
                    raise Unavailable(
                        f"model {req.model!r} has no replica, and this router cannot check its API keys (it may "
                        "not read the key Secret), so it does not wake it from zero; give the router `get` on "
                        "that Secret (chart: router.readSecrets) or keep minReplicas at 1 or more", retry_after=10)
                left = started + self.config.hold_timeout_seconds - time.monotonic()
                if left <= 0:
                    self.metrics.hold_timeouts.labels(req.model).inc()
                    raise Unavailable(f"model {req.model!r} has no ready replica yet (held "
                                      f"{self.config.hold_timeout_seconds:g} s)", retry_after=10)
                await self.fleet.wait_changed(left)
        finally:
            self.waiting[service.id] -= 1
            if self.waiting[service.id] <= 0:
                del self.waiting[service.id]  # a deleted service leaves nothing behind
            if wake:
                gauge.dec()
                self.held.add(service.id, -1)

    async def _attempt(self, url: str, req: InferenceRequest, raw: bytes, headers: list[tuple[bytes, bytes]],
                       send: Send, started: float) -> int:
        cfg = self.config
        read = cfg.stream_idle_timeout_seconds if req.stream else cfg.response_timeout_seconds
        timeout = httpx.Timeout(connect=cfg.connect_timeout_seconds, read=read, write=30.0, pool=None)
        upstream_headers = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        request = self.client.build_request("POST", url + req.path, content=raw, headers=upstream_headers,
                                            timeout=timeout)
        load = self.fleet.loads.get(url)
        if load is not None:
            load.in_flight += 1
        try:
            try:
                upstream = await self.client.send(request, stream=True)
            except httpx.TimeoutException as e:
                raise Retry("timeout", f"{url}: {type(e).__name__}") from None
            except (httpx.TransportError, OSError) as e:
                raise Retry("connect_error", f"{url}: {type(e).__name__}: {e}") from None
            try:
                return await self._relay(url, upstream, req, send, started)
            finally:
                await upstream.aclose()
        finally:
            if load is not None:
                load.in_flight -= 1

    async def _relay(self, url: str, upstream: httpx.Response, req: InferenceRequest, send: Send,
                     started: float) -> int:
        status = upstream.status_code
        if status == 503:
            raise Retry("unavailable", f"{url}: 503 {await _short_body(upstream)}")
        out_headers = [(k.lower(), v) for k, v in upstream.headers.raw if k.lower() not in DROP_FROM_UPSTREAM]
        out_headers.append((b"x-llmfleet-replica", url.removeprefix("http://").encode()))
        ctype = upstream.headers.get("content-type", "")
        if req.stream and status == 200:
            if "text/event-stream" not in ctype:
                raise Retry("invalid_response", f"{url}: a stream answered with content-type {ctype!r}")
            return await self._stream(url, upstream, req, send, status, out_headers, started)
        body = await self._read_whole(url, upstream)
        if status == 200 and not _is_json_object(body):
            raise Retry("invalid_response", f"{url}: 200 with a body that is not a JSON object")
        out_headers.append((b"content-length", str(len(body)).encode()))
        self.metrics.first_byte.labels(req.model).observe(time.monotonic() - started)
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _read_whole(self, url: str, upstream: httpx.Response) -> bytes:
        chunks, size = [], 0
        try:
            async for chunk in upstream.aiter_raw():
                size += len(chunk)
                if size > self.config.max_response_bytes:
                    raise Retry("invalid_response", f"{url}: answer larger than {self.config.max_response_bytes} bytes")
                chunks.append(chunk)
        except httpx.TimeoutException as e:
            raise Retry("timeout", f"{url}: {type(e).__name__} reading the answer") from None
        except httpx.TransportError as e:
            raise Retry("connect_error", f"{url}: {type(e).__name__} reading the answer") from None
        return b"".join(chunks)

    async def _stream(self, url: str, upstream: httpx.Response, req: InferenceRequest, send: Send, status: int,
                      headers: list[tuple[bytes, bytes]], started: float) -> int:
        chunks = upstream.aiter_raw()
        # the first chunk decides whether the stream started: a replica that dies before it is retried
        try:
            first = await anext(chunks, b"")
        except httpx.TimeoutException as e:
            raise Retry("timeout", f"{url}: {type(e).__name__} before the first event") from None
        except httpx.TransportError as e:
            raise Retry("connect_error", f"{url}: {type(e).__name__} before the first event") from None
        if not first:
            raise Retry("invalid_response", f"{url}: the stream ended before its first event")
        self.metrics.first_byte.labels(req.model).observe(time.monotonic() - started)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as e:
            # nothing to retry once bytes went out: end the stream; the client sees no [DONE]
            log.warning("stream cut by the replica %s: %s: %s", url, type(e).__name__, e)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status


async def _short_body(resp: httpx.Response) -> str:
    """The start of a refusal, for the log and the client's 503: its first raw bytes only. A
    replica runs its tenant's image; reading it whole (aread) inflated a gzip bomb in memory."""
    if resp.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
        return ""
    data = b""
    try:
        async with asyncio.timeout(2):
            async for chunk in resp.aiter_raw():
                data += chunk
                if len(data) >= 200:
                    break
    except (httpx.HTTPError, TimeoutError):
        pass  # a replica that stalls or breaks mid-body: what arrived is still the best message
    return data[:200].decode("utf-8", errors="replace")


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError):
        return False
