"""The requests llmfleet-router holds for services with no ready replica: the demand that
scales a service from zero (scaling/zero.py).

Two ways to read it, by $LLMFLEET_ROUTER_DEMAND (the chart's `router.demandSignal`):

| mode            | how                                                    | a held request reaches the service's sync |
| --------------- | ------------------------------------------------------ | ----------------------------------------- |
| watch (default) | a long poll per router pod (`GET /demand?after=<token>`, router/…/demand.py): the router answers the moment its held counts change; an increase wakes the service's worker at once (`on_demand`), which syncs (and autoscales) then | a round trip plus the worker's 0.5 s coalescing |
| scrape          | at each periodic sync, every router's /metrics (`llmfleet_router_requests_held{namespace,service,model}`), one read per `ttl` for every service | up to one `syncPeriodSeconds` |

Either way the operator lists the router pods (label selector $LLMFLEET_ROUTER_SELECTOR in
$POD_NAMESPACE, both set by the chart): `list` on pods there, nothing more; again after
`pods_ttl` seconds (30), or at once when one of them did not answer (a router replaced). The router
writes nothing anywhere (it stays read-only); the operator opens the connections. A
router that does not answer counts as holding nothing: it cannot wake a service, but it
cannot stall the operator either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import httpx
from llmfleet.operator.adapters.http import BoundedReadError, bounded_request
from llmfleet.operator.adapters.kube import Kube, KubeError
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("llmfleet.operator")

HELD = "llmfleet_router_requests_held"
WATCH, SCRAPE = "watch", "scrape"
PODS_TTL_SECONDS = 30.0  # router pods listed again this often, or at once when one did not answer
POLL_WAIT_SECONDS = 30.0  # the router answers at once on a change, at the latest after this
RETRY_SECONDS = 1.0  # after a failed poll (the router restarting, say)
ROUTER_PORT = 9090  # the router's admin port (/demand, /metrics), fixed in the chart; not in its Service
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


OnDemand = Callable[[str, str], None]  # (namespace, service): a router holds more requests for it


def held_from_answer(body: object) -> dict[tuple[str, str], float] | None:
    """{(namespace, service): held} from a router's /demand answer; None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("held"), list) or not body.get("token"):
        return None
    out: dict[tuple[str, str], float] = {}
    for item in body["held"]:
        if not isinstance(item, dict):
            return None
        n = item.get("requests")
        if isinstance(n, int | float) and n > 0:
            key = (str(item.get("namespace", "")), str(item.get("service", "")))
            out[key] = out.get(key, 0.0) + float(n)
    return out


