"""The operator's call to an engine's /drain: POST (start, with the service's drain token)
or GET (poll, no credential). None when the engine does not answer or refuses."""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger("llmfleet.operator.spot")


async def call_drain(ip: str, port: int, post: bool, token: str | None, timeout: httpx.Timeout) -> dict | None:
    url = f"http://{ip}:{port}/drain"
    headers = {"Authorization": f"Bearer {token}"} if post and token else {}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await (client.post(url, headers=headers) if post else client.get(url))
        if resp.status_code in (401, 403):
            log.warning("POST %s refused (%d): the pod's drain token differs from the operator's "
                        "(a rotation still on its way to the pod?)", url, resp.status_code)
            return None
        if resp.status_code != 200:
            return None
        body = resp.json()
        return body if isinstance(body, dict) else None
    except (httpx.HTTPError, ValueError) as exc:
        log.info("%s %s: %s", "POST" if post else "GET", url, exc)
        return None
