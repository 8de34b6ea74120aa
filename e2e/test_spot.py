"""A spot interruption notice under load, on the real control plane.

Given an LLMService with 3 replicas under a SpotPool (onDemandBase 1, the rest on spot: one
on-demand pod and two spot pods spread over the bed's two spot nodes), serving continuous load (clients
spread over the Service's ready endpoints, plus streaming clients), when one spot node gets
aws-node-termination-handler's `spot-itn` taint (a 120 s notice from first sight), then the
operator annotates its pod, surges the spot Deployment (the replacement lands on the other
spot node), POSTs /drain (the pod leaves the endpoints while its admitted requests finish),
and evicts it through the Eviction API once the replacement is ready (the PDB refuses it
before: 429, retried); the load generator sees no failed request and no cut stream. The
scenario prints requests sent, failed, cut streams, and the drain's durations.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from bedkit import E2ECluster, wait_until
from operator_support import (
    OPERATOR_NS,
    Load,
    Streams,
    capacity_nodes,
    condition,
    create_chat,
    create_spot_pool,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
    operator_pods,
    pod_is_ready,
    service_pods,
)

NTH_TAINT = "aws-node-termination-handler/spot-itn"


def test_a_spot_notice_drains_its_pod_under_load_with_nothing_failed_or_cut(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1)
    tainted: str | None = None
    try:
        create_chat(cluster, namespace, tiny_model, replicas=3, spotPoolRef={"name": pool_name})

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        wait_until("chat Ready 3/3 with 2 on spot", lambda: status().get("readyText") == "3/3"
                   and status().get("phase") == "Ready" and status().get("spotReplicas") == 2,
                   timeout=180, interval=1)
        assert status()["spot"]["fallbackActive"] is False
        spot_pods = [p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot"]
        by_node = {p.spec.node_name for p in spot_pods}
        print(f"\nspot pods on {sorted(by_node)}; on-demand on "
              f"{sorted({p.spec.node_name for p in service_pods(cluster, namespace)} - by_node)}")
        tainted = spot_pods[0].spec.node_name
        victims = {p.metadata.name for p in spot_pods if p.spec.node_name == tainted}
        before = {p.metadata.name for p in service_pods(cluster, namespace)}

        load = Load(cluster, namespace, "chat", "chat", clients=4, max_tokens=64).start()
        streams = Streams(cluster, namespace, "chat", "chat", clients=2, max_tokens=120).start()
        try:
            time.sleep(5)  # steady load first
            sent_before = load.ok
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}=true:NoSchedule")
            t0 = time.monotonic()
            marks: dict[str, float] = {}

            def progress() -> bool:
                pods = {p.metadata.name: p for p in service_pods(cluster, namespace)}
                now = time.monotonic() - t0
                for name in victims:
                    p = pods.get(name)
                    if p is not None and "llmfleet.dev/drain-started" in (p.metadata.annotations or {}):
                        marks.setdefault(f"{name} annotated", now)
                    if p is not None and not pod_is_ready(p):
                        marks.setdefault(f"{name} not ready", now)
                    if p is not None and p.metadata.deletion_timestamp is not None:
                        marks.setdefault(f"{name} evicted", now)
                    if p is None:
                        marks.setdefault(f"{name} gone", now)
                new = [p for n, p in pods.items() if n not in before]
                if new and all(pod_is_ready(p) for p in new):
                    marks.setdefault("replacements ready", now)
                return all(f"{n} gone" in marks for n in victims) and "replacements ready" in marks

            wait_until("the drained pod gone and its replacement ready", progress, timeout=150, interval=0.25)
            replacements = [p for p in service_pods(cluster, namespace) if p.metadata.name not in before]
            assert replacements and all(p.spec.node_name != tainted for p in replacements)
            assert all(p.metadata.labels["llmfleet.dev/capacity"] == "spot" for p in replacements)
            time.sleep(3)  # the load goes on over the new endpoints
        finally:
            load.stop()
            streams.stop()
        drained_in = max(v for k, v in marks.items() if k.endswith(" gone"))
        print(f"node {tainted} tainted {NTH_TAINT} (120 s notice); drained {sorted(victims)}")
        print("drain timeline (s after the taint): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(
            marks.items(), key=lambda kv: kv[1])))
        print(f"requests: {load.ok + len(load.failures)} sent ({load.ok - sent_before} ok after the notice), "
              f"{len(load.failures)} failed; streams: {streams.done + len(streams.cut) + len(streams.failed)} "
              f"sent, {len(streams.cut)} cut, {len(streams.failed)} failed; drain took {drained_in:.1f}s")

        assert not load.failures, load.failures[:5]
        assert not streams.cut, streams.cut[:5]
        assert not streams.failed, streams.failed[:5]
        assert load.ok > sent_before and streams.done > 0
        assert drained_in < 110, "the pod must be gone before the deadline minus the margin"

        pool = wait_until("the pool's counters", lambda: (lambda s: s if s.get("podsDrained", 0) >= len(victims)
                          else None)(custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools",
                                                                       pool_name).get("status") or {}),
                          timeout=20, interval=0.5)
        print(f"SpotPool status: interruptionsSeen {pool['interruptionsSeen']}, podsDrained {pool['podsDrained']}, "
              f"requestsCut {pool['requestsCut']}, interruptedNodes {[n['name'] for n in pool['interruptedNodes']]}")
        assert pool["interruptionsSeen"] == 1 and pool["requestsCut"] == 0
        assert [n["name"] for n in pool["interruptedNodes"]] == [tainted]
        st = wait_until("status back to 3/3", lambda: (lambda s: s if s.get("readyText") == "3/3" else None)(status()),
                        timeout=30, interval=0.5)
        assert st["spot"]["drainingPods"] == [] and st["spotReplicas"] == 2
        assert condition(llms(cluster, namespace, "chat"), "SpotInterrupted")["status"] == "False"
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.kind=LLMService,involvedObject.name=chat",
                                 "-o", "custom-columns=REASON:.reason")
        assert "DrainStarted" in events and "DrainEvicted" in events
        print(f"events on the LLMService: {events.split().count('EvictionRefused')} EvictionRefused (PDB 429 until the "
              f"replacement was ready), {events.split().count('DrainStarted')} DrainStarted, "
              f"{events.split().count('DrainEvicted')} DrainEvicted")
        assert cluster.apps.read_namespaced_deployment("chat-spot", namespace).spec.replicas == 2
    finally:
        if tainted is not None:
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}:NoSchedule-")
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)


def test_every_spot_node_going_falls_back_to_on_demand_and_returns(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """Both spot nodes get a 45 s deadline (the node agent's annotation and taint): the spot
    replicas move to on-demand at once, the PDB refuses both evictions (the fallen-back
    replicas are what it waits for), so both pods are deleted at the last safe moment with
    nothing in flight; the pool says the notice is too short for a 42 s drain. When the
    nodes come back the replicas return to spot."""
    cluster = llmfleet_operator
    from datetime import UTC, datetime, timedelta

    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1, fallback={"pendingSeconds": 10, "returnAfterSeconds": 20})
    spot_nodes = capacity_nodes(cluster, "spot")
    assert len(spot_nodes) == 2, spot_nodes
    marked = False

    def unmark() -> None:
        for node in spot_nodes:
            cluster.kubectl("annotate", "nodes", node, "llmfleet.dev/interruption-deadline-")
            subprocess_ok = cluster.kubectl("get", "node", node, "-o", "jsonpath={.spec.taints[*].key}")
            if "llmfleet.dev/interruption" in subprocess_ok.split():
                cluster.kubectl("taint", "nodes", node, "llmfleet.dev/interruption:NoSchedule-")

    try:
        # 10 + 30 s of drain: longer than the 45 s notice minus the 10 s margin (NoticeTooShort)
        create_chat(cluster, namespace, tiny_model, replicas=3, spotPoolRef={"name": pool_name}, drainGraceSeconds=10)

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        def replicas() -> tuple[int, int]:
            return tuple(cluster.apps.read_namespaced_deployment(f"chat-{c}", namespace).spec.replicas
                         for c in ("ondemand", "spot"))  # type: ignore[return-value]

        wait_until("chat Ready 3/3 with 2 on spot", lambda: status().get("readyText") == "3/3"
                   and status().get("phase") == "Ready" and status().get("spotReplicas") == 2,
                   timeout=180, interval=1)
        load = Load(cluster, namespace, "chat", "chat", clients=2, max_tokens=32).start()
        try:
            time.sleep(3)
            t0 = time.monotonic()
            deadline = (datetime.now(UTC) + timedelta(seconds=45)).replace(microsecond=0)
            # The node agent's taint first (not a signal: it only keeps new pods off), then both
            # deadlines in one call, so no replacement lands on the second node just before its notice.
            cluster.kubectl("taint", "nodes", *spot_nodes, "llmfleet.dev/interruption=true:NoSchedule")
            cluster.kubectl("annotate", "nodes", *spot_nodes, "--overwrite",
                            f"llmfleet.dev/interruption-deadline={deadline.isoformat().replace('+00:00', 'Z')}")
            marked = True
            wait_until("the spot replicas on on-demand", lambda: replicas()[0] == 3, timeout=20, interval=0.25)
            fell_back = time.monotonic() - t0
            wait_until("status.spot.fallbackActive", lambda: (status().get("spot") or {}).get("fallbackActive"),
                       timeout=5, interval=0.25)
            wait_until("no spot pod left, 3/3 on on-demand", lambda: not [
                p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot"]
                and status().get("readyText") == "3/3", timeout=60, interval=0.5)
            spot_gone = time.monotonic() - t0
            pool = custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)["status"]
            too_short = next(c for c in pool["conditions"] if c["type"] == "NoticeTooShort")

            unmark()
            marked = False
            t1 = time.monotonic()
            def back() -> bool:
                live = [p for p in service_pods(cluster, namespace) if p.metadata.deletion_timestamp is None]
                caps = sorted(p.metadata.labels["llmfleet.dev/capacity"] for p in live if pod_is_ready(p))
                return replicas() == (1, 2) and len(live) == 3 and caps == ["ondemand", "spot", "spot"]

            wait_until("back on spot: 1 on-demand + 2 spot pods ready", back, timeout=90, interval=0.5)
            returned = time.monotonic() - t1
        finally:
            load.stop()
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.kind=LLMService,involvedObject.name=chat",
                                 "-o", "custom-columns=REASON:.reason").split()
        pool = custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)["status"]
        print(f"\nboth spot nodes given a 45 s deadline: on-demand Deployment at 3 after {fell_back:.1f}s, "
              f"spot pods gone after {spot_gone:.1f}s (deadline 45 s, margin 10 s); 1 on-demand + 2 spot pods ready "
              f"{returned:.1f}s after the nodes came back (returnAfterSeconds 20)")
        print(f"requests: {load.ok + len(load.failures)} sent, {len(load.failures)} failed; pool: podsDrained "
              f"{pool['podsDrained']}, requestsCut {pool['requestsCut']}, NoticeTooShort {too_short['status']} "
              f"({too_short['message'][:90]}...); events: {events.count('EvictionRefused')} EvictionRefused, "
              f"{events.count('DrainEvicted')} DrainEvicted, {events.count('DrainDeleted')} DrainDeleted, "
              f"{events.count('SpotFallback')} SpotFallback, "
              f"{events.count('SpotReturned')} SpotReturned")
        assert fell_back < 10
        assert too_short["status"] == "True"
        assert "SpotFallback" in events and "SpotReturned" in events
        # Each spot pod leaves once and is counted once: evicted when the on-demand replacements are
        # Ready in time for the PDB to allow it, else deleted at the last safe moment (both seen here).
        # The PDB (maxUnavailable 1) blocks the second of two simultaneous evictions: at least one 429.
        assert events.count("EvictionRefused") >= 1
        drained = events.count("DrainEvicted") + events.count("DrainDeleted")
        assert drained == pool["podsDrained"] >= 2
        assert pool["requestsCut"] == 0
        assert not load.failures, load.failures[:5]
    finally:
        if marked:
            unmark()
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)


def test_a_notice_shorter_than_the_longest_request_cuts_it_and_says_so(
    llmfleet_operator: E2ECluster, namespace: str, slow_model: Path
) -> None:
    """The variant where no drain can save everything: a spot node gets a 20 s deadline (margin 5 s)
    while its pod serves two streams that need far longer (2,500 tokens at ~30-60 tokens/s), plus
    short requests over the Service. The pod must be gone by the deadline minus the margin, so the
    two long streams are cut; the short requests go on elsewhere with none failed. What the operator
    reports must match what the clients saw: a RequestsAtRisk event and the pool's requestsCut equal
    to the streams cut (the engine's per-request estimate tells the long ones from the short ones)."""
    cluster = llmfleet_operator
    from datetime import UTC, datetime, timedelta

    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-short-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1, drainDeadlineMarginSeconds=5)
    marked: str | None = None
    try:
        create_chat(cluster, namespace, slow_model, max_model_len=4096, replicas=2, spotPoolRef={"name": pool_name},
                    drainGraceSeconds=5)

        def status() -> dict:
            return llms(cluster, namespace, "chat").get("status", {})

        wait_until("chat Ready 2/2 with 1 on spot", lambda: status().get("readyText") == "2/2"
                   and status().get("phase") == "Ready" and status().get("spotReplicas") == 1,
                   timeout=240, interval=1)
        victim = next(p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot")
        node, ip = victim.spec.node_name, victim.status.pod_ip

        long_streams = Streams(cluster, namespace, "chat", "chat", max_tokens=2500)
        threads = [threading.Thread(target=long_streams.stream_once, args=(ip,), daemon=True) for _ in range(2)]
        for t in threads:
            t.start()

        def engine_drain() -> dict:
            conn = http.client.HTTPConnection(ip, 8000, timeout=5)
            try:
                conn.request("GET", "/drain")
                return json.loads(conn.getresponse().read())
            finally:
                conn.close()

        wait_until("both long streams running on the spot pod",
                   lambda: engine_drain()["in_flight"] >= 2 and len(engine_drain().get("seconds_left", [])) >= 2,
                   timeout=30, interval=0.25)
        time.sleep(2)  # tokens are flowing: these streams have chunks, so losing them is a cut
        estimate = engine_drain()["seconds_left"]
        load = Load(cluster, namespace, "chat", "chat", clients=2, max_tokens=16).start()
        try:
            time.sleep(2)
            deadline = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
            t0 = time.monotonic()
            cluster.kubectl("taint", "nodes", node, "llmfleet.dev/interruption=true:NoSchedule")
            cluster.kubectl("annotate", "nodes", node, "--overwrite",
                            f"llmfleet.dev/interruption-deadline={deadline.isoformat().replace('+00:00', 'Z')}")
            marked = node
            wait_until("the spot pod gone", lambda: victim.metadata.name not in
                       {p.metadata.name for p in service_pods(cluster, namespace)}, timeout=60, interval=0.25)
            gone_at = time.monotonic() - t0
            for t in threads:
                t.join(timeout=60)
            time.sleep(2)  # the short requests go on over what is left
        finally:
            load.stop()
        pool = wait_until("the pool's counters", lambda: (lambda s: s if s.get("podsDrained", 0) >= 1 else None)(
            custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name).get("status") or {}),
            timeout=20, interval=0.5)
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.kind=LLMService,involvedObject.name=chat",
                                 "-o", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers")
        at_risk = [line for line in events.splitlines() if line.startswith("RequestsAtRisk")]
        cut_seen = len(long_streams.cut) + len(long_streams.failed)
        print(f"\nnode {node}: 20 s deadline, margin 5 s; the pod's two long streams needed ~{max(estimate):.0f} s "
              f"more when the notice came (the engine's estimate)")
        print(f"pod gone {gone_at:.1f}s after the notice; long streams: {long_streams.done} finished, "
              f"{len(long_streams.cut)} cut, {len(long_streams.failed)} failed; short requests: "
              f"{load.ok + len(load.failures)} sent, {len(load.failures)} failed")
        print(f"operator: requestsCut {pool['requestsCut']}, podsDrained {pool['podsDrained']}; "
              f"{at_risk[0] if at_risk else 'no RequestsAtRisk event'}")
        assert long_streams.done == 0 and len(long_streams.cut) == 2, (long_streams.cut, long_streams.failed)
        assert gone_at < 20, "the pod must be gone by the deadline"
        assert pool["requestsCut"] == cut_seen, "the operator reports exactly the requests the clients lost"
        assert at_risk and "2 of" in at_risk[0]
        assert not load.failures, load.failures[:5]
        assert load.ok > 0
    finally:
        if marked is not None:
            cluster.kubectl("annotate", "nodes", marked, "llmfleet.dev/interruption-deadline-")
            cluster.kubectl("taint", "nodes", marked, "llmfleet.dev/interruption:NoSchedule-")
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)


