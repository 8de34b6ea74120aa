"""The operator's call to an engine's /drain: POST (start, with the service's drain token)
or GET (poll, no credential). None when the engine does not answer or refuses.

The engine is a tenant's: its answer is read through adapters/http.py (a byte cap, one
deadline for the whole call, the loop's shared client)."""

from __future__ import annotations

import json
import logging

from llmfleet.operator.adapters.http import BoundedReadError, bounded_request, shared_client

log = logging.getLogger("llmfleet.operator.spot")

DRAIN_MAX_BYTES = 256 * 1024  # the answer is a few fields and one estimate per request in flight


async def call_drain(ip: str, port: int, post: bool, token: str | None, deadline: float,
                     max_bytes: int = DRAIN_MAX_BYTES) -> dict | None:
    url = f"http://{ip}:{port}/drain"
    headers = {"Authorization": f"Bearer {token}"} if post and token else {}
    try:
        resp = await bounded_request(shared_client(), "POST" if post else "GET", url, max_bytes=max_bytes,
                                     deadline=deadline, headers=headers)
        if resp.status_code in (401, 403):
            log.warning("POST %s refused (%d): the pod's drain token differs from the operator's "
                        "(a rotation still on its way to the pod?)", url, resp.status_code)
            return None
        if resp.status_code != 200:
            return None
        body = json.loads(resp.content)
        return body if isinstance(body, dict) else None
    except (BoundedReadError, ValueError) as exc:
        log.info("%s %s: %s", "POST" if post else "GET", url, exc)
        return None
