"""llmfleet-router in front of an LLMService, on the real control plane.

Given the chart's two routers and a service of three replicas, when several tenants' system
prompts arrive with many short questions each, then each prompt's requests land on one
replica (the same one through either router: they share no state) and its prefix cache hits.
Given steady load through a router, when the engine args change and every pod is replaced,
then no client sees a failed request or a 503.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bedkit import E2ECluster, wait_until
from operator_support import (
    OPERATOR_NS,
    RELEASE,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
)

ROUTER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=router"
PROMPTS = [f"You are the assistant of team {t}. Answer briefly and politely, in plain words. " * 4
           for t in ("red", "green", "blue", "gold")]


def router_ips(cluster: E2ECluster) -> list[str]:
    pods = cluster.core.list_namespaced_pod(OPERATOR_NS, label_selector=ROUTER_SELECTOR).items
    return sorted(p.status.pod_ip for p in pods if p.metadata.deletion_timestamp is None and p.status.pod_ip
                  and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def chat(ip: str, model: str, system: str, question: str, max_tokens: int = 8, timeout: float = 120
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(ip, 8080, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps({
            "model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}),
            {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def create_service(cluster: E2ECluster, namespace: str, name: str, model: Path, replicas: int) -> None:
    from kubernetes import client

    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "llmfleet.dev", "v1alpha1", namespace, "llmservices", {
            "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": name},
            "spec": {"model": {"uri": f"file://{model}"}, "engine": {"maxModelLen": 512},
                     "replicas": replicas, "drainGraceSeconds": 2, "drainTimeoutSeconds": 30}})


def ready(cluster: E2ECluster, namespace: str, name: str, replicas: int) -> bool:
    status = llms(cluster, namespace, name).get("status") or {}
    return status.get("phase") == "Ready" and status.get("readyText") == f"{replicas}/{replicas}"


def engine_metric(ip: str, name: str) -> float:
    conn = http.client.HTTPConnection(ip, 8000, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_prompt_prefix_stays_on_one_replica_through_either_router(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    create_service(cluster, namespace, "chat", tiny_model, replicas=3)
    wait_until("chat Ready 3/3", lambda: ready(cluster, namespace, "chat", 3), timeout=180, interval=1)
    routers = wait_until("two routers Ready", lambda: (lambda ips: ips if len(ips) == 2 else None)(
        router_ips(cluster)), timeout=120, interval=1)
    # the routers see the three replicas once their Pod watch has: the first request may be held
    wait_until("the model reachable through both routers", lambda: all(
        chat(ip, "chat", PROMPTS[0], "ping")[0] == 200 for ip in routers), timeout=60, interval=1)

    placed: dict[int, set[str]] = {i: set() for i in range(len(PROMPTS))}
    for n in range(6):
        for i, system in enumerate(PROMPTS):
            status, headers, body = chat(routers[n % 2], "chat", system, f"question {n}?")
            assert status == 200, body[:300]
            placed[i].add(headers["x-llmfleet-replica"])
    print(f"\nprompt -> replica: { {i: sorted(r) for i, r in placed.items()} }")
    # Then: one replica per prompt, whichever router took the request
    assert all(len(replicas) == 1 for replicas in placed.values()), placed
    used = {r.split(":")[0] for replicas in placed.values() for r in replicas}
    assert len(used) >= 2  # four prompts do not all land on one of three replicas
    hits = sum(engine_metric(ip, "llmfleet_engine_prefix_cache_hits_total") for ip in used)
    queried = sum(engine_metric(ip, "llmfleet_engine_prefix_cache_queries_total") for ip in used)
    print(f"prefix cache: {hits:.0f} of {queried:.0f} prompt tokens hit")
    assert hits > 0.5 * queried  # every request after a prompt's first finds its system prompt cached


@dataclass
class RouterLoad:
    """`clients` threads sending chat requests through the routers in turn until stop()."""

    ips: list[str]
    model: str
    clients: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]

    def start(self) -> RouterLoad:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=150)

    def _run(self, i: int) -> None:
        n = i
        while not self._stop.is_set():
            ip = self.ips[n % len(self.ips)]
            try:
                status, _, body = chat(ip, self.model, PROMPTS[n % len(PROMPTS)], f"q{n}", max_tokens=24)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                status, body = 0, repr(e).encode()
            with self._lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{ip}: HTTP {status} {body[:200]!r}")
            n += 1


def test_a_rollout_behind_the_router_fails_no_request(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster: Any = llmfleet_operator
    create_service(cluster, namespace, "roll", tiny_model, replicas=2)
    wait_until("roll Ready 2/2", lambda: ready(cluster, namespace, "roll", 2), timeout=180, interval=1)
    routers = wait_until("two routers Ready", lambda: (lambda ips: ips if len(ips) == 2 else None)(
        router_ips(cluster)), timeout=120, interval=1)
    wait_until("the model reachable through both routers", lambda: all(
        chat(ip, "roll", PROMPTS[0], "ping")[0] == 200 for ip in routers), timeout=60, interval=1)

    def pods() -> set[str]:
        return {p.metadata.name for p in cluster.core.list_namespaced_pod(
            namespace, label_selector="llmfleet.dev/service=roll").items}

    before = pods()
    load = RouterLoad(routers, "roll").start()
    try:
        time.sleep(3)
        cluster.kubectl("patch", "llms", "roll", "-n", namespace, "--type=merge", "-p",
                        '{"spec": {"engine": {"maxModelLen": 512, "maxNumSeqs": 4}}}')
        wait_until("every pod replaced, Ready again", lambda: not before & pods() and len(pods()) == 2
                   and llms(cluster, namespace, "roll")["status"].get("observedGeneration") == 2
                   and ready(cluster, namespace, "roll", 2), timeout=240, interval=1)
        time.sleep(3)
    finally:
        load.stop()
    print(f"\nrollout behind the router: {load.ok} requests, {len(load.failures)} failed")
    assert not load.failures, load.failures[:5]
    assert load.ok > 0


def test_a_service_scaled_to_zero_wakes_for_a_held_request_and_goes_back(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """Given a service under a policy with minReplicas 0 and no replica, when a request arrives at
    the router, then the router holds it, the operator scales 0 -> 1 and the request is served;
    once idle past scaleToZeroIdleSeconds the service returns to zero, its spec untouched."""
    from kubernetes import client

    cluster: Any = llmfleet_operator
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "autoscalepolicies", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": "zero"},
        "spec": {"minReplicas": 0, "maxReplicas": 2, "metric": {"type": "QueueDepth", "targetAverageValue": 4},
                 "syncPeriodSeconds": 2, "scaleToZeroIdleSeconds": 10,
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}})
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "lazy"},
        "spec": {"model": {"uri": f"file://{tiny_model}"}, "engine": {"maxModelLen": 512},
                 "autoscalePolicyRef": {"name": "zero"}, "drainGraceSeconds": 1, "drainTimeoutSeconds": 10}})

    def replicas() -> int | None:
        try:
            return cluster.apps.read_namespaced_deployment("lazy", namespace).spec.replicas
        except client.ApiException:
            return None

    wait_until("the Deployment at 0 replicas", lambda: replicas() == 0, timeout=60, interval=1)
    spec_before = llms(cluster, namespace, "lazy")["spec"]
    routers = wait_until("two routers Ready", lambda: (lambda ips: ips if len(ips) == 2 else None)(
        router_ips(cluster)), timeout=120, interval=1)
    started = time.monotonic()
    status, _, body = chat(routers[0], "lazy", PROMPTS[0], "Are you awake?", timeout=300)
    woke = time.monotonic() - started
    print(f"\nscale from zero: first answer {woke:.1f}s after the request (held, 0 -> 1, model load)")
    assert status == 200, body[:300]
    assert replicas() == 1
    decisions = llms(cluster, namespace, "lazy")["status"]["scaling"]["decisions"]
    assert any("scale from zero" in d["reason"] for d in decisions), decisions

    wait_until("back to 0 replicas after the idle window", lambda: replicas() == 0, timeout=120, interval=1)
    assert llms(cluster, namespace, "lazy")["spec"] == spec_before  # the spec is the user's
