"""A service without a SpotPool on a node that gets an interruption notice, on the real control plane.

Given an LLMService with 2 replicas and no `spotPoolRef` (one Deployment, pods spread over
the bed's nodes by the rendered topology spread), serving continuous load (clients spread
over the Service's ready endpoints, plus streaming clients), when the node of one of its pods
gets aws-node-termination-handler's `spot-itn` taint (a 120 s notice from first sight; the
node is on-demand by its labels: without a pool, any node's notice counts), then the operator
annotates that pod, raises the Deployment to 3 (the replacement lands on another node), POSTs
/drain (with the service's drain token: the pod turns not-ready before its eviction) and
evicts the pod once the replacement is ready; the Deployment goes back to 2. The load sees no
failed request and no cut stream. When the service is deleted, each remaining pod's preStop
hook drains its engine with the token from the mounted Secret. Prints the drain's timeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bedkit import E2ECluster, wait_until
from operator_support import (
    Load,
    Streams,
    capacity_nodes,
    condition,
    create_chat,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
    pod_is_ready,
    service_pods,
)

NTH_TAINT = "aws-node-termination-handler/spot-itn"


def test_an_unpooled_service_drains_its_pod_off_a_noticed_node_with_nothing_failed_or_cut(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    tainted: str | None = None
    try:
        create_chat(cluster, namespace, tiny_model, replicas=2)

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        def replicas() -> int:
            return cluster.apps.read_namespaced_deployment("chat", namespace).spec.replicas

        wait_until("chat Ready 2/2", lambda: status().get("readyText") == "2/2" and status().get("phase") == "Ready",
                   timeout=120, interval=0.5)
        pods = service_pods(cluster, namespace)
        assert all(p.metadata.labels["llmfleet.dev/capacity"] == "any" for p in pods)
        nodes = {p.metadata.name: p.spec.node_name for p in pods}
        # An on-demand node when the scheduler put a pod on one: without a pool, any node's notice counts.
        on_demand = set(capacity_nodes(cluster, "on-demand"))
        victim = min(nodes, key=lambda n: (nodes[n] not in on_demand, n))
        tainted = nodes[victim]
        before = set(nodes)
        print(f"\npods on {sorted(nodes.values())}; tainting {tainted} (pod {victim})")

        load = Load(cluster, namespace, "chat", "chat", clients=4, max_tokens=64).start()
        streams = Streams(cluster, namespace, "chat", "chat", clients=2, max_tokens=120).start()
        seen: dict[str, Any] = {}
        try:
            time.sleep(3)  # steady load first
            sent_before = load.ok
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}=true:NoSchedule")
            t0 = time.monotonic()
            marks: dict[str, float] = {}

            def progress() -> bool:
                now = time.monotonic() - t0
                pods = {p.metadata.name: p for p in service_pods(cluster, namespace)}
                p = pods.get(victim)
                if p is not None and "llmfleet.dev/drain-started" in (p.metadata.annotations or {}):
                    marks.setdefault("annotated", now)
                    seen.setdefault("surge", (p.metadata.annotations or {}).get("llmfleet.dev/drain-surge"))
                if p is not None and not pod_is_ready(p):
                    marks.setdefault("not ready", now)
                if p is not None and p.metadata.deletion_timestamp is not None:
                    marks.setdefault("evicted", now)
                if p is None:
                    marks.setdefault("gone", now)
                count = replicas()
                if "surged" not in marks and count == 3:
                    marks["surged"] = now
                if "surged" in marks and count == 2:
                    marks.setdefault("surge dropped", now)
                if "draining status" not in seen:
                    st = status()
                    if (st.get("spot") or {}).get("drainingPods"):
                        seen["draining status"] = st["spot"]["drainingPods"]
                        seen["condition"] = condition({"status": st}, "SpotInterrupted")
                new = [p for n, p in pods.items() if n not in before]
                if new and all(pod_is_ready(p) for p in new):
                    marks.setdefault("replacement ready", now)
                return "gone" in marks and "replacement ready" in marks

            wait_until("the drained pod gone and its replacement ready", progress, timeout=100, interval=0.25)
            replacements = [p for p in service_pods(cluster, namespace) if p.metadata.name not in before]
            assert replacements and all(p.spec.node_name != tainted for p in replacements)
            wait_until("the Deployment back to 2", lambda: replicas() == 2, timeout=10, interval=0.25)
            marks.setdefault("surge dropped", time.monotonic() - t0)
            time.sleep(2)  # the load goes on over the new endpoints
        finally:
            load.stop()
            streams.stop()
        print("drain timeline (s after the taint): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(
            marks.items(), key=lambda kv: kv[1])))
        print(f"requests: {load.ok + len(load.failures)} sent ({load.ok - sent_before} ok after the notice), "
              f"{len(load.failures)} failed; streams: {streams.done + len(streams.cut) + len(streams.failed)} "
              f"sent, {len(streams.cut)} cut, {len(streams.failed)} failed")

        assert not load.failures, load.failures[:5]
        assert not streams.cut, streams.cut[:5]
        assert not streams.failed, streams.failed[:5]
        assert load.ok > sent_before and streams.done > 0
        assert marks["annotated"] < 5 and marks["surged"] < 5
        assert seen["surge"] == "any"
        assert [d["name"] for d in seen["draining status"]] == [victim]
        assert seen["condition"]["status"] == "True" and seen["condition"]["reason"] == "Draining"
        assert marks["gone"] < 110, "the pod must be gone before the deadline minus the margin"
        # The operator's POST /drain was accepted (the drain token): the engine left the endpoints
        # before the eviction. A refused POST leaves it ready until the eviction at evict_by.
        assert marks.get("not ready", float("inf")) < marks.get("evicted", marks["gone"]), marks
        assert "drain requested" in cluster.pod_log(namespace, victim)

        st = wait_until("status back to 2/2 with nothing draining", lambda: (
            lambda s: s if s.get("readyText") == "2/2" and "spot" not in s else None)(status()), timeout=20,
            interval=0.5)
        # The drop back to 2 deletes a pod of its own (often the one the ReplicaSet made for the
        # evicted pod, still starting): the pods the service's deletion removes are the 2 left.
        remaining = wait_until("the scale-down's pod gone", lambda: (
            lambda ps: [p.metadata.name for p in ps]
            if len(ps) == 2 and all(p.metadata.deletion_timestamp is None for p in ps) else None)(
            service_pods(cluster, namespace)), timeout=60, interval=0.5)
        assert condition({"status": st}, "SpotInterrupted")["status"] == "False"
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.kind=LLMService,involvedObject.name=chat",
                                 "-o", "custom-columns=REASON:.reason").split()
        print(f"events on the LLMService: {events.count('DrainStarted')} DrainStarted, "
              f"{events.count('EvictionRefused')} EvictionRefused, {events.count('DrainEvicted')} DrainEvicted, "
              f"{events.count('DrainDeleted')} DrainDeleted")
        assert "DrainStarted" in events and ("DrainEvicted" in events or "DrainDeleted" in events)
        # Deleting the service deletes its pods: each preStop drains its engine with the token.
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        wait_until("the service's pods gone", lambda: not service_pods(cluster, namespace), timeout=90,
                   interval=0.5)
        for name in remaining:
            assert "drain requested" in cluster.pod_log(namespace, name), name
    finally:
        if tainted is not None:
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}:NoSchedule-")
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s",
                        "--ignore-not-found")
