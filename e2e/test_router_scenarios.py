"""The autoscale and spot scenarios with every request going through llmfleet-router.

test_autoscale.py and test_spot.py send their load straight to the pods, following the
EndpointSlices as kube-proxy would; these send it where users do, to the chart's two
routers, and assert what the router exists for: no client sees a failed request, a 503 or
a cut stream while replicas are added (the router spreads the queue over new pods as they
turn Ready) and while a spot pod is drained and replaced (the router takes the pod out of
rotation on the operator's drain mark, and retries a refusal before the first byte).
(test_router.py covers prefix routing, a rollout under load and scale from zero.)
"""

from __future__ import annotations

import time
from pathlib import Path

from bedkit import E2ECluster, wait_until
from operator_support import (
    capacity_nodes,
    create_chat,
    create_spot_pool,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
    pod_is_ready,
    service_pods,
)
from router_support import RouterLoad, RouterStreams, both_routers, reachable, router_counter

NTH_TAINT = "aws-node-termination-handler/spot-itn"
SYNC = 5
WINDOW = 20


def test_a_burst_through_the_router_scales_up_and_back_with_nothing_failed(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """As test_autoscale's burst (engines decoding one sequence at a time, a target of 2
    waiting per replica): the queue the router builds on the first replica scales the
    service to 3, the router spreads the burst over the new replicas as they turn Ready,
    and it returns to 1 after the window, with every request answered."""
    cluster = llmfleet_operator
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "autoscalepolicies", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": "burst"},
        "spec": {"minReplicas": 1, "maxReplicas": 3, "metric": {"type": "QueueDepth", "targetAverageValue": 2},
                 "syncPeriodSeconds": SYNC, "behavior": {"scaleDown": {"stabilizationWindowSeconds": WINDOW}}}})
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "burst"},
        # One torch thread per engine, as in test_autoscale: three replicas share this machine's cores.
        "spec": {"model": {"uri": f"file://{tiny_model}"},
                 "engine": {"maxNumSeqs": 1, "maxModelLen": 256, "extraArgs": ["--threads", "1"]},
                 "autoscalePolicyRef": {"name": "burst"}, "drainGraceSeconds": 2, "drainTimeoutSeconds": 30}})

    def replicas() -> int:
        return cluster.apps.read_namespaced_deployment("burst", namespace).spec.replicas

    def status() -> dict:
        return llms(cluster, namespace, "burst").get("status", {})

    wait_until("burst Ready at 1 replica with the autoscaler running",
               lambda: status().get("phase") == "Ready" and status().get("scaling", {}).get("lastSyncTime"),
               timeout=120, interval=1)
    routers = both_routers(cluster)
    wait_until("burst reachable through both routers", lambda: reachable(routers, "burst"), timeout=60, interval=1)
    assert replicas() == 1

    load = RouterLoad(routers, "burst", clients=12, max_tokens=200).start()
    started = time.monotonic()
    served_by: set[str] = set()
    try:
        wait_until("a scale-up", lambda: replicas() > 1, timeout=2 * SYNC + 10, interval=0.25)
        reaction = time.monotonic() - started
        wait_until("3/3 ready", lambda: status().get("readyText") == "3/3", timeout=120, interval=0.5)
        serving = time.monotonic() - started
        time.sleep(8)  # the burst goes on over three replicas
        served_by = {p.status.pod_ip for p in service_pods(cluster, namespace, "burst") if pod_is_ready(p)}
        busy = wait_until("every replica busy", lambda: all(
            _engine_requests(ip) > 0 for ip in served_by), timeout=20, interval=0.5)
    finally:
        load.stop()
    stopped = time.monotonic()
    retries = sum(router_counter(ip, "llmfleet_router_retries_total", model="burst") for ip in routers)
    print(f"\nthrough the router: scale-up {reaction:.1f}s after the burst began (sync {SYNC}s), 3 replicas serving "
          f"after {serving:.1f}s; {load.ok} requests ok, {len(load.failures)} failed, {load.unavailable} 503s; "
          f"{retries:.0f} router retries")
    assert busy
    assert not load.failures, load.failures[:5]
    assert load.unavailable == 0
    assert load.ok > 0

    wait_until("back to 1 replica", lambda: replicas() == 1, timeout=WINDOW + 3 * SYNC + 30, interval=0.5)
    print(f"back to 1 replica {time.monotonic() - stopped:.1f}s after the burst (window {WINDOW}s)")
    cluster.kubectl("delete", "llms", "burst", "-n", namespace, "--wait=true", "--timeout=60s")


