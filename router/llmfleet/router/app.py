"""The router's HTTP face, as a plain ASGI app: the OpenAI routes, probes and metrics.

Every error leaves as an OpenAI-shaped body (errors.py). A request is checked completely
(size, JSON, model, key) before any engine sees it; while it is held or streaming, a
client disconnect cancels it, which closes the upstream connection, which makes the
engine abort the request and free its KV blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx

from . import keys
from .config import RouterConfig
from .errors import (
    AmbiguousModel,
    BodyTimeout,
    BodyTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    RouterError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .fleet import Fleet, ServiceInfo
from .metrics import RouterMetrics
from .proxy import Proxy, Send
from .request import CHAT, COMPLETIONS, parse_body, routing_key

log = logging.getLogger("llmfleet.router")

Receive = Callable[[], Awaitable[dict]]


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


class RouterApp:
    def __init__(self, config: RouterConfig, fleet: Fleet, metrics: RouterMetrics | None = None,
                 client: httpx.AsyncClient | None = None,
                 background: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = ()):
        self.config = config
        self.fleet = fleet
        self.metrics = metrics or RouterMetrics()
        # no pool limit: a stream holds its connection for minutes, and the replicas' own
        # admission (429/503) is the limit that matters
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256), trust_env=False)
        self.proxy = Proxy(config, fleet, self.metrics, self.client)
        self.background = background
        self._tasks: list[asyncio.Task] = []
        self.synced: Callable[[], bool] = lambda: True  # discovery replaces it: ready once listed

    # --- ASGI -------------------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        admin = _local_port(scope) == self.config.admin_port
        try:
            if path in (CHAT, COMPLETIONS) and not admin:
                if method != "POST":
                    raise MethodNotAllowed(f"{path} takes POST, not {method}")
                await self._inference(scope, receive, send, path)
                return
            routes = ADMIN_ROUTES if admin else API_ROUTES
            if method != "GET":
                raise MethodNotAllowed(f"{path} takes GET, not {method}") if path in routes else NotFound(
                    f"no route {method} {path}")
            if path not in routes:
                raise NotFound(f"no route {method} {path}")
            if path == "/v1/models":
                await _send_json(send, 200, self._models(_header(scope, b"authorization")))
            elif path == "/health":
                await _send_json(send, 200, {"status": "ok"})
            elif path == "/ready":
                ok = self.synced()
                await _send_json(send, 200 if ok else 503, {"ready": ok})
            elif path == "/demand":
                # the operator's long poll for held requests (demand.py): scale from zero at once
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                try:
                    wait = float(query.get("wait", ["30"])[0])
                except ValueError:
                    wait = math.nan
                if not math.isfinite(wait) or wait < 0:
                    raise InvalidRequest("wait must be a number of seconds, 0 or more", param="wait")
                await _send_json(send, 200, await self.proxy.held.wait(query.get("after", [""])[0], wait))
            elif path == "/metrics":
                await _send(send, 200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")
        except RouterError as err:
            await _send_error(send, err)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._tasks = [asyncio.create_task(job()) for job in self.background]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                for task in self._tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- routes -----------------------------------------------------------------------------------
    def _models(self, authorization: str | None) -> dict:
        """Every served name this caller's key can use (a keyless service is everyone's)."""
        # a service whose keys only its engines can check is left out: the router cannot tell
        # whether this caller may know of it
        names = sorted({s.served_name for s in self.fleet.services.values()
                        if keys.accepts(self.fleet.keys.get(s.id, ()), authorization)})
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llmfleet"} for n in names]}

    def _service_for(self, model: str, authorization: str | None) -> ServiceInfo:
        """The service this caller means by `model`. Served names are not namespaced, so another
        tenant can serve the same name; the caller's key decides before age does:

        | candidates (oldest first within each)                   | request goes to                  |
        | ------------------------------------------------------- | -------------------------------- |
        | a service whose keys (read by the router) hold the key  | that one, whatever its age       |
        | with a key: a service whose engine checks keys, and no  | that one (its engine answers)    |
        | other keyless or engine-checked service of the name     |                                  |
        | with a key: several such services                       | 409: the router cannot tell whose client this is; the key must not reach another tenant's pods |
        | a keyless service                                        | the oldest keyless one           |
        """
        services = self.fleet.services_for(model)
        if not services:
            raise ModelNotFound(f"The model {model!r} does not exist", param="model")
        token = keys.bearer(authorization)
        if token:
            for service in services:
                known = self.fleet.keys.get(service.id)
                if known and keys.accepts(known, authorization):
                    return service
        keyless = [s for s in services if s.id in self.fleet.keys and self.fleet.keys[s.id] is None]
        unchecked = [s for s in services if s.id in self.fleet.engine_checks_keys]
        if token and unchecked:
            if len(unchecked) + len(keyless) > 1:
                raise AmbiguousModel(
                    f"the model name {model!r} is served by {len(unchecked) + len(keyless)} services whose keys "
                    "this router cannot check, so it cannot tell which one your key belongs to; give each its "
                    "own name (spec.model.servedName), or give the router `get` on their key Secrets",
                    param="model")
            return unchecked[0]  # its engine checks the key (forwarded): a wrong one gets its 401
        if keyless:
            return keyless[0]
        for service in services:
            if service.id in self.fleet.engine_checks_keys:
                continue
            if self.fleet.key_errors.get(service.id):
                # Why (the Secret's namespace and name, the API server's answer) is the owner's to
                # know, not every caller's: it is in the router's log, and the owner knows its Secret
                raise Unavailable(f"the API keys of model {model!r} cannot be read, so it takes no requests; "
                                  "its owner should check the Secret that spec.apiKeySecretRef names", retry_after=10)
            if service.id not in self.fleet.keys:
                raise Unavailable(f"the API keys of model {model!r} are not loaded yet", retry_after=1)
        if not token:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        raise Unauthorized("invalid API key")

    async def _inference(self, scope: dict, receive: Receive, send: Send, path: str) -> None:
        started = time.monotonic()
        model = ""
        try:
            ctype = (_header(scope, b"content-type") or "").lower()
            if "application/json" not in ctype:
                raise UnsupportedMediaType(f"Content-Type must be application/json, got {ctype or 'nothing'!r}")
            try:
                async with asyncio.timeout(self.config.body_read_timeout_seconds):
                    raw = await _read_body(scope, receive, self.config.max_body_bytes)
            except TimeoutError:
                raise BodyTimeout(f"the request body was not received within "
                                  f"{self.config.body_read_timeout_seconds:g} s") from None
            req = parse_body(path, raw)
            service = self._service_for(req.model, _header(scope, b"authorization"))
            model = req.model
            key = routing_key(req, _header(scope, self.config.session_header.lower().encode()),
                              self.config.prefix_chars)
        except ClientGone:
            return
        except RouterError as err:
            self.metrics.requests.labels(model, str(err.status)).inc()
            await _send_error(send, err)
            return

        headers = [(k, v) for k, v in scope["headers"]]
        # a key the router could not check must not wake a service from zero: only its engine knows it
        verified = service.id not in self.fleet.engine_checks_keys
        work = asyncio.create_task(self.proxy.forward(req, service, key, raw, headers, send, started,
                                                      wake=verified))
        gone = asyncio.create_task(_disconnected(receive))
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            # the client left: cancelling closes the upstream connection; the engine aborts the request
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            self.metrics.disconnects.labels(model).inc()
            self.metrics.requests.labels(model, "499").inc()  # nginx's "client closed request"
            return
        gone.cancel()
        try:
            status = work.result()
        except RouterError as err:
            status = err.status
            await _send_error(send, err)
        except Exception:  # a bug must cost one request, never the router
            log.exception("request failed")
            status = 500
            with contextlib.suppress(Exception):
                await _send_error(send, RouterError("the router failed on this request"))
        self.metrics.requests.labels(model, str(status)).inc()
        self.metrics.latency.labels(model).observe(time.monotonic() - started)


# The API port answers what a client needs; the admin port what the operator and Prometheus
# need (config.py: admin_port). Both answer the probes.
API_ROUTES = (CHAT, COMPLETIONS, "/v1/models", "/health", "/ready")
ADMIN_ROUTES = ("/metrics", "/demand", "/health", "/ready")


def _local_port(scope: dict) -> int | None:
    """The port this connection arrived on (the ASGI scope's `server`), None when unknown."""
    server = scope.get("server")
    return server[1] if server and len(server) > 1 else None


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _read_body(scope: dict, receive: Receive, cap: int) -> bytes:
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > cap:
        raise BodyTooLarge(f"request body larger than {cap} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:  # a missing or lying Content-Length is caught here
            raise BodyTooLarge(f"request body larger than {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Send, status: int, body: bytes, ctype: bytes,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, data: dict) -> None:
    await _send(send, status, json.dumps(data).encode(), b"application/json")


async def _send_error(send: Send, err: RouterError) -> None:
    extra = [h for h in err.headers() if h[0] != b"content-type"]
    await _send(send, err.status, err.body(), b"application/json", extra)