class RouterDemand:
    def __init__(self, kube: Kube, namespace: str, selector: str, *, mode: str = SCRAPE, ttl: float = 1.0,
                 timeout: float = 1.0, port: int = ROUTER_PORT, pods_ttl: float = PODS_TTL_SECONDS,
                 poll_wait: float = POLL_WAIT_SECONDS):
        self.kube = kube
        self.port = port
        self.namespace = namespace
        self.selector = selector
        self.mode = mode
        self.ttl = ttl
        self.timeout = timeout
        self.pods_ttl = pods_ttl
        self.poll_wait = poll_wait
        self._read_at = -1e9
        self._listed_at = -1e9
        self._ips: list[str] = []
        self._relist = asyncio.Event()  # watch: a poll failed, list the router pods now
        self._held: dict[tuple[str, str], float] = {}
        self._lock = asyncio.Lock()
        self._polled: dict[str, dict[tuple[str, str], float]] = {}  # watch: router IP -> what it holds
        self._polls: dict[str, asyncio.Task] = {}

    @classmethod
    def from_environment(cls, kube: Kube) -> RouterDemand | None:
        selector, namespace = os.environ.get("LLMFLEET_ROUTER_SELECTOR"), os.environ.get("POD_NAMESPACE")
        mode = os.environ.get("LLMFLEET_ROUTER_DEMAND", WATCH) or WATCH
        if mode not in (WATCH, SCRAPE):
            log.warning("LLMFLEET_ROUTER_DEMAND=%r is neither %r nor %r: using %r", mode, WATCH, SCRAPE, WATCH)
            mode = WATCH
        return cls(kube, namespace, selector, mode=mode) if selector and namespace else None

    @property
    def watching(self) -> bool:
        return self.mode == WATCH

    async def held(self, namespace: str, service: str) -> int:
        if self.watching:  # what the long polls last said: no I/O
            return int(sum(held.get((namespace, service), 0.0) for held in self._polled.values()))
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                self._held = await self._read()
                self._read_at = time.monotonic()
        return int(self._held.get((namespace, service), 0))

    # --- watch: one long poll per router pod ---------------------------------------------------

    async def watch(self, on_demand: OnDemand) -> None:
        """Keep a long poll open on every router pod until cancelled; list the pods again every
        `pods_ttl` seconds or as soon as a poll failed (a new router is polled from then on, a
        gone one dropped)."""
        try:
            while True:
                self._relist.clear()
                ips = await self._router_ips()
                if ips is not None:
                    for ip in set(self._polls) - set(ips):
                        self._polls.pop(ip).cancel()
                        self._polled.pop(ip, None)
                    for ip in set(ips) - set(self._polls):
                        self._polls[ip] = asyncio.create_task(self._poll(ip, on_demand))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._relist.wait(), self.pods_ttl)
                await asyncio.sleep(RETRY_SECONDS)  # at most one list per second, however many polls fail
        finally:
            for task in self._polls.values():
                task.cancel()
            self._polls.clear()
            self._polled.clear()

    async def _poll(self, ip: str, on_demand: OnDemand) -> None:
        token = ""
        timeout = httpx.Timeout(self.timeout, read=self.poll_wait + 10)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, headers={"Accept-Encoding": "identity"}) as client:
            while True:
                asked = time.monotonic()
                body: object = None
                query = urlencode({"after": token, "wait": f"{self.poll_wait:g}"})
                try:  # the body is read up to MAX_BODY_BYTES at most, never whole first
                    resp = await bounded_request(client, "GET", f"http://{ip}:{self.port}/demand?{query}",
                                                 max_bytes=MAX_BODY_BYTES, deadline=self.poll_wait + 10 + self.timeout)
                    if resp.status_code == 200:
                        body = json.loads(resp.content)
                except (BoundedReadError, ValueError):
                    body = None
                held = held_from_answer(body)
                if held is None:  # down, replaced, or not a router: it holds nothing we can see
                    self._polled.pop(ip, None)
                    self._relist.set()
                    token = ""
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                before = self._polled.get(ip, {})
                self._polled[ip] = held
                for key, n in held.items():
                    if n > before.get(key, 0.0):
                        on_demand(*key)
                new_token = str(body["token"]) if isinstance(body, dict) else ""
                if new_token == token and time.monotonic() - asked < RETRY_SECONDS:
                    await asyncio.sleep(RETRY_SECONDS)  # a router that does not wait must not spin us
                token = new_token

    # --- scrape: every router's /metrics at a periodic sync -------------------------------------

    async def _router_ips(self) -> list[str] | None:
        try:
            pods = await self.kube.list("Pod", self.namespace, self.selector)
        except KubeError as exc:
            log.warning("listing router pods failed: %s", exc)
            return None
        self._listed_at = time.monotonic()
        return [p["status"]["podIP"] for p in pods if (p.get("status") or {}).get("podIP")
                and not (p.get("metadata") or {}).get("deletionTimestamp")]

    async def _read(self) -> dict[tuple[str, str], float]:
        if time.monotonic() - self._listed_at >= self.pods_ttl:
            ips = await self._router_ips()
            if ips is None:
                return {}
            self._ips = ips
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