def _engine_requests(ip: str) -> float:
    """Requests an engine finished (llmfleet_engine_requests_finished_total), to see it served some."""
    import http.client

    conn = http.client.HTTPConnection(ip, 8000, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llmfleet_engine_requests_finished_total"))


def test_a_spot_notice_through_the_router_fails_no_request_and_cuts_no_stream(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """As test_spot's first scenario (3 replicas, two on spot; one spot node gets the NTH taint)
    with the load and the streams going through the routers: the router drops the pod from
    rotation on the operator's drain mark, its admitted requests finish there, the rest go to
    the other replicas, and the replacement joins when Ready."""
    cluster = llmfleet_operator
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-router-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1)
    tainted: str | None = None
    try:
        create_chat(cluster, namespace, tiny_model, replicas=3, spotPoolRef={"name": pool_name})

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        wait_until("chat Ready 3/3 with 2 on spot", lambda: status().get("readyText") == "3/3"
                   and status().get("phase") == "Ready" and status().get("spotReplicas") == 2,
                   timeout=180, interval=1)
        routers = both_routers(cluster)
        wait_until("chat reachable through both routers", lambda: reachable(routers, "chat"), timeout=60, interval=1)
        spot_pods = [p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot"]
        tainted = spot_pods[0].spec.node_name
        victims = {p.metadata.name for p in spot_pods if p.spec.node_name == tainted}
        before = {p.metadata.name for p in service_pods(cluster, namespace)}

        load = RouterLoad(routers, "chat", clients=4, max_tokens=64).start()
        streams = RouterStreams(routers, "chat", clients=2, max_tokens=120).start()
        try:
            time.sleep(5)  # steady load first
            sent_before = load.ok
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}=true:NoSchedule")
            t0 = time.monotonic()

            def replaced() -> bool:
                pods = {p.metadata.name: p for p in service_pods(cluster, namespace)}
                new = [p for n, p in pods.items() if n not in before]
                return not victims & pods.keys() and bool(new) and all(pod_is_ready(p) for p in new)

            wait_until("the drained pod gone and its replacement ready", replaced, timeout=150, interval=0.25)
            drained_in = time.monotonic() - t0
            time.sleep(3)  # the load goes on over the replacement
        finally:
            load.stop()
            streams.stop()
        retries = {reason: sum(router_counter(ip, "llmfleet_router_retries_total", model="chat", reason=reason)
                               for ip in routers)
                   for reason in ("unavailable", "connect_error", "timeout", "invalid_response")}
        print(f"\nthrough the router: node {tainted} tainted {NTH_TAINT}; {sorted(victims)} drained and replaced in "
              f"{drained_in:.1f}s; requests {load.ok + len(load.failures)} sent ({load.ok - sent_before} ok after the "
              f"notice), {len(load.failures)} failed, {load.unavailable + streams.unavailable} 503s; streams "
              f"{streams.done} done, {len(streams.cut)} cut, {len(streams.failed)} failed; router retries {retries}")
        assert not load.failures, load.failures[:5]
        assert not streams.cut, streams.cut[:5]
        assert not streams.failed, streams.failed[:5]
        assert load.unavailable == 0 and streams.unavailable == 0
        assert load.ok > sent_before and streams.done > 0
        pool = wait_until("the pool's counters", lambda: (lambda s: s if s.get("podsDrained", 0) >= len(victims)
                          else None)(custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools",
                                                                       pool_name).get("status") or {}),
                          timeout=20, interval=0.5)
        assert pool["requestsCut"] == 0
    finally:
        if tainted is not None:
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}:NoSchedule-")
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)


