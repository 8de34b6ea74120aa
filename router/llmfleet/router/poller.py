"""Reads every replica's /metrics on a fixed interval into the fleet's loads.

Reading: waiting + running requests (the load the picker compares), KV-cache usage (the
saturation check) and the draining gauge (a drain the Pod watch has not shown yet). A replica
whose /metrics fails keeps its last reading for up to three intervals, then falls back to the
router's own in-flight count: a slow scrape must not make a busy replica look idle for long,
nor take a serving replica out (the proxy's own failures do that).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import httpx
from llmfleet.operator.adapters.http import BoundedReadError, bounded_request
from llmfleet.operator.adapters.scrape import engine_scrape

from .config import RouterConfig
from .fleet import Fleet, Load
from .metrics import RouterMetrics

log = logging.getLogger("llmfleet.router")
MAX_EXPOSITION_BYTES = 1 * 2**20  # an engine's exposition is a few KB
STALE_INTERVALS = 3


def apply_reading(load: Load, text: str, now: float) -> bool:
    """Put one exposition into `load`; False when it has no queue gauge."""
    scrape = engine_scrape("", text, datetime.now(UTC))
    if scrape.error is not None:
        return False
    load.scraped = scrape.in_flight
    load.in_flight_at_scrape = load.in_flight
    load.kv_usage = scrape.kv_cache_usage or 0.0
    load.draining = scrape.draining
    load.scraped_at = now
    return True


async def _read_one(client: httpx.AsyncClient, url: str, timeout: float) -> str | None:
    """One engine's exposition, or None. An engine runs its tenant's image: one deadline for the
    whole read (httpx's timeout is per read, so a byte every 0.4 s held the poll, every service's
    readings with it, for days) and no decoding (a gzip bomb inflated past the byte cap at once)."""
    try:
        resp = await bounded_request(client, "GET", url + "/metrics", max_bytes=MAX_EXPOSITION_BYTES,
                                     deadline=timeout, headers={"Accept-Encoding": "identity"})
    except BoundedReadError:
        return None
    return resp.text if resp.status_code == 200 else None


async def poll_once(fleet: Fleet, client: httpx.AsyncClient, config: RouterConfig,
                    metrics: RouterMetrics | None = None) -> None:
    urls = sorted({r.url for r in fleet.replicas.values() if r.url and r.serving})
    texts = await asyncio.gather(*(_read_one(client, u, config.metrics_timeout_seconds) for u in urls))
    now = time.monotonic()
    for url, text in zip(urls, texts, strict=True):
        load = fleet.loads.get(url)
        if load is None:
            continue
        if text is not None and apply_reading(load, text, now):
            continue
        if metrics is not None:
            metrics.scrape_errors.inc()
        if load.scraped is not None and now - load.scraped_at > STALE_INTERVALS * config.metrics_interval_seconds:
            load.scraped = None  # too old to add to: the router's own count is all it knows
            load.draining = False


def export_rotation(fleet: Fleet, metrics: RouterMetrics) -> None:
    """llmfleet_router_replicas_in_rotation per service, as the picker sees it now."""
    metrics.replicas.clear()  # a deleted service's series goes too
    for service in list(fleet.services.values()):
        metrics.replicas.labels(service.namespace, service.name, service.served_name).set(
            len(fleet.candidates(service)))


async def run_poller(fleet: Fleet, client: httpx.AsyncClient, config: RouterConfig,
                     metrics: RouterMetrics | None = None) -> None:
    while True:
        started = time.monotonic()
        try:
            await poll_once(fleet, client, config, metrics)
            if metrics is not None:
                export_rotation(fleet, metrics)
        except Exception:  # the poller must outlive any odd exposition
            log.exception("metrics poll failed")
        await asyncio.sleep(max(0.0, config.metrics_interval_seconds - (time.monotonic() - started)))