def test_an_operator_restart_mid_drain_resumes_it_from_the_cluster(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    """The operator pod is killed (grace 0) right after it started a drain: the new one reads the
    drain from the pod's annotations and the engine's GET /drain, so it neither surges twice nor
    announces twice, keeps the recorded deadline, and evicts the pod; the load sees nothing fail."""
    cluster = llmfleet_operator
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-restart-{namespace}"
    create_spot_pool(cluster, pool_name, onDemandBase=1)
    tainted: str | None = None
    try:
        create_chat(cluster, namespace, tiny_model, replicas=2, spotPoolRef={"name": pool_name})
        wait_until("chat Ready 2/2 with 1 on spot", lambda: (lambda s: s.get("readyText") == "2/2"
                   and s.get("phase") == "Ready" and s.get("spotReplicas") == 1)(
                       llms(cluster, namespace, "chat").get("status", {})), timeout=180, interval=1)
        victim = next(p for p in service_pods(cluster, namespace) if p.metadata.labels["llmfleet.dev/capacity"] == "spot")
        load = Load(cluster, namespace, "chat", "chat", clients=3, max_tokens=32).start()
        streams = Streams(cluster, namespace, "chat", "chat", clients=1, max_tokens=120).start()
        spot_replicas: set[int] = set()
        try:
            time.sleep(3)
            tainted = victim.spec.node_name
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}=true:NoSchedule")
            t0 = time.monotonic()

            def annotations() -> dict:
                return cluster.core.read_namespaced_pod(victim.metadata.name, namespace).metadata.annotations or {}

            wait_until("the drain started", lambda: "llmfleet.dev/drain-started" in annotations(), timeout=30,
                       interval=0.1)
            marks = {k: v for k, v in annotations().items() if k.startswith("llmfleet.dev/drain-")}
            old = operator_pods(cluster)[0].metadata.name
            cluster.core.delete_namespaced_pod(old, OPERATOR_NS, grace_period_seconds=0)
            killed = time.monotonic() - t0

            def progress() -> bool:
                spot_replicas.add(cluster.apps.read_namespaced_deployment("chat-spot", namespace).spec.replicas)
                return victim.metadata.name not in {p.metadata.name for p in service_pods(cluster, namespace)}

            wait_until("the drained pod gone", progress, timeout=150, interval=0.5)
            gone = time.monotonic() - t0
            back = operator_pods(cluster)
            wait_until("status 2/2 again", lambda: llms(cluster, namespace, "chat")["status"].get("readyText") == "2/2",
                       timeout=60, interval=0.5)
            time.sleep(2)
        finally:
            load.stop()
            streams.stop()
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.kind=LLMService,involvedObject.name=chat",
                                 "-o", "custom-columns=REASON:.reason", "--no-headers").split()
        print(f"\ndrain started, operator pod killed {killed:.1f}s after the taint; the new operator "
              f"({back[0].metadata.name if back else '?'}) finished it: pod gone {gone:.1f}s after the taint; "
              f"chat-spot replicas seen {sorted(spot_replicas)}; events {events.count('DrainStarted')} DrainStarted, "
              f"{events.count('DrainEvicted')} DrainEvicted; requests {load.ok + len(load.failures)} sent, "
              f"{len(load.failures)} failed; streams {streams.done} done, {len(streams.cut)} cut")
        assert events.count("DrainStarted") == 1 and events.count("DrainEvicted") == 1
        assert max(spot_replicas) == 2, "one surge for one drained pod, across the restart"
        assert marks["llmfleet.dev/drain-deadline"], marks
        assert not load.failures, load.failures[:5]
        assert not streams.cut and not streams.failed, (streams.cut, streams.failed)
        assert load.ok > 0 and streams.done > 0
    finally:
        if tainted is not None:
            cluster.kubectl("taint", "nodes", tainted, f"{NTH_TAINT}:NoSchedule-")
        cluster.kubectl("delete", "llms", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
        custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)