def test_every_spot_node_going_through_the_router_fails_no_request(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """As test_spot's fallback scenario: both spot nodes get a 45 s deadline, the spot replicas
    move to on-demand and come back when the nodes return; through the router nothing fails,
    although two of three replicas leave at about the same time, twice."""
    cluster = llmfleet_operator
    from datetime import UTC, datetime, timedelta

    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-router-fb-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1, fallback={"pendingSeconds": 10, "returnAfterSeconds": 20})
    spot_nodes = capacity_nodes(cluster, "spot")
    marked = False

    def unmark() -> None:
        cluster.kubectl("annotate", "nodes", *spot_nodes, "llmfleet.dev/interruption-deadline-")
        cluster.kubectl("taint", "nodes", *spot_nodes, "llmfleet.dev/interruption:NoSchedule-")

    try:
        create_chat(cluster, namespace, tiny_model, replicas=3, spotPoolRef={"name": pool_name})

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        wait_until("chat Ready 3/3 with 2 on spot", lambda: status().get("readyText") == "3/3"
                   and status().get("phase") == "Ready" and status().get("spotReplicas") == 2,
                   timeout=180, interval=1)
        routers = both_routers(cluster)
        wait_until("chat reachable through both routers", lambda: reachable(routers, "chat"), timeout=60, interval=1)
        load = RouterLoad(routers, "chat", clients=3, max_tokens=32).start()
        streams = RouterStreams(routers, "chat", clients=1, max_tokens=120).start()
        try:
            time.sleep(3)
            deadline = (datetime.now(UTC) + timedelta(seconds=45)).replace(microsecond=0)
            cluster.kubectl("taint", "nodes", *spot_nodes, "llmfleet.dev/interruption=true:NoSchedule")
            cluster.kubectl("annotate", "nodes", *spot_nodes, "--overwrite",
                            f"llmfleet.dev/interruption-deadline={deadline.isoformat().replace('+00:00', 'Z')}")
            marked = True
            wait_until("no spot pod left, 3/3 on on-demand", lambda: not [
                p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot"]
                and status().get("readyText") == "3/3", timeout=90, interval=0.5)
            unmark()
            marked = False

            def back() -> bool:
                live = [p for p in service_pods(cluster, namespace) if p.metadata.deletion_timestamp is None]
                caps = sorted(p.metadata.labels["llmfleet.dev/capacity"] for p in live if pod_is_ready(p))
                return len(live) == 3 and caps == ["ondemand", "spot", "spot"]

            wait_until("back on spot: 1 on-demand + 2 spot pods ready", back, timeout=120, interval=0.5)
            time.sleep(3)
        finally:
            load.stop()
            streams.stop()
        print(f"\nthrough the router, both spot nodes out and back: requests {load.ok + len(load.failures)} sent, "
              f"{len(load.failures)} failed, {load.unavailable + streams.unavailable} 503s; streams {streams.done} "
              f"done, {len(streams.cut)} cut, {len(streams.failed)} failed")
        assert not load.failures, load.failures[:5]
        assert not streams.cut and not streams.failed, (streams.cut[:3], streams.failed[:3])
        assert load.unavailable == 0 and streams.unavailable == 0
        assert load.ok > 0 and streams.done > 0
    finally:
        if marked:
            unmark()
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)


def test_without_secret_access_the_router_leaves_the_key_check_to_the_engine(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """With router.readSecrets=false the router may not read the key Secret (403): it forwards
    requests that carry a key and the engine accepts or refuses it; a request without a key is
    refused by the router; the keyed model is not listed in /v1/models."""
    import http.client
    import json

    from operator_support import OPERATOR_NS, RELEASE, helm

    cluster = llmfleet_operator
    from kubernetes import client

    helm(cluster, "upgrade", RELEASE, str(_chart()), "-n", OPERATOR_NS, "--reuse-values",
         "--set", "router.readSecrets=false", "--wait", "--timeout", "120s")
    try:
        cluster.core.create_namespaced_secret(namespace, {"metadata": {"name": "keys"},
                                                          "stringData": {"api-key": "tenant-key\n"}})
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            "llmfleet.dev", "v1alpha1", namespace, "llmservices", {
                "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "locked"},
                "spec": {"model": {"uri": f"file://{tiny_model}"}, "engine": {"maxModelLen": 256}, "replicas": 1,
                         "apiKeySecretRef": {"name": "keys", "key": "api-key"}}})
        wait_until("locked Ready 1/1", lambda: (llms(cluster, namespace, "locked").get("status") or {}).get(
            "readyText") == "1/1", timeout=180, interval=1)
        routers = both_routers(cluster)

        def ask(ip: str, key: str | None) -> tuple[int, dict]:
            conn = http.client.HTTPConnection(ip, 8080, timeout=120)
            try:
                conn.request("POST", "/v1/completions", json.dumps({"model": "locked", "prompt": "hi", "max_tokens": 4}),
                             {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
                resp = conn.getresponse()
                return resp.status, json.loads(resp.read() or b"{}")
            finally:
                conn.close()

        wait_until("the right key answered through both routers", lambda: all(
            ask(ip, "tenant-key")[0] == 200 for ip in routers), timeout=60, interval=1)
        seen = {ip: (ask(ip, None), ask(ip, "other-tenant")) for ip in routers}
        for (missing, wrong) in seen.values():
            assert missing[0] == 401 and missing[1]["error"]["code"] == "invalid_api_key", missing
            assert wrong[0] == 401, wrong  # refused by the engine, passed on by the router
        conn = http.client.HTTPConnection(routers[0], 8080, timeout=10)
        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer tenant-key"})
        listed = [m["id"] for m in json.loads(conn.getresponse().read())["data"]]
        conn.close()
        print(f"\nrouter.readSecrets=false: right key 200, no key {seen[routers[0]][0][0]} (router), wrong key "
              f"{seen[routers[0]][1][0]} (engine); /v1/models lists {listed}")
        assert "locked" not in listed
    finally:
        helm(cluster, "upgrade", RELEASE, str(_chart()), "-n", OPERATOR_NS, "--reuse-values",
             "--set", "router.readSecrets=true", "--wait", "--timeout", "120s")
        cluster.kubectl("delete", "llms", "locked", "-n", namespace, "--wait=true", "--timeout=60s")


def _chart() -> Path:
    from operator_support import CHART

    return CHART
