"""The requests llmfleet-router holds for services with no ready replica: the demand that
scales a service from zero (scaling/zero.py).

Each router pod exports `llmfleet_router_requests_held{namespace,service,model}`; the
operator lists the router pods (label selector $LLMFLEET_ROUTER_SELECTOR in
$POD_NAMESPACE, both set by the chart), reads every router's /metrics and sums per
service. One read serves every service's sync for `ttl` seconds; the router pods are
listed again after `pods_ttl` seconds, or at once when one of them did not answer (a router
replaced). A router that does not
answer within the timeout counts as holding nothing: it cannot wake a service, but it
cannot stall the operator either.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping

import httpx
from llmfleet.operator.adapters.kube import Kube, KubeError
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("llmfleet.operator")

HELD = "llmfleet_router_requests_held"
ROUTER_PORT = 8080
MAX_BODY_BYTES = 4 * 2**20


def held_by_service(text: str) -> dict[tuple[str, str], float]:
    """{(namespace, service): held} from one router's exposition; bad text yields nothing."""
    out: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == HELD and sample.value > 0:
                    key = (sample.labels.get("namespace", ""), sample.labels.get("service", ""))
                    out[key] = out.get(key, 0.0) + sample.value
    except ValueError:
        return {}
    return out


class RouterDemand:
    def __init__(self, kube: Kube, namespace: str, selector: str, *, ttl: float = 1.0, timeout: float = 1.0,
                 port: int = ROUTER_PORT, pods_ttl: float = 30.0):
        self.kube = kube
        self.port = port
        self.namespace = namespace
        self.selector = selector
        self.ttl = ttl
        self.timeout = timeout
        self._read_at = -1e9
        self.pods_ttl = pods_ttl
        self._listed_at = -1e9
        self._ips: list[str] = []
        self._held: dict[tuple[str, str], float] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_environment(cls, kube: Kube) -> RouterDemand | None:
        selector, namespace = os.environ.get("LLMFLEET_ROUTER_SELECTOR"), os.environ.get("POD_NAMESPACE")
        return cls(kube, namespace, selector) if selector and namespace else None

    async def held(self, namespace: str, service: str) -> int:
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                self._held = await self._read()
                self._read_at = time.monotonic()
        return int(self._held.get((namespace, service), 0))

    async def _read(self) -> dict[tuple[str, str], float]:
        if time.monotonic() - self._listed_at >= self.pods_ttl:
            try:
                pods = await self.kube.list("Pod", self.namespace, self.selector)
            except KubeError as exc:
                log.warning("listing router pods failed: %s", exc)
                return {}
            self._listed_at = time.monotonic()
            self._ips = [p["status"]["podIP"] for p in pods if (p.get("status") or {}).get("podIP")
                         and not (p.get("metadata") or {}).get("deletionTimestamp")]
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            texts = await asyncio.gather(*(self._scrape(client, ip) for ip in self._ips))
        if any(text is None for text in texts):
            self._listed_at = -1e9  # a router that did not answer may have been replaced: list at the next read
        total: dict[tuple[str, str], float] = {}
        for text in texts:
            for key, value in held_by_service(text or "").items():
                total[key] = total.get(key, 0.0) + value
        return total

    async def _scrape(self, client: httpx.AsyncClient, ip: str) -> str | None:
        """The router's /metrics text; None when it did not answer."""
        try:
            resp = await client.get(f"http://{ip}:{self.port}/metrics")
        except (httpx.HTTPError, OSError):
            return None
        if resp.status_code != 200 or len(resp.content) > MAX_BODY_BYTES:
            return ""
        return resp.text


def total_in_flight(scrapes: Mapping[str, object]) -> float:
    """waiting + running over a service's last good scrapes (EngineScrape.in_flight)."""
    return sum(float(getattr(s, "in_flight", 0.0)) for s in scrapes.values())
