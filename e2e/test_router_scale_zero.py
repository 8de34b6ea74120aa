"""Scale from zero through the router, with the operator learning of held requests both ways.

Given a service at zero under a policy with the default 15 s sync period, when a client
streams a request through the router, then the router holds it, the operator scales the
service 0 -> 1, and the client gets its tokens; the service goes back to zero when idle.
Run alternately with the chart's two demand signals (router.demandSignal): `watch` (the
operator long-polls the routers, a held request wakes the service at once) and `scrape`
(the routers' /metrics at the next sync). The scenario prints, per round, the time from
sending the request to the Deployment's scale-up and to the first token, so the two modes
are compared in one run (the figures go to docs/benchmarks.md; no assert on speed).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

from bedkit import E2ECluster, wait_until
from operator_support import (
    OPERATOR_NS,
    RELEASE,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
    operator_pods,
    operator_ready,
)
from router_support import ROUTER_PORT, both_routers

ROUNDS = ("watch", "scrape", "watch", "scrape")


def demand_mode(cluster: Any) -> str | None:
    pods = operator_pods(cluster)
    if len(pods) != 1:
        return None
    env = {e.name: e.value for c in pods[0].spec.containers for e in c.env or []}
    return env.get("LLMFLEET_ROUTER_DEMAND")


def use_demand_signal(cluster: Any, mode: str) -> None:
    """The operator restarted with LLMFLEET_ROUTER_DEMAND=mode (what router.demandSignal sets)."""
    if demand_mode(cluster) != mode:
        cluster.kubectl("set", "env", f"deployment/{RELEASE}", "-n", OPERATOR_NS, f"LLMFLEET_ROUTER_DEMAND={mode}")
    wait_until(f"one operator pod Ready with the {mode} signal",
               lambda: demand_mode(cluster) == mode and operator_ready(cluster), timeout=180, interval=1)


def first_token(ip: str, model: str) -> tuple[int, float | None, bytes]:
    """Stream one completion through the router: (status, seconds to the first token, body start)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(ip, ROUTER_PORT, timeout=330)
    try:
        conn.request("POST", "/v1/completions", json.dumps(
            {"model": model, "prompt": "Are you awake?", "max_tokens": 8, "stream": True}),
            {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, None, resp.read()[:300]
        first = None
        for line in resp:
            if first is None and line.startswith(b"data: {"):
                first = time.monotonic() - started
        return resp.status, first, b""
    finally:
        conn.close()


def test_a_service_at_zero_wakes_for_a_held_request_with_either_demand_signal(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    from kubernetes import client

    cluster: Any = llmfleet_operator
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "autoscalepolicies", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": "zero"},
        "spec": {"minReplicas": 0, "maxReplicas": 1, "metric": {"type": "QueueDepth", "targetAverageValue": 4},
                 "syncPeriodSeconds": 15, "scaleToZeroIdleSeconds": 5,
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

    spec_before = None
    results: list[tuple[str, float, float]] = []
    try:
        for mode in ROUNDS:
            use_demand_signal(cluster, mode)
            wait_until("the Deployment at 0 replicas", lambda: replicas() == 0, timeout=120, interval=0.5)
            spec_before = spec_before or llms(cluster, namespace, "lazy")["spec"]
            routers = both_routers(cluster)
            wait_until("the routers serve the model (a held request, not a 404)",
                       lambda ips=routers: all(_knows(ip, "lazy") for ip in ips), timeout=60, interval=1)
            time.sleep(1)
            scaled, (status, to_first_token, body) = _timed(lambda: replicas() == 1,
                                                           lambda ips=routers: first_token(ips[0], "lazy"))
            assert status == 200 and to_first_token is not None, body
            assert scaled is not None, "the Deployment was not seen at 1 replica"
            results.append((mode, scaled, to_first_token))
            print(f"\n{mode}: Deployment at 1 replica {scaled:.1f}s after the request, first token after "
                  f"{to_first_token:.1f}s")
            decisions = llms(cluster, namespace, "lazy")["status"]["scaling"]["decisions"]
            assert any("scale from zero" in d["reason"] for d in decisions), decisions
    finally:
        use_demand_signal(cluster, "watch")  # the chart's default, for whatever runs next
    print("\nscale from zero, request -> scale-up / first token (s), sync period 15 s: " + "; ".join(
        f"{m} {up:.1f} / {tok:.1f}" for m, up, tok in results))
    wait_until("back to 0 replicas after the idle window", lambda: replicas() == 0, timeout=120, interval=1)
    assert llms(cluster, namespace, "lazy")["spec"] == spec_before  # the spec is the user's


def _timed(up: Any, request: Any) -> tuple[float | None, Any]:
    """request()'s answer, and when (seconds after it was sent) up() first held, polled at 10 Hz beside it."""
    started = time.monotonic()
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen:
            if up():
                seen.append(time.monotonic() - started)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        answer = request()
        watcher.join(timeout=10)
    finally:
        done.set()
    return (seen[0] if seen else None), answer


def _knows(ip: str, model: str) -> bool:
    conn = http.client.HTTPConnection(ip, ROUTER_PORT, timeout=10)
    try:
        conn.request("GET", "/v1/models")
        return model in {m["id"] for m in json.loads(conn.getresponse().read())["data"]}
    finally:
        conn.close()
