"""Bounded HTTP reads of the engines' endpoints (/metrics, /drain).

An engine pod runs whatever image its LLMService names, so its answers are a tenant's: an
endless or dripping body must cost the operator neither memory nor time that every other
service needs. Each call here has

| bound            | how                                                                |
| ---------------- | ------------------------------------------------------------------ |
| bytes            | read while streaming, stopped at `max_bytes` (never buffered whole) |
| time             | one deadline for the whole call: connect, headers and body          |
| decoding         | `Accept-Encoding: identity`; an encoded body is refused, not inflated |
| connections      | one shared client per event loop, its pool capped                  |

One shared client, not one per call: building an `httpx.AsyncClient` (its SSL context)
costs tens of milliseconds of event-loop time, paid on every scrape and drain poll.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

# Per read; the deadline below bounds the whole call.
READ_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def shared_client() -> httpx.AsyncClient:
    """The event loop's one client for engine calls (made on first use, kept for the loop's life)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(timeout=READ_TIMEOUT, limits=POOL_LIMITS,
                                   headers={"Accept-Encoding": "identity"})
        _clients[loop] = client
    return client


class BoundedReadError(Exception):
    """The answer broke a bound (too large, too slow, encoded) or the request failed."""


@dataclass(frozen=True)
class BoundedResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


async def bounded_request(client: httpx.AsyncClient, method: str, url: str, *, max_bytes: int,
                          deadline: float, headers: Mapping[str, str] | None = None) -> BoundedResponse:
    """`method url` within `deadline` seconds in all, reading at most `max_bytes` of body."""
    try:
        async with asyncio.timeout(deadline):
            async with client.stream(method, url, headers=headers) as resp:
                encoding = resp.headers.get("content-encoding", "identity").lower()
                if encoding not in ("", "identity"):
                    raise BoundedReadError(f"encoded body ({encoding}) refused")
                length = resp.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise BoundedReadError(f"body too large: {length} bytes > {max_bytes}")
                body = bytearray()
                async for chunk in resp.aiter_bytes():  # no decoding: identity only (above)
                    body += chunk
                    if len(body) > max_bytes:
                        raise BoundedReadError(f"body too large: over {max_bytes} bytes")
                return BoundedResponse(resp.status_code, bytes(body))
    except TimeoutError:
        raise BoundedReadError(f"no complete answer within {deadline:g}s") from None
    except (httpx.HTTPError, OSError) as exc:
        raise BoundedReadError(f"{type(exc).__name__}: {exc}"[:300]) from None
