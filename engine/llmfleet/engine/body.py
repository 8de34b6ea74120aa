"""Reading a request body without letting one client hold the server's memory or connections.

| guard                        | answer                                                    |
| ---------------------------- | --------------------------------------------------------- |
| Content-Length over the cap  | 413 before a byte of the body is read                     |
| chunked body passing the cap | 413 as soon as the cap is passed; the rest is never read  |
| body not complete in time    | 408 after `timeout` seconds in all (not per read)         |
| requests beyond the bound    | 503 at once for /v1 (ConcurrencyLimit); probes always pass |

Authentication happens before any of this (server.py), so an unauthenticated client
never gets the server to buffer anything.
"""

from __future__ import annotations

import asyncio
import json

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import BodyTimeout, BodyTooLarge, InvalidRequest, Unavailable


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest(f"invalid Content-Length {declared[:32]!r}") from None
        if length > max_bytes:
            raise BodyTooLarge(f"request body of {length} bytes is larger than the limit of {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"request body larger than the limit of {max_bytes} bytes")
                parts.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"the request body was not received within {timeout:g} s") from None
    except ClientDisconnect:
        raise InvalidRequest("the client disconnected while sending the body") from None
    return b"".join(parts)


class ConcurrencyLimit:
    """At most `limit` requests under `prefix` at once (a stream counts until its last byte);
    beyond it an OpenAI-shaped 503 with Retry-After. Pure ASGI: a BaseHTTPMiddleware would
    hide client disconnects from the endpoints, and disconnects must abort generation."""

    def __init__(self, app: ASGIApp, limit: int, prefix: str = "/v1/", on_reject=None):
        self.app = app
        self.limit = limit
        self.prefix = prefix
        self.on_reject = on_reject
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            if self.on_reject:
                self.on_reject()
            err = Unavailable(f"too many concurrent requests (limit {self.limit}); retry later",
                              retry_after=1.0, code="too_many_requests")
            body = json.dumps(err.to_json()).encode()
            await send({"type": "http.response.start", "status": err.status,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
