"""Clients that reach a model the way users do: through the chart's llmfleet-router.

The bed has no kube-proxy, so a client stands in for the `llmfleet-router` Service: it
spreads its requests over the Ready router pods (both of them, in turn). Every answer
that is not a 200, and every stream that ends without `data: [DONE]`, is recorded with
what the client saw (a 503 is counted apart: the router exists so that clients never
see one during drains, rollouts and scale-ups).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from bedkit import wait_until
from operator_support import OPERATOR_NS, RELEASE

ROUTER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=router"
ROUTER_PORT = 8080  # the OpenAI API
ROUTER_ADMIN_PORT = 9090  # /metrics, /demand: not published by the Service


def router_ips(cluster: Any) -> list[str]:
    pods = cluster.core.list_namespaced_pod(OPERATOR_NS, label_selector=ROUTER_SELECTOR).items
    return sorted(p.status.pod_ip for p in pods if p.metadata.deletion_timestamp is None and p.status.pod_ip
                  and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def both_routers(cluster: Any) -> list[str]:
    return wait_until("two routers Ready", lambda: (lambda ips: ips if len(ips) == 2 else None)(
        router_ips(cluster)), timeout=120, interval=1)


def complete(ip: str, model: str, max_tokens: int = 8, *, stream: bool = False, timeout: float = 300
             ) -> http.client.HTTPResponse:
    """POST /v1/completions to a router; the caller reads (and closes) the response."""
    conn = http.client.HTTPConnection(ip, ROUTER_PORT, timeout=timeout)
    conn.request("POST", "/v1/completions", json.dumps(
        {"model": model, "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": stream}),
        {"Content-Type": "application/json"})
    return conn.getresponse()


def reachable(ips: list[str], model: str) -> bool:
    """One short completion answered 200 through every router (their Pod watch has the replicas)."""
    for ip in ips:
        resp = complete(ip, model, 1, timeout=120)
        resp.read()
        if resp.status != 200:
            return False
    return True


@dataclass
class RouterClients:
    """`clients` threads, each sending one request after another through the routers in turn
    until stop(). Subclasses say what one request is (`one(ip)`)."""

    ips: list[str]
    model: str
    clients: int = 1
    max_tokens: int = 16
    unavailable: int = 0  # 503s seen by clients (also in the failures)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]

    def start(self):  # noqa: ANN201 - returns the subclass
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=330)  # a request held for a replica may take up to the hold timeout

    def _client(self, i: int) -> None:
        n = i
        while not self._stop.is_set():
            self.one(self.ips[n % len(self.ips)])
            n += 1

    def one(self, ip: str) -> None:
        raise NotImplementedError

    def _saw(self, status: int) -> None:
        if status == 503:
            with self._lock:
                self.unavailable += 1


@dataclass
class RouterLoad(RouterClients):
    """Non-streaming completions; every answer but a 200 with a completion is a failure."""

    clients: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def one(self, ip: str) -> None:
        try:
            resp = complete(ip, self.model, self.max_tokens)
            body = resp.read()
            resp.close()
            self._saw(resp.status)
            if resp.status != 200 or not json.loads(body).get("choices"):
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            with self._lock:
                self.failures.append(f"router {ip}: {e}")
        else:
            with self._lock:
                self.ok += 1


@dataclass
class RouterStreams(RouterClients):
    """Streaming completions; a stream without `data: [DONE]` is cut, one refused is failed."""

    clients: int = 2
    max_tokens: int = 120
    done: int = 0
    cut: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def one(self, ip: str) -> None:
        got_done, chunks = False, 0
        try:
            resp = complete(ip, self.model, self.max_tokens, stream=True, timeout=120)
            self._saw(resp.status)
            if resp.status != 200:
                with self._lock:
                    self.failed.append(f"router {ip}: HTTP {resp.status} {resp.read()[:200]!r}")
                return
            for line in resp:
                if line.startswith(b"data: [DONE]"):
                    got_done = True
                elif line.startswith(b"data: "):
                    chunks += 1
            resp.close()
        except Exception as e:  # noqa: BLE001 - a broken connection mid-stream is a cut stream
            with self._lock:
                (self.cut if chunks else self.failed).append(f"router {ip}: {e}")
            return
        with self._lock:
            if got_done:
                self.done += 1
            else:
                self.cut.append(f"router {ip}: ended after {chunks} chunks without [DONE]")


def router_counter(ip: str, name: str, **labels: str) -> float:
    """The sum of a router's counter samples with these labels (e.g. retries by reason)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection(ip, ROUTER_ADMIN_PORT, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
